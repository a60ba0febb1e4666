"""Smaller training sets (data.train_size): reproducible, and never drawn from the test split."""

from __future__ import annotations

import math
import pickle

import pytest

from aqa_framework.data.subsets import subset_indices, train_val_indices
from aqa_framework.errors import DataError

PAPER_SIZES = (1059, 450, 280, 140)  # Table 8


def split_keys(shared_data, name):
    path = shared_data / "mtl-aqa" / "MTL-AQA_split_0_data" / name
    with open(path, "rb") as f:  # the release's own pickle: a list of (event, dive) tuples
        return [tuple(k) for k in pickle.load(f)]


def test_subset_is_a_function_of_size_and_seed():
    a = subset_indices(1059, 140, seed=3)
    assert a == subset_indices(1059, 140, seed=3)
    assert a == sorted(a) and len(set(a)) == 140 and all(0 <= i < 1059 for i in a)
    assert a != subset_indices(1059, 140, seed=4)
    assert subset_indices(5, None) == [0, 1, 2, 3, 4]
    assert subset_indices(1059, 1059, seed=9) == list(range(1059))
    with pytest.raises(DataError, match="cannot draw 1060"):
        subset_indices(1059, 1060)


@pytest.mark.real_data
@pytest.mark.parametrize("val_fraction", [0.0, 0.1])
def test_paper_training_sizes_on_the_release_split(shared_data, val_fraction):
    train = split_keys(shared_data, "train_split_0.pkl")
    test = set(split_keys(shared_data, "test_split_0.pkl"))
    assert (len(train), len(test)) == (1059, 353)
    available = len(train) - math.ceil(val_fraction * len(train))
    previous_val = None
    for size in PAPER_SIZES:
        if size > available:
            with pytest.raises(DataError, match=f"train_size is {size}"):
                train_val_indices(len(train), val_fraction, size, seed=0)
            continue
        idx = train_val_indices(len(train), val_fraction, size, seed=0)
        again = train_val_indices(len(train), val_fraction, size, seed=0)
        assert idx == again  # same seed, same samples
        assert len(idx.train) == size and not set(idx.train) & set(idx.val)
        chosen = {train[i] for i in idx.train} | {train[i] for i in idx.val}
        assert not chosen & test  # never a test sample
        assert previous_val is None or idx.val == previous_val  # validation set is stable
        previous_val = idx.val
        other = train_val_indices(len(train), val_fraction, size, seed=1)
        assert size == len(train) or other.train != idx.train
