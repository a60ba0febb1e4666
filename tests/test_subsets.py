"""Smaller training sets (data.train_size): reproducible, and never drawn from the test split."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from aqa_framework.data.subsets import subset_indices, train_val_indices
from aqa_framework.errors import DataError

PAPER_SIZES = (1059, 450, 280, 140)  # Table 8
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AQA_SHARED_DATA", REPO / ".." / "shared" / "data"))


def test_subset_is_a_function_of_size_and_seed():
    a = subset_indices(1059, 140, seed=3)
    assert a == subset_indices(1059, 140, seed=3)
    assert a == sorted(a) and len(set(a)) == 140 and all(0 <= i < 1059 for i in a)
    assert a != subset_indices(1059, 140, seed=4)
    assert subset_indices(5, None) == [0, 1, 2, 3, 4]
    assert subset_indices(1059, 1059, seed=9) == list(range(1059))
    with pytest.raises(DataError, match="cannot draw 1060"):
        subset_indices(1059, 1060)


@pytest.fixture(scope="module")
def release_splits():
    """Keys of the release's train and test splits, read by the mtl-aqa dataset."""
    root = SHARED_DATA / "mtl-aqa" / "MTL-AQA_split_0_data"
    if not (root / "train_split_0.pkl").is_file():
        pytest.skip(f"release annotation files not found at {root} (set AQA_SHARED_DATA)")
    from aqa_framework.builder import open_dataset
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    spec = parse_spec({
        "model": {"backbone": {"name": "c3d"}, "heads": {"score": {"name": "score"}}},
        "data": {"name": "mtl-aqa", "params": {"root": str(root)}},
    })
    resolved = resolve(spec)
    return open_dataset(resolved, "train").keys, open_dataset(resolved, "test").keys


@pytest.mark.real_data
@pytest.mark.parametrize("val_fraction", [0.0, 0.1])
def test_paper_training_sizes_on_the_release_split(release_splits, val_fraction):
    train, test_keys = release_splits
    test = set(test_keys)
    assert (len(train), len(test)) == (1059, 353) and not set(train) & test
    available = len(train) - math.ceil(val_fraction * len(train))
    previous_val = None
    for size in PAPER_SIZES:
        if size > available:
            with pytest.raises(DataError, match=f"train_size is {size}"):
                train_val_indices(len(train), val_fraction, size, seed=0)
            continue
        idx = train_val_indices(len(train), val_fraction, size, seed=0)
        assert idx == train_val_indices(len(train), val_fraction, size, seed=0)  # same seed
        assert len(idx.train) == size and not set(idx.train) & set(idx.val)
        chosen = {train[i] for i in idx.train} | {train[i] for i in idx.val}
        assert not chosen & test  # never a test sample
        assert previous_val is None or idx.val == previous_val  # validation set is stable
        previous_val = idx.val
        other = train_val_indices(len(train), val_fraction, size, seed=1)
        assert size == len(train) or other.train != idx.train
