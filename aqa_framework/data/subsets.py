"""Reproducible subsets of a split: a validation hold-out and smaller training sets.

The validation samples are carved from the training split first, then ``train_size`` samples
are drawn from what remains. So the validation set does not change when the training set is
made smaller (the paper's "fewer training samples" experiments), and the test split is never
touched. Both draws depend only on the number of samples and the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aqa_framework.errors import DataError


@dataclass(frozen=True)
class SplitIndices:
    """Indices into a training split.

    Attributes:
        train: Indices used for training, in ascending order.
        val: Indices held out for validation (epoch selection), in ascending order.
    """

    train: list[int]
    val: list[int]


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
    if train_size is not None:
        if train_size > len(rest):
            held = f" after holding out {n_val} for validation" if n_val else ""
            raise DataError(
                f"data.train_size is {train_size}, but the training split has only "
                f"{len(rest)} samples{held}"
            )
        keep = subset_indices(len(rest), train_size, seed + 1)
        rest = [rest[i] for i in keep]
    return SplitIndices(train=rest, val=val)
