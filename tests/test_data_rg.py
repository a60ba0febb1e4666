"""rhythmic-gymnastics on the release's label files: counts, targets, the header quirk, features."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from aqa_framework.errors import DataError

APPARATUS = ("Ball", "Clubs", "Hoop", "Ribbon")


@pytest.fixture
def rg_root(shared_data):
    root = shared_data / "rhythmic-gymnastics"
    if not (root / "train.txt").is_file():
        pytest.skip(f"rhythmic gymnastics label files not found at {root}")
    return root


@pytest.fixture
def stats(rg_root):
    return json.loads((rg_root / "STATS.json").read_text(encoding="utf-8"))


def _open(root, split="train", train=False, **params):
    from aqa_builtin.datasets.rhythmic_gymnastics import RhythmicGymnasticsDataset as RG

    return RG(RG.parse_params({"root": str(root), **params}), split=split, train=train)


@pytest.mark.parametrize("split", ["train", "test"])
def test_counts_match_stats(rg_root, stats, split):
    info = stats["splits"][split]
    everything = _open(rg_root, split, apparatus="all")
    assert len(everything) == info["n_rows"]
    for apparatus in APPARATUS:
        one = _open(rg_root, split, apparatus=apparatus)
        assert len(one) == info["per_apparatus"][apparatus]
        assert all(k.startswith(apparatus + "_") for k in one.keys)


def test_scores_and_ranges_match_stats(rg_root, stats):
    train = _open(rg_root, "train", apparatus="all")
    test = _open(rg_root, "test", apparatus="all")
    assert set(train.targets.scores) == {"difficulty", "execution", "penalty", "total"}
    columns = {"difficulty": "Difficulty_Score", "execution": "Execution_Score",
               "penalty": "Penalty", "total": "Total_Score"}
    for name, column in columns.items():
        values = [r.scores[name] for r in train.records]
        assert min(values) == pytest.approx(stats["splits"]["train"][column]["min"])
        assert max(values) == pytest.approx(stats["splits"]["train"][column]["max"])
        assert np.mean(values) == pytest.approx(stats["splits"]["train"][column]["mean"], abs=1e-3)
        low = min(stats["splits"][s][column]["min"] for s in ("train", "test"))
        high = max(stats["splits"][s][column]["max"] for s in ("train", "test"))
        assert (train.targets.scores[name].low, train.targets.scores[name].high) == (low, high)
    # every row: total = D + E - penalty (to the cent the values are rounded to)
    for rec in train.records + test.records:
        s = rec.scores
        expected = s["difficulty"] + s["execution"] - s["penalty"]
        assert s["total"] == pytest.approx(expected, abs=0.011)
    assert not set(train.keys) & set(test.keys)
    first = train.records[0]
    assert first.key == "Ball_001" and first.scores["total"] == 18.8


def test_header_quirk_read_naively_is_refused(rg_root):
    """Splitting on tabs gives 4 header names for 6 fields: one clear error, not a shift."""
    from aqa_framework.data.label_table import TableLayout, read_label_table

    layout = TableLayout(columns={"penalty": "Penalty"}, key_column="Video_Name", separator="\t")
    with pytest.raises(DataError) as info:
        read_label_table(rg_root / "train.txt", layout)
    text = str(info.value)
    assert "train.txt:2" in text and "separator: null" in text


def test_model_sizes_without_feature_files(rg_root):
    from aqa_builtin.datasets.rhythmic_gymnastics import RhythmicGymnasticsDataset as RG

    params = RG.parse_params({"root": str(rg_root)})
    assert RG.input_shape(params) == (68, 1024)
    ds = _open(rg_root, "train")
    with pytest.raises(DataError, match="feature file not found"):
        ds[0]
    with pytest.raises(DataError, match="cannot be loaded"):
        ds.check_samples()


def test_features_load_and_window(rg_root, tmp_path):
    """With feature files in place: a random 68-clip window in training, the whole at test."""
    from aqa_framework.testing import check_dataset

    root = tmp_path / "rg"
    root.mkdir()
    for name in ("train.txt", "test.txt"):
        shutil.copy(rg_root / name, root / name)
    feats = root / "feats"
    feats.mkdir()
    train = _open(root, "train", apparatus="Ribbon", features_dir="feats", feature_dim=16)
    test = _open(root, "test", apparatus="Ribbon", features_dir="feats", feature_dim=16)
    rng = np.random.default_rng(0)
    for key in train.keys + test.keys:
        np.save(feats / f"{key}.npy", rng.normal(size=(int(rng.integers(50, 90)), 16)))
    batch = check_dataset(
        _open(root, "train", train=True, apparatus="Ribbon", features_dir="feats",
              feature_dim=16),
        max_samples=3,
    )
    assert batch["video"].shape == (3, 68, 16)
    sample = test[0]
    expected = np.load(feats / f"{test.keys[0]}.npy").astype(np.float32)
    assert np.array_equal(sample["video"].numpy(), expected)
    assert sample["scores"]["total"] == test.records[0].scores["total"]
    test.check_samples()
