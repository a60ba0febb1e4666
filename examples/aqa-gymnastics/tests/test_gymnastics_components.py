"""Contract tests of the gymnastics components, written with aqa_framework.testing."""

import pytest
import torch
from aqa_gymnastics.d_plus_e_head import DPlusEHead
from aqa_gymnastics.scoring import final_score
from aqa_gymnastics.vault_dataset import VaultSyntheticDataset

from aqa_framework import testing


def open_split(split="train", train=False, **params):
    return VaultSyntheticDataset(VaultSyntheticDataset.parse_params(params), split, train)


def test_dataset_follows_the_contract():
    batch = testing.check_dataset(open_split(train_samples=4), max_samples=4)
    assert batch["video"].shape == (4, 2, 3, 16, 32, 32)


def test_final_score_is_d_plus_e_minus_penalty():
    ds = open_split(train_samples=8)
    for i in range(len(ds)):
        s = ds[i]["scores"]
        assert s["final_score"] == pytest.approx(s["d_score"] + s["e_score"] - s["penalty"])
    assert final_score(5.0, 9.0, 0.3) == pytest.approx(13.7)


def test_splits_differ_and_are_reproducible():
    a, b = open_split("test"), open_split("test")
    assert torch.equal(a[3]["video"], b[3]["video"])
    assert a[3]["scores"] == b[3]["scores"]
    assert open_split("train")[0]["scores"] != a[0]["scores"]


def test_unknown_split_is_one_clear_error():
    from aqa_framework.errors import DataError

    with pytest.raises(DataError, match="no split 'val'"):
        open_split("val")


def test_head_follows_the_contract():
    targets = open_split(train_samples=2, test_samples=2).targets
    metrics = testing.check_head(DPlusEHead, targets, {"hidden": 8})
    assert {"spearman", "mae", "d_spearman", "e_spearman"} <= set(metrics)


def test_head_final_score_is_the_sum_of_its_parts():
    targets = open_split(train_samples=2, test_samples=2).targets
    head = DPlusEHead(DPlusEHead.parse_params({}), (16,), targets).eval()
    out = head(torch.randn(5, 16))
    assert torch.allclose(out["final_score"], out["d_score"] + out["e_score"] - out["penalty"])
    assert ((out["d_score"] >= 2.0) & (out["d_score"] <= 6.4)).all()


def test_head_refuses_a_dataset_without_d_and_e_scores():
    reason = DPlusEHead.check_targets(DPlusEHead.parse_params({}), testing.tiny_targets())
    assert "d_score and e_score" in reason


def test_components_are_registered_by_the_installed_plugin():
    entry = testing.check_registered("gymnastics.d-plus-e", "head")
    assert entry.plugin.distribution == "aqa-gymnastics"
    assert testing.check_registered("gymnastics.vault-synthetic", "dataset").cls is (
        VaultSyntheticDataset
    )
