"""Reproducible subsets of a split: a validation hold-out and smaller training sets.

The validation samples are carved from the training split first, then ``train_size`` samples
are drawn from what remains. So the validation set does not change when the training set is
made smaller (the paper's "fewer training samples" experiments), and the test split is never
touched. Both draws depend only on the number of samples and the seed.

Pair datasets (a sample shows two videos: :class:`~aqa_framework.data.pairs.PairFeatureDataset`)
are split by *videos* instead (:func:`video_train_val_indices`): a seeded share of each task's
training videos is held out, validation pairs are the pairs whose videos are all held out,
training keeps the pairs without a held-out video, and pairs with videos on both sides are
dropped from both. So no video is seen in training and validation. :func:`split_indices`
picks the draw a dataset needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aqa_framework.errors import DataError


@dataclass(frozen=True)
class SplitIndices:
    """Indices into a training split.

    Attributes:
        train: Indices used for training, in ascending order.
        val: Indices held out for validation (epoch selection), in ascending order.
        dropped: Indices in neither (a pair with one video held out for validation and the
            other not), in ascending order.
        note: One line saying how the validation split was drawn (empty for a plain draw).
    """

    train: list[int]
    val: list[int]
    dropped: list[int] = field(default_factory=list)
    note: str = ""


MIN_VAL_PAIRS = 10
"""Fewest validation pairs a video-disjoint validation split may have (and one per task)."""


def subset_indices(num_samples: int, size: int | None, seed: int = 0) -> list[int]:
    """A reproducible random subset of ``range(num_samples)``, in ascending order.

    Args:
        num_samples: Size of the full set.
        size: How many to keep; ``None`` keeps everything.
        seed: Seed of the draw.

    Raises:
        DataError: If ``size`` exceeds ``num_samples``.
    """
    if size is None:
        return list(range(num_samples))
    if size > num_samples:
        raise DataError(f"cannot draw {size} samples from a set of {num_samples}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.permutation(num_samples)[:size])


def train_val_indices(
    num_samples: int,
    val_fraction: float = 0.0,
    train_size: int | None = None,
    seed: int = 0,
) -> SplitIndices:
    """Carve a validation set from a training split and optionally subsample the rest.

    Args:
        num_samples: Number of samples in the training split.
        val_fraction: Fraction held out for validation (rounded up to at least one sample
            when positive).
        train_size: Keep this many of the remaining samples for training (``None``: all).
        seed: Seed of both draws (``data.subset_seed``).

    Returns:
        The training and validation indices.

    Raises:
        DataError: If the split is too small for the request.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = math.ceil(val_fraction * num_samples) if val_fraction > 0 else 0
    if n_val >= num_samples:
        raise DataError(
            f"val_fraction {val_fraction} of {num_samples} samples leaves nothing to train on"
        )
    order = np.random.default_rng(seed).permutation(num_samples)
    val = sorted(int(i) for i in order[:n_val])
    rest = sorted(int(i) for i in order[n_val:])
    held = f" after holding out {n_val} for validation" if n_val else ""
    return SplitIndices(train=_train_subset(rest, train_size, seed, held), val=val)


def _train_subset(rest: list[int], train_size: int | None, seed: int, held: str) -> list[int]:
    """``train_size`` of the training indices ``rest`` (all of them for ``None``)."""
    if train_size is None:
        return rest
    if train_size > len(rest):
        raise DataError(
            f"data.train_size is {train_size}, but the training split has only "
            f"{len(rest)} samples{held}"
        )
    keep = subset_indices(len(rest), train_size, seed + 1)
    return [rest[i] for i in keep]


def split_indices(
    dataset: Any, val_fraction: float = 0.0, train_size: int | None = None, seed: int = 0
) -> SplitIndices:
    """The training and validation indices of a training split, drawn as the dataset needs.

    A dataset whose samples show several videos (it has ``sample_videos(index)``, as the pair
    datasets do) is split by videos (:func:`video_train_val_indices`); any other by samples
    (:func:`train_val_indices`).

    Args:
        dataset: The opened training split.
        val_fraction: ``data.val_fraction``.
        train_size: ``data.train_size``.
        seed: ``data.subset_seed``.

    Raises:
        DataError: If the split is too small for the request, or a video-disjoint validation
            split would hold too few pairs.
    """
    videos_of = getattr(dataset, "sample_videos", None)
    if not callable(videos_of) or val_fraction == 0:
        return train_val_indices(len(dataset), val_fraction, train_size, seed)
    return video_train_val_indices(
        [videos_of(i) for i in range(len(dataset))],
        val_fraction,
        train_size,
        seed,
        dataset=str(getattr(dataset, "name", type(dataset).__name__)),
    )


def _group(video: str) -> str:
    """The group (task) of a video key ``<group>/<id>``: the part before the last ``/``."""
    return video.rpartition("/")[0]


