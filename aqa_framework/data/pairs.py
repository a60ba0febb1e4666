"""Pairwise skill data: (better, worse) pairs of videos of one task, read from label files.

Skill-ranking datasets (EPIC-Skills, BEST) have no scores, only pairs: of two videos of the
same task, which shows more skill. This module reads such files and serves them as samples.

Readers (torch-free) turn a label file into :class:`Pair` rows and ``(where, problem)``
tuples naming ``file:line`` for every bad row:

* :func:`read_winner_table`: ``Vid1,Vid2,<winner>`` with a header (EPIC-Skills ``*_gt.csv``;
  the winner column may be called ``Best`` or ``Better``, rows may carry a trailing comma,
  lines may end in CRLF);
* :func:`read_order_table`: one ``better worse`` pair per line, separated by a comma (with a
  ``Better,Worse`` header, EPIC-Skills splits) or by white space (RAAN / BEST ``train.txt``).

:class:`PairFeatureDataset` is the base of the pair datasets. **A sample is one pair**: its
``"video"`` is the better video's clip features and it carries the worse video as its one
partner (``sample["partners"]``, see :mod:`aqa_framework.data.partners`), so that the two go
through the backbone in one call and a head that declares ``uses_partners`` (``ranking``)
compares them. Each sample also carries the open target ``preference`` (kind
``pair_order``): ``1.0`` when the sample's video is the better one (always, as read here),
``0.0`` for a pair of equal skill; and the class field ``task``. A spec with a pair dataset
sets ``data.partners: {train: 1, test: 1}``: the partner is the pair's other video, not a
draw from the training samples.

Splits are splits of *pairs*: a pair is in exactly one split, so it never crosses the
train/test split. The validation split (``data.val_fraction``) is drawn by *videos*
(:meth:`PairFeatureDataset.sample_videos`, :func:`~aqa_framework.data.subsets.split_indices`):
no video occurs in both training and validation pairs, and pairs that would straddle the two
are used by neither. Where a dataset also lists the videos of each split (BEST), a pair naming a
video outside its split's list is a bad row (an error naming the file and line, or left out
with a warning under ``on_error: skip``). EPIC-Skills splits only its pairs, and a video may
occur in pairs of both splits (every test pair holds at least one video unseen in training),
as in the published protocol.

Every video is read as ``segments`` clip features taken at evenly spaced positions over its
whole length (RAAN: 400), so that the two videos of a pair, and all pairs of a batch, have
the same shape; a video with fewer clips repeats some.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.errors import DataError
from aqa_framework.interfaces import InputKind, VideoDataset
from aqa_framework.targets import ArrayTarget, ClassField, Targets

__all__ = [
    "PAIR_ORDER",
    "Pair",
    "PairFeatureDataset",
    "PairParams",
    "check_pairs",
    "read_order_table",
    "read_winner_table",
]

PAIR_ORDER = "pair_order"
"""Open target kind of the ``preference`` target of pair samples."""

WINNER_COLUMNS = ("Best", "Better")
"""Names the winner column of a ``Vid1,Vid2,<winner>`` table may have."""

Problem = tuple[str, str]
"""``(where, what is wrong and how to fix it)``, ``where`` being ``file:line``."""


@dataclass(frozen=True)
class Pair:
    """One annotated pair: ``better`` shows more skill than ``worse`` (or as much, ``equal``).

    Attributes:
        task: The task both videos perform.
        better: Video id of the more skilled performance.
        worse: Video id of the less skilled one.
        where: ``file:line`` the pair was read from.
        equal: The annotation says both show the same skill.
    """

    task: str
    better: str
    worse: str
    where: str = ""
    equal: bool = False

    @property
    def videos(self) -> tuple[str, str]:
        """Both video ids, better first."""
        return (self.better, self.worse)

    @property
    def unordered(self) -> frozenset[str]:
        """The two ids without their order (to find the same pair written twice)."""
        return frozenset(self.videos)


def _lines(path: Path) -> list[str]:
    """The lines of a text file, CRLF or LF, without a final empty line.

    Raises:
        DataError: If the file is missing or not UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"pair file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read pair file {path}: {exc}") from None
    return text.splitlines()


def _fields(line: str, separator: str | None) -> list[str]:
    """Fields of a line, with one trailing empty field (a trailing comma) dropped."""
    if separator is None:
        return line.split()
    fields = [f.strip() for f in next(csv.reader(io.StringIO(line), delimiter=separator))]
    if len(fields) > 1 and fields[-1] == "":
        fields = fields[:-1]
    return fields


