"""One way to open a spec's data: :func:`open_data` and the :class:`OpenedData` bundle.

``aqa run`` (training, validation and evaluation splits), ``aqa evaluate`` (one split),
``aqa probe`` and ``aqa data`` open the dataset through :func:`open_data`, so the split names,
the validation split carved from the training split and the subset sizes follow the same rules
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqa_framework.errors import DataError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from aqa_framework.data.partners import PartnerPool
    from aqa_framework.engine.distributed import DistContext
    from aqa_framework.interfaces import VideoDataset
    from aqa_framework.resolve import ResolvedSpec
    from aqa_framework.targets import Targets

__all__ = ["OpenedData", "open_data", "open_split"]


@dataclass
class OpenedData:
    """The splits of a spec's dataset, opened, with what the model is sized for.

    Attributes:
        train: The training samples (a ``Subset`` of the training split when
            ``data.val_fraction`` or ``data.train_size`` take some away), augmented for
            training; ``None`` when only an evaluation split was opened.
        val: The validation samples held out from the training split (without augmentation),
            ``None`` without ``data.val_fraction``.
        test: The evaluation split (``eval.split``, or the split asked for), without
            augmentation.
        targets: What the dataset provides (of the training split, else the evaluation split).
        sizes: Split name -> number of samples (``train``, ``val``, the evaluation split).
        input_shape: One sample's ``(N, C, T, H, W)``: the dataset's declaration, else (when
            the training splits are opened) read from the first evaluation sample.
        split: Name of the evaluation split.
        full: The whole training split (augmented), ``None`` when it was not opened.
        partners: With ``data.partners``: the training samples (without augmentation) that
            the validation and evaluation samples draw their exemplars from.
        notes: Lines for the run log about how the splits were drawn (a pair dataset's
            validation split drawn by video, and the pairs it dropped).
    """

    train: Dataset | None
    val: Dataset | None
    test: VideoDataset
    targets: Targets
    sizes: dict[str, int] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    split: str = "test"
    full: VideoDataset | None = None
    partners: PartnerPool | None = None
    notes: list[str] = field(default_factory=list)


def open_split(
    resolved: ResolvedSpec, split: str, *, train: bool = False, check: bool = True
) -> VideoDataset:
    """Open one split of the spec's dataset, by a name the dataset declares.

    Args:
        resolved: A resolved spec.
        split: The split's name.
        train: Apply training-time augmentation.
        check: Refuse a name the dataset class does not declare in ``splits``.

    Raises:
        DataError: If the dataset has no such split, or it cannot be opened.
    """
    from aqa_framework.builder import open_dataset

    cls = resolved.dataset.cls
    splits = tuple(getattr(cls, "splits", ("train", "test")))
    if check and split not in splits:
        raise DataError(
            f"dataset '{resolved.dataset.name}' has no split {split!r} "
            f"(splits: {', '.join(splits)})"
        )
    return open_dataset(resolved, split, train=train)


def open_data(
    resolved: ResolvedSpec,
    *,
    training: bool = True,
    split: str | None = None,
    ctx: DistContext | None = None,
) -> OpenedData:
    """Open the splits a spec needs.

    With ``training`` (``aqa run``): the training split with augmentation, opened by rank 0
    first under DDP (a dataset generated on first use is written once); the training and
    validation indices of ``data.val_fraction``, ``data.train_size`` and ``data.subset_seed``
    (:func:`~aqa_framework.data.subsets.split_indices`: by videos for a pair dataset, so that
    no video is in both training and validation pairs); the validation samples without
    augmentation; the evaluation split. The input shape is the dataset's declaration, else
    the shape of the first evaluation sample.

    Without ``training`` (``aqa evaluate``, ``aqa probe``, ``aqa data``): the evaluation split
    alone, without augmentation; the input shape only as declared.

    Args:
        resolved: A resolved spec.
        training: Also open the training (and validation) samples.
        split: The evaluation split; default ``eval.split`` (checked by
            :func:`~aqa_framework.resolve.check_eval_split`, a :class:`SpecError` at
            ``eval.split``); a split asked for by name must be one the dataset declares
            (:class:`DataError`).
        ctx: The process group (default: a single process).

    Raises:
        SpecError: If ``eval.split`` is not a split of the dataset.
        DataError: If a split cannot be opened, is not declared, or is too small for the
            validation fraction and training size.
    """
    from aqa_framework.builder import dataset_input_shape
    from aqa_framework.resolve import check_eval_split

    spec = resolved.spec
    if split is None:
        check_eval_split(resolved)
        split = spec.eval.split
    if not training:
        test = open_split(resolved, split)
        opened = OpenedData(
            None,
            None,
            test,
            test.targets,
            {split: len(test)},
            dataset_input_shape(test),
            split,
        )
        if spec.data.partners is not None:
            _with_partners(resolved, opened, None)
        return opened
    from torch.utils.data import Subset

    from aqa_framework.data.subsets import split_indices
    from aqa_framework.engine import distributed as D

    ctx = ctx if ctx is not None else D.DistContext()
    full: Any = None
    # Rank 0 opens first: a dataset generated on first use is written once.
    if ctx.is_main:
        full = open_split(resolved, "train", train=True, check=False)
    D.barrier(ctx)
    if not ctx.is_main:
        full = open_split(resolved, "train", train=True, check=False)
    idx = split_indices(
        full, spec.data.val_fraction, spec.data.train_size, spec.data.subset_seed
    )
    train = full if len(idx.train) == len(full) else Subset(full, idx.train)
    val = None
    if idx.val:
        val = Subset(open_split(resolved, "train", check=False), idx.val)
    test = open_split(resolved, split, check=False)
    sizes = {"train": len(train), "val": len(idx.val), split: len(test)}
    shape = dataset_input_shape(full)
    if shape is None:  # not declared: one (unaugmented) sample tells
        shape = tuple(test[0]["video"].shape)
    opened = OpenedData(train, val, test, full.targets, sizes, shape, split, full)
    if idx.note:
        opened.notes.append(idx.note)
    if spec.data.partners is not None:
        _with_partners(resolved, opened, idx.train)
    return opened


def _with_partners(resolved: ResolvedSpec, opened: OpenedData, train_idx: list[int] | None) -> None:
    """Wrap the opened splits so that their samples carry exemplars (``data.partners``).

    The exemplars come from the training samples: the training split less the validation
    samples (the same indices as training uses), without augmentation for evaluation and
    with it for training.
    """
    from torch.utils.data import Subset

    from aqa_framework.data.partners import PartnerDataset, PartnerPool, check_group_by
    from aqa_framework.data.subsets import split_indices

    spec = resolved.spec
    partners = spec.data.partners
    assert partners is not None
    check_group_by(partners.group_by, opened.targets)
    plain = open_split(resolved, "train", check=False)
    if train_idx is None:
        train_idx = split_indices(
            plain, spec.data.val_fraction, spec.data.train_size, spec.data.subset_seed
        ).train
    samples = plain if len(train_idx) == len(plain) else Subset(plain, train_idx)
    pool = PartnerPool.of(samples, partners, spec.seed)
    if opened.train is not None:
        train_pool = PartnerPool.of(opened.train, partners, spec.seed, rows=pool.rows)
        opened.train = PartnerDataset(opened.train, train_pool, partners.train, True)
    if opened.val is not None:
        opened.val = PartnerDataset(opened.val, pool, partners.test, False)
    opened.test = PartnerDataset(opened.test, pool, partners.test, False)  # type: ignore[assignment]
    opened.partners = pool