def held_out_videos(
    sample_videos: Sequence[Sequence[str]], val_fraction: float, seed: int = 0
) -> set[str]:
    """The videos held out for validation: ``ceil(val_fraction * n)`` of each group's ``n``.

    A video key ``<group>/<id>`` belongs to the group before its last ``/`` (the task of a
    pair dataset), so that every task keeps videos on both sides. The draw depends only on
    the set of videos and the seed, not on the order of the samples.

    Raises:
        DataError: If a group would keep no video for training.
    """
    groups: dict[str, set[str]] = {}
    for videos in sample_videos:
        for video in videos:
            groups.setdefault(_group(video), set()).add(video)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for name in sorted(groups):
        members = sorted(groups[name])
        n_val = math.ceil(val_fraction * len(members))
        if n_val >= len(members):
            where = f" of task {name!r}" if name else ""
            raise DataError(
                f"val_fraction {val_fraction} of the {len(members)} training videos{where} "
                "leaves no video to train on; set a smaller data.val_fraction"
            )
        held.update(members[int(i)] for i in rng.permutation(len(members))[:n_val])
    return held


def video_train_val_indices(
    sample_videos: Sequence[Sequence[str]],
    val_fraction: float = 0.0,
    train_size: int | None = None,
    seed: int = 0,
    *,
    dataset: str = "dataset",
    min_val: int = MIN_VAL_PAIRS,
) -> SplitIndices:
    """Carve a validation set from a training split of pairs by holding out videos.

    The held-out videos are :func:`held_out_videos`. A sample all of whose videos are held
    out is a validation sample; one with none of them trains; one with videos on both sides
    is dropped from both (``dropped``), so that no video occurs in training and validation.
    ``train_size`` samples are then drawn from the training samples as in
    :func:`train_val_indices`.

    Args:
        sample_videos: The video keys ``<task>/<id>`` of each sample, in index order.
        val_fraction: Share of each task's training videos held out.
        train_size: Keep this many of the training samples (``None``: all).
        seed: Seed of both draws (``data.subset_seed``).
        dataset: The dataset's name, for messages.
        min_val: Fewest validation samples accepted.

    Returns:
        The training, validation and dropped indices, and a one-line note of the counts.

    Raises:
        DataError: If fewer than ``min_val`` validation samples (or none of some task, or no
            training sample of some task) would be left, naming the counts and the fix.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return train_val_indices(len(sample_videos), 0.0, train_size, seed)
    held = held_out_videos(sample_videos, val_fraction, seed)
    split = _by_videos(sample_videos, held)
    total = len({v for videos in sample_videos for v in videos})
    note = (
        f"dataset '{dataset}': validation drawn by video: {len(held)} of {total} training "
        f"videos held out (data.val_fraction {val_fraction}, data.subset_seed {seed}); "
        f"{len(split.val)} validation and {len(split.train)} training pairs, "
        f"{len(split.dropped)} pairs with one video on each side dropped from both"
    )
    problem = _too_few(sample_videos, split, min_val)
    if problem:
        better = _larger_fraction(sample_videos, val_fraction, seed, min_val)
        raise DataError(
            f"{note}: {problem}, too few to select an epoch on. Set a larger "
            f"data.val_fraction{better}, or data.val_fraction: 0 with train.select_on: last "
            "(the last epoch is reported)"
        )
    train = _train_subset(split.train, train_size, seed, " after holding out videos for "
                          "validation")
    return SplitIndices(train=train, val=split.val, dropped=split.dropped, note=note)


def _by_videos(sample_videos: Sequence[Sequence[str]], held: set[str]) -> SplitIndices:
    """Samples with every video held out (val), none (train), or some (dropped)."""
    train: list[int] = []
    val: list[int] = []
    dropped: list[int] = []
    for index, videos in enumerate(sample_videos):
        inside = sum(v in held for v in videos)
        (val if inside == len(videos) else train if inside == 0 else dropped).append(index)
    return SplitIndices(train=train, val=val, dropped=dropped)


def _too_few(
    sample_videos: Sequence[Sequence[str]], split: SplitIndices, min_val: int
) -> str | None:
    """What is wrong with a video split's counts, or ``None``."""

    def groups(indices: list[int]) -> set[str]:
        return {_group(v) for i in indices for v in sample_videos[i]}

    every = groups(list(range(len(sample_videos))))
    if len(split.val) < min_val:
        return f"{len(split.val)} validation pair(s) is fewer than {min_val}"
    no_val = sorted(every - groups(split.val))
    if no_val:
        return f"task(s) {', '.join(no_val)} have no validation pair"
    no_train = sorted(every - groups(split.train))
    if no_train:
        return f"task(s) {', '.join(no_train)} have no training pair left"
    return None


def _larger_fraction(
    sample_videos: Sequence[Sequence[str]], val_fraction: float, seed: int, min_val: int
) -> str:
    """`` (e.g. F: N validation pairs)`` for the smallest larger fraction that works, if any."""
    for step in range(int(val_fraction * 20) + 1, 20):
        fraction = step / 20
        try:
            held = held_out_videos(sample_videos, fraction, seed)
        except DataError:
            return ""
        split = _by_videos(sample_videos, held)
        if _too_few(sample_videos, split, min_val) is None:
            return f" (e.g. {fraction}: {len(split.val)} validation pairs with this seed)"
    return ""