def read_winner_table(path: str | Path, task: str) -> tuple[list[Pair], list[Problem]]:
    """Read a ``Vid1,Vid2,<winner>`` table (EPIC-Skills ``<task>_gt.csv``).

    The header names the winner column ``Best`` or ``Better``; a row (or the header) may end
    with a comma; a row whose winner is neither of its videos is a bad row.

    Args:
        path: The CSV file.
        task: Task of every pair.

    Returns:
        The pairs in file order, and the bad rows.

    Raises:
        DataError: If the file cannot be read or its header is not ``Vid1,Vid2,Best|Better``.
    """
    path = Path(path)
    lines = _lines(path)
    header = _fields(lines[0], ",") if lines else []
    if len(header) != 3 or header[:2] != ["Vid1", "Vid2"] or header[2] not in WINNER_COLUMNS:
        raise DataError(
            f"{path}:1: header {lines[0] if lines else '(empty file)'!r} is not "
            "'Vid1,Vid2,Best' or 'Vid1,Vid2,Better'; give the pair file of an EPIC-Skills task"
        )
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = _fields(line, ",")
        if len(fields) != 3 or not all(fields):
            problems.append((where, f"expected 3 fields Vid1,Vid2,{header[2]}, got {line!r}"))
            continue
        first, second, winner = fields
        if winner not in (first, second):
            problems.append(
                (where, f"winner {winner!r} is neither {first!r} nor {second!r}; correct the row")
            )
            continue
        loser = second if winner == first else first
        pairs.append(Pair(task, winner, loser, where))
    return pairs, problems


def read_order_table(path: str | Path, task: str) -> tuple[list[Pair], list[Problem]]:
    """Read one ``better worse`` pair per line (EPIC-Skills splits, RAAN and BEST lists).

    A comma-separated file (optionally headed ``Better,Worse``, rows with a trailing comma)
    or a white-space separated one; ids may start with ``-``.

    Args:
        path: The pair file.
        task: Task of every pair.

    Returns:
        The pairs in file order, and the bad rows.

    Raises:
        DataError: If the file cannot be read.
    """
    path = Path(path)
    lines = _lines(path)
    separator = "," if any("," in line for line in lines[:2]) else None
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = _fields(line, separator)
        if number == 1 and [f.lower() for f in fields] == ["better", "worse"]:
            continue
        where = f"{path}:{number}"
        if len(fields) != 2 or not all(fields):
            problems.append((where, f"expected '<better> <worse>' (2 ids), got {line!r}"))
            continue
        pairs.append(Pair(task, fields[0], fields[1], where))
    return pairs, problems


def check_pairs(
    pairs: Iterable[Pair],
    videos: dict[str, set[str]] | None = None,
    duplicates: Literal["keep", "drop"] = "keep",
    what: str = "split",
) -> tuple[list[Pair], list[Problem]]:
    """Check pairs against the known videos and each other.

    A pair of one video with itself, a video not among its task's ``videos`` (not in the
    split's video list, or not in the release at all) and a pair that contradicts an earlier
    one (the same two videos, the other winner) are bad rows. The same pair written twice is
    kept (``duplicates: keep``, as the published splits count it) or its repeats dropped.

    Args:
        pairs: Pairs in file order.
        videos: Task -> the ids a pair of that task may name (``None``: any).
        duplicates: ``keep`` or ``drop`` repeats of a pair.
        what: What ``videos`` lists, for messages (``split``, ``release``).

    Returns:
        The good pairs and the bad rows.
    """
    good: list[Pair] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, frozenset[str]], Pair] = {}
    for pair in pairs:
        if pair.better == pair.worse:
            problems.append((pair.where, f"pairs video {pair.better!r} with itself"))
            continue
        known = None if videos is None else videos.get(pair.task, set())
        unknown = [v for v in pair.videos if known is not None and v not in known]
        if unknown:
            problems.append(
                (
                    pair.where,
                    f"video {unknown[0]!r} is not a video of task {pair.task!r} in this "
                    f"{what} (check the id, or the video lists of the split)",
                )
            )
            continue
        earlier = seen.get((pair.task, pair.unordered))
        if earlier is not None:
            if earlier.better != pair.better and not (earlier.equal and pair.equal):
                problems.append(
                    (
                        pair.where,
                        f"contradicts {earlier.where} ({earlier.better} better than "
                        f"{earlier.worse}); remove one of the two rows",
                    )
                )
            elif duplicates == "keep":
                good.append(pair)
            continue
        seen[(pair.task, pair.unordered)] = pair
        good.append(pair)
    return good, problems


