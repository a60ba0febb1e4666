"""Partners: exemplars of known score attached to each sample, drawn from the training samples.

Methods that score a video relative to exemplars (CoRe, TSA, TPT) see a *query* together
with one exemplar while training and K exemplars at test. A spec asks for them with
``data.partners`` (:class:`~aqa_framework.spec.PartnersSpec`)::

    data:
      partners: {group_by: difficulty, train: 1, test: 10, top_up: nearest}

:func:`~aqa_framework.data.open.open_data` then wraps every split in a
:class:`PartnerDataset`. Exemplars always come from the *training samples* of the run (the
training split less the validation samples held out by ``data.val_fraction``), never from
the validation or test split and never the query itself. The draw is deterministic in the
partner seed (``data.partners.seed``, default the spec's ``seed``), the query's key and the
epoch (training draws anew each epoch, evaluation always draws for epoch 0), so ``aqa
evaluate`` on the stored spec sees the exemplars of the run's final evaluation; their keys are
recorded in the ``exemplars`` column of the predictions.

A sample then carries ``sample["partners"]``:

* ``"video"``: ``(K, N, C, T, H, W)``, the exemplars' clips (collated ``(B, K, ...)``);
* ``"scores"``, ``"classes"``, ``"arrays"``: the exemplars' targets, each ``(K, ...)``;
* ``"key"``: the exemplars' keys (use :func:`partner_keys` on a batch).

A dataset whose samples are pairs (:mod:`aqa_framework.data.pairs`) brings each sample's
partner itself, the pair's other video, under the same key; :class:`PartnerDataset` then
keeps it (and checks that ``data.partners.train`` / ``test`` ask for as many) instead of
drawing exemplars.

Heads that declare :attr:`~aqa_framework.interfaces.TaskHead.uses_partners` receive the
exemplars' features and targets. Before training, heads may fit state on the training
samples' targets (:class:`FitData`, see :meth:`~aqa_framework.interfaces.TaskHead.fit`).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqa_framework.data.skipping import is_skipped, skipped_sample
from aqa_framework.errors import DataError, SpecError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from aqa_framework.spec import PartnersSpec
    from aqa_framework.targets import Targets

__all__ = [
    "FitData",
    "PartnerDataset",
    "PartnerPool",
    "check_group_by",
    "fit_data",
    "partner_keys",
    "sample_targets",
]

PARTNERS = "partners"
"""Sample and batch key of the exemplars."""


def _base(dataset: Any, index: int) -> tuple[Any, int]:
    """The dataset holding sample ``index`` of ``dataset`` (through Subsets, partner wrappers)."""
    while True:
        if isinstance(dataset, PartnerDataset):
            dataset = dataset.queries
        elif hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
            index = int(dataset.indices[index])
            dataset = dataset.dataset
        else:
            return dataset, index


def sample_targets(dataset: Dataset, index: int) -> dict[str, Any]:
    """Key and targets of one sample, without its video when the dataset can tell.

    Uses the dataset's ``sample_targets(index)`` if it has one (clip datasets read their
    annotation records), else loads the sample and drops its video.

    Returns:
        ``{"key", "scores", "classes", "arrays"}`` (the last three possibly empty), or a
        :func:`~aqa_framework.data.skipping.skipped_sample` marker.
    """
    base, i = _base(dataset, index)
    reader = getattr(base, "sample_targets", None)
    sample = reader(i) if callable(reader) else base[i]
    if is_skipped(sample):
        return sample
    return {
        "key": str(sample["key"]),
        "scores": dict(sample.get("scores") or {}),
        "classes": dict(sample.get("classes") or {}),
        "arrays": dict(sample.get("arrays") or {}),
    }


def check_group_by(group_by: str | None, targets: Targets) -> None:
    """Refuse a ``data.partners.group_by`` that is not a class field or scalar open target.

    Scores are refused: a test sample's score is what is predicted, and choosing its
    exemplars by it would show the model the answer.

    Raises:
        SpecError: At ``data.partners.group_by``.
    """
    if group_by is None or group_by in targets.classes:
        return
    target = targets.arrays.get(group_by)
    if target is not None and math.prod(target.shape) == 1:
        return
    names = [*targets.classes, *(n for n, t in targets.arrays.items() if math.prod(t.shape) == 1)]
    why = (
        f"{group_by!r} is a score, which test samples must not be grouped by (it is what is "
        "predicted)"
        if group_by in targets.scores
        else f"the dataset has no class field or scalar open target {group_by!r}"
    )
    raise SpecError(
        [
            (
                "data.partners.group_by",
                f"{why}; group by one of: {', '.join(names) or '(none)'}, or null for any "
                "training sample",
            )
        ]
    )


def group_value(row: Mapping[str, Any], group_by: str | None) -> Any:
    """The value of ``group_by`` in a sample (or :func:`sample_targets` row); ``None`` if unset."""
    if group_by is None:
        return None
    classes = row.get("classes") or {}
    if group_by in classes:
        return int(classes[group_by])
    arrays = row.get("arrays") or {}
    if group_by in arrays:
        value = arrays[group_by]
        return round(float(value.reshape(-1)[0] if hasattr(value, "reshape") else value), 6)
    raise DataError(
        f"sample {row.get('key')!r} has no value for data.partners.group_by {group_by!r}"
    )


def _seed(seed: int, epoch: int, key: str) -> int:
    return (seed * 1_000_003 + epoch * 7919 + zlib.crc32(key.encode("utf-8"))) % 2**63


@dataclass
class PartnerPool:
    """The training samples exemplars are drawn from, with their targets and groups.

    Attributes:
        dataset: The training samples (a split or a ``Subset`` of it).
        rows: Each sample's key and targets (:func:`sample_targets`).
        group_by: Class field or scalar open target the exemplars share with the query.
        seed: Seed of the draws.
        top_up: ``nearest`` (fill a small group from the nearest group values), ``any``
            (from any other training sample) or ``error``.
    """

    dataset: Any
    rows: list[dict[str, Any]]
    group_by: str | None = None
    seed: int = 0
    top_up: str = "nearest"
    groups: dict[Any, list[int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        bad = [r["key"] for r in self.rows if is_skipped(r)]
        if bad:
            raise DataError(
                f"exemplar pool: {len(bad)} training samples could not be read (first: "
                f"{', '.join(map(str, bad[:3]))})"
            )
        for i, row in enumerate(self.rows):
            self.groups.setdefault(group_value(row, self.group_by), []).append(i)

    @classmethod
    def of(
        cls, dataset: Any, spec: PartnersSpec, seed: int, rows: list | None = None
    ) -> PartnerPool:
        """The pool of ``dataset``'s samples for a spec's ``data.partners`` and run seed."""
        rows = (
            rows if rows is not None else [sample_targets(dataset, i) for i in range(len(dataset))]
        )
        return cls(
            dataset,
            rows,
            spec.group_by,
            spec.seed if spec.seed is not None else seed,
            spec.top_up,
        )

    @property
    def keys(self) -> list[str]:
        """Keys of the pool's samples, in index order."""
        return [r["key"] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def draw(self, key: str, group: Any, count: int, epoch: int = 0) -> list[int]:
        """Pool indices of ``count`` exemplars for the query ``key`` of group value ``group``.

        Exemplars of the query's group come first, in an order drawn from (seed, epoch, key);
        a group with too few others is topped up (``top_up``); a pool with fewer than
        ``count`` other samples repeats them. The query itself is never drawn.

        Raises:
            DataError: If the pool has no other sample, or the group is too small under
                ``top_up: error``.
        """
        rng = random.Random(_seed(self.seed, epoch, key))
        same = [i for i in self.groups.get(group, []) if self.rows[i]["key"] != key]
        rng.shuffle(same)
        chosen = same[:count]
        if len(chosen) < count:
            chosen += self._top_up(key, group, count - len(chosen), set(chosen), rng)
        if not chosen:
            raise DataError(
                f"no exemplar for sample {key!r}: the training samples hold no other sample"
            )
        while len(chosen) < count:  # a tiny pool: repeat its exemplars
            chosen.append(chosen[len(chosen) % max(1, len(chosen))])
        return chosen

    def _top_up(
        self, key: str, group: Any, need: int, taken: set[int], rng: random.Random
    ) -> list[int]:
        if self.top_up == "error":
            size = len(self.groups.get(group, []))
            raise DataError(
                f"sample {key!r}: its group {self.group_by}={group!r} holds {size} training "
                f"samples, fewer than the {need} more exemplars needed (set "
                "data.partners.top_up to nearest or any)"
            )
        rest = [i for i in range(len(self.rows)) if i not in taken and self.rows[i]["key"] != key]
        rest = [
            i
            for i in rest
            if self.group_by is None or group_value(self.rows[i], self.group_by) != group
        ]
        rng.shuffle(rest)
        if self.top_up == "nearest" and isinstance(group, (int, float)):
            rest.sort(key=lambda i: abs(float(group_value(self.rows[i], self.group_by)) - group))
        return rest[:need]


def _stack(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The exemplars of one sample as one dict of ``(K, ...)`` tensors (and their keys)."""
    import torch

    out: dict[str, Any] = {
        "key": [str(p["key"]) for p in parts],
        "video": torch.stack([p["video"] for p in parts]),
    }
    if "video_mask" in parts[0]:
        out["video_mask"] = torch.stack([p["video_mask"] for p in parts])
    for part in ("scores", "classes", "arrays"):
        names = parts[0].get(part) or {}
        if names:
            out[part] = {
                n: torch.stack([torch.as_tensor(p[part][n]) for p in parts]) for n in names
            }
    return out


class PartnerDataset:
    """A split whose samples carry exemplars from a :class:`PartnerPool`.

    Other attributes (``targets``, ``keys``, ``dropped_keys`` ...) are those of the wrapped
    split.

    Args:
        queries: The split's samples.
        pool: The training samples exemplars come from.
        count: Exemplars per sample.
        vary_by_epoch: Draw anew each epoch (:meth:`set_epoch`; training), else always the
            exemplars of epoch 0 (evaluation).
    """

    def __init__(self, queries: Any, pool: PartnerPool, count: int, vary_by_epoch: bool) -> None:
        self.queries = queries
        self.pool = pool
        self.count = count
        self.vary_by_epoch = vary_by_epoch
        self.epoch = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in {"queries", "pool", "count", "vary_by_epoch", "epoch"}:
            raise AttributeError(name)
        return getattr(self.queries, name)

    def set_epoch(self, epoch: int) -> None:
        """Draw the exemplars of this epoch (training only)."""
        self.epoch = epoch if self.vary_by_epoch else 0

    def __len__(self) -> int:
        return len(self.queries)

    def exemplars(self, index: int) -> list[str]:
        """Keys of the exemplars of sample ``index`` (without loading anything but targets)."""
        base, i = _base(self.queries, index)
        own = getattr(base, "own_partner_keys", None)
        if callable(own):
            return list(own(i))
        row = sample_targets(self.queries, index)
        picks = self.pool.draw(
            row["key"], group_value(row, self.pool.group_by), self.count, self.epoch
        )
        return [self.pool.rows[i]["key"] for i in picks]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.queries[index]
        if is_skipped(sample):
            return sample
        key = str(sample["key"])
        if PARTNERS in sample:  # a pair dataset: the partner is the pair's other video
            return self._own(sample)
        group = group_value(sample, self.pool.group_by)
        picks = self.pool.draw(key, group, self.count, self.epoch)
        parts = [self.pool.dataset[i] for i in picks]
        bad = next((p for p in parts if is_skipped(p)), None)
        if bad is not None:
            return skipped_sample(key, f"its exemplar {bad['key']} could not be loaded")
        sample = dict(sample)
        sample[PARTNERS] = _stack(parts)
        return sample


    def _own(self, sample: dict[str, Any]) -> dict[str, Any]:
        """A sample that brings its own partners (pairs), checked against ``count``."""
        have = len(sample[PARTNERS]["key"])
        if have != self.count:
            raise DataError(
                f"sample {sample['key']!r} brings its own {have} partner(s) (the other videos "
                f"of its pair), but data.partners asks for {self.count}: set data.partners.train "
                f"and data.partners.test to {have}"
            )
        return sample


def partner_keys(batch: Mapping[str, Any]) -> list[list[str]] | None:
    """Each sample's exemplar keys in a collated batch, ``None`` without partners."""
    partners = batch.get(PARTNERS) if isinstance(batch, Mapping) else None
    if not partners:
        return None
    by_slot = partners["key"]  # collated: K lists of B keys
    return [list(keys) for keys in zip(*by_slot, strict=True)]


@dataclass
class FitData:
    """The targets of the training samples, for heads that fit state before training.

    Attributes:
        keys: Sample keys.
        scores: Score name -> one value per sample.
        classes: Class field -> one class index per sample.
        arrays: Open target name -> one value (a number or nested list) per sample.
        groups: The ``data.partners.group_by`` value of each sample (``None`` without
            partners or grouping).
        group_by: The grouping field, if any.
    """

    keys: list[str]
    scores: dict[str, list[float]] = field(default_factory=dict)
    classes: dict[str, list[int]] = field(default_factory=dict)
    arrays: dict[str, list[Any]] = field(default_factory=dict)
    groups: list[Any] | None = None
    group_by: str | None = None

    def __len__(self) -> int:
        return len(self.keys)


def fit_data(rows: list[dict[str, Any]], group_by: str | None = None) -> FitData:
    """:class:`FitData` of :func:`sample_targets` rows (skipped samples left out)."""
    rows = [r for r in rows if not is_skipped(r)]
    data = FitData([r["key"] for r in rows], group_by=group_by)

    def plain(value: Any) -> Any:
        return value.tolist() if hasattr(value, "tolist") else value

    for part, store in (
        ("scores", data.scores),
        ("classes", data.classes),
        ("arrays", data.arrays),
    ):
        names = dict.fromkeys(n for r in rows for n in (r.get(part) or {}))
        for name in names:
            store[name] = [plain(r[part][name]) for r in rows if name in (r.get(part) or {})]
    if group_by is not None:
        data.groups = [group_value(r, group_by) for r in rows]
    return data