class PairParams(BaseModel):
    """Where the clip features of the videos are, and how many clips a video is read as."""

    model_config = ConfigDict(extra="forbid")

    features_dir: str = Field(
        "features",
        description="Folder of the feature files (one per video), relative to the dataset's "
        "root unless absolute.",
    )
    file_pattern: str = Field(
        "{task}/{video}.npy",
        description="File of a video inside features_dir, formatted with task and video "
        "('.npy', or '.npz' read through npz_key; RAAN's files: '{video}_rgb.npz').",
    )
    npz_key: str | None = Field(
        None, description="Array to read from a .npz file (RAAN: arr_0); null: its only array."
    )
    feature_dim: int | None = Field(
        1024,
        ge=1,
        description="Features per clip (D), to size the model without opening a file (I3D: "
        "1024); null: read from the first sample. Every file must have it.",
    )
    segments: int = Field(
        400,
        ge=1,
        description="Clips a video is read as: evenly spaced over the whole video (RAAN's "
        "features hold 400 segments); a shorter video repeats clips.",
    )
    duplicates: Literal["keep", "drop"] = Field(
        "keep",
        description="The same pair written twice (EPIC-Skills: 2 pairs in 2 tasks): 'keep' "
        "both rows, as the published splits count them, or 'drop' the repeat.",
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="Bad rows (unknown videos, contradicting or malformed pairs, missing "
        "feature files): 'raise' one error naming file and line, or 'skip' them with a warning.",
    )


_MAX_LISTED = 5


class PairFeatureDataset(VideoDataset):
    """Base of datasets whose samples are (better, worse) pairs of clip-feature videos.

    Subclasses implement :meth:`read_pairs` (the split's pairs and bad rows) and may
    override :meth:`root_folder` (where ``features_dir`` is relative to) and
    :attr:`tasks_of` (the class labels of ``task``).
    """

    Params: ClassVar[type[BaseModel]] = PairParams
    input_kind: ClassVar[InputKind] = "features"

    def __init__(self, params: Any, split: str = "train", train: bool = False) -> None:
        if split not in self.splits:
            raise DataError(
                f"dataset '{self.name}' has no split '{split}' (splits: {', '.join(self.splits)})"
            )
        super().__init__(params, split, train)
        pairs, problems = self.read_pairs(split)
        if params.on_error == "skip":
            for pair in pairs:
                missing = [v for v in pair.videos if not self.feature_file(pair.task, v).is_file()]
                if missing:
                    problems.append(
                        (pair.where, f"feature file not found: "
                                     f"{self.feature_file(pair.task, missing[0])}")
                    )
        self.dropped_keys: list[str] = []
        if problems:
            self._report(problems)
            bad = {where for where, _ in problems}
            dropped = [p for p in pairs if p.where in bad]
            rows = bad - {p.where for p in dropped}  # rows that never became a pair
            self.dropped_keys = [self._pair_key(p) for p in dropped] + sorted(rows)
            pairs = [p for p in pairs if p.where not in bad]
        if not pairs:
            raise DataError(f"dataset '{self.name}' ({split} split): no pair left")
        self.pairs: list[Pair] = pairs
        self.task_names: list[str] = self.tasks_of()
        self._keys = self._unique_keys(pairs)
        self._dim: int | None = params.feature_dim

    # ----------------------------------------------------------------------------- to implement

    def read_pairs(self, split: str) -> tuple[list[Pair], list[Problem]]:
        """The pairs of a split and its bad rows (``(file:line, problem)``)."""
        raise NotImplementedError

    def tasks_of(self) -> list[str]:
        """Labels of the ``task`` class field (default: the tasks of the split's pairs)."""
        return sorted({p.task for p in self.pairs})

    @classmethod
    def root_folder(cls, params: Any) -> Path | None:
        """Folder that ``features_dir`` is relative to (``None``: the current directory)."""
        return None

    # ----------------------------------------------------------------------------- files

    @classmethod
    def features_folder(cls, params: Any) -> Path:
        """The folder of the feature files."""
        from aqa_framework.video.params import expand_path

        folder = expand_path(params.features_dir)
        root = cls.root_folder(params)
        return folder if folder.is_absolute() or root is None else root / params.features_dir

    def feature_file(self, task: str, video: str) -> Path:
        """The feature file of one video."""
        return self.features_folder(self.params) / self.params.file_pattern.format(
            task=task, video=video
        )

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...] | None:
        """``(segments, D)``, or ``None`` when ``D`` is only known from a file."""
        dim = params.feature_dim  # type: ignore[attr-defined]
        return (int(params.segments), int(dim)) if dim else None  # type: ignore[attr-defined]

    @classmethod
    def read_video(cls, params: BaseModel, path: str | Path, *, frame_size: Any = None) -> Any:
        """One feature file as ``(segments, D)`` (``aqa predict FILE.npy`` scores one video)."""
        import torch

        from aqa_framework.data.feature_files import load_feature_file

        arr = load_feature_file(path, params.npz_key, params.feature_dim)  # type: ignore[attr-defined]
        return torch.from_numpy(_segments(arr, params.segments))  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------- samples

    @property
    def targets(self) -> Targets:
        """``preference`` (kind ``pair_order``) and the class field ``task``."""
        labels = self.task_names if len(self.task_names) > 1 else [*self.task_names, "(none)"]
        return Targets(
            classes={"task": ClassField(labels=labels, description="task of the pair")},
            arrays={
                "preference": ArrayTarget(
                    kind=PAIR_ORDER,
                    low=0.0,
                    high=1.0,
                    description="1: the sample's video shows more skill than its partner; "
                    "0: as much",
                )
            },
        )

    @property
    def keys(self) -> list[str]:
        """Pair keys ``<task>/<better>><worse>`` (``#2`` on a repeated pair), in index order."""
        return list(self._keys)

    def __len__(self) -> int:
        """Number of pairs in the split."""
        return len(self.pairs)

    def sample_targets(self, index: int) -> dict[str, Any]:
        """Key and targets of pair ``index`` without loading features."""
        pair = self.pairs[index]
        return {
            "key": self._keys[index],
            "scores": {},
            "classes": {"task": self.task_names.index(pair.task)},
            "arrays": {"preference": 0.0 if pair.equal else 1.0},
        }

    def sample_videos(self, index: int) -> tuple[str, str]:
        """Video keys ``<task>/<id>`` of pair ``index``, better first.

        The validation split of a pair dataset is drawn by these
        (:func:`~aqa_framework.data.subsets.split_indices`): no video occurs in both
        training and validation pairs.
        """
        pair = self.pairs[index]
        return (f"{pair.task}/{pair.better}", f"{pair.task}/{pair.worse}")

    def own_partner_keys(self, index: int) -> list[str]:
        """Video key of the partner of pair ``index``: its worse video ``<task>/<id>``."""
        pair = self.pairs[index]
        return [f"{pair.task}/{pair.worse}"]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load pair ``index``: the better video, and the worse one as its partner."""
        import torch

        from aqa_framework.data.skipping import skipped_sample

        if not 0 <= index < len(self.pairs):
            raise IndexError(f"pair index {index} out of range (split has {len(self)})")
        pair = self.pairs[index]
        try:
            better, worse = (self._video(pair.task, v) for v in pair.videos)
        except DataError as exc:
            if self.params.on_error == "raise":
                raise DataError(f"pair {self._keys[index]} ({pair.where}): {exc}") from None
            return skipped_sample(self._keys[index], str(exc))
        task = self.task_names.index(pair.task)
        mask = torch.ones(better.shape[0], dtype=torch.bool)
        return {
            "key": self._keys[index],
            "video": better,
            "video_mask": mask,
            "classes": {"task": task},
            "arrays": {"preference": torch.tensor(0.0 if pair.equal else 1.0)},
            "partners": {
                "key": [f"{pair.task}/{pair.worse}"],
                "video": worse.unsqueeze(0),
                "video_mask": mask.unsqueeze(0),
                "classes": {"task": torch.tensor([task])},
            },
        }

    def _video(self, task: str, video: str) -> Any:
        import torch

        from aqa_framework.data.feature_files import load_feature_file

        arr = load_feature_file(self.feature_file(task, video), self.params.npz_key, self._dim)
        self._dim = self._dim or int(arr.shape[1])
        return torch.from_numpy(_segments(arr, self.params.segments))

    @staticmethod
    def _pair_key(pair: Pair) -> str:
        return f"{pair.task}/{pair.better}>{pair.worse}"

    def _unique_keys(self, pairs: list[Pair]) -> list[str]:
        counts: dict[str, int] = {}
        keys = []
        for pair in pairs:
            key = self._pair_key(pair)
            counts[key] = counts.get(key, 0) + 1
            keys.append(key if counts[key] == 1 else f"{key}#{counts[key]}")
        return keys

    def _report(self, problems: list[Problem]) -> None:
        where = f"dataset '{self.name}' ({self.split} split)"
        lines = [f"{w}: {m}" for w, m in problems]
        more = len(lines) - _MAX_LISTED
        body = "\n  ".join(lines[:_MAX_LISTED] + ([f"... and {more} more"] if more > 0 else []))
        if self.params.on_error == "raise":
            raise DataError(
                f"{where}: {len(problems)} bad pair row(s):\n  {body}\n"
                "(fix the files, or set on_error: skip to leave such pairs out)"
            )
        from aqa_framework.video.dataset import DataSkipWarning

        warnings.warn(
            f"{where}: skipped {len({w for w, _ in problems})} bad pair row(s):\n  {body}",
            DataSkipWarning,
            stacklevel=3,
        )


def _segments(arr: Any, count: int) -> Any:
    """``count`` rows of ``arr`` ``(L, D)`` at evenly spaced positions, as float32."""
    import numpy as np

    index = np.linspace(0, arr.shape[0] - 1, count).round().astype(np.int64)
    return np.ascontiguousarray(arr[index], dtype=np.float32)
