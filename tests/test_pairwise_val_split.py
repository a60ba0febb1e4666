"""The validation split of pair datasets is drawn by videos: no video is in both training and
validation pairs, straddling pairs are dropped and counted, too few validation pairs stop."""

from __future__ import annotations

import io
import json
import math

import pytest
from aqa_builtin.datasets.best import TASKS as BEST_TASKS
from aqa_builtin.datasets.best import BESTDataset
from aqa_builtin.datasets.epic_skills import TASKS as EPIC_TASKS
from aqa_builtin.datasets.epic_skills import EpicSkillsDataset
from aqa_builtin.datasets.synthetic_pairs import SyntheticPairsDataset

from aqa_framework.data.subsets import (
    MIN_VAL_PAIRS,
    held_out_videos,
    split_indices,
    train_val_indices,
    video_train_val_indices,
)
from aqa_framework.errors import DataError


def _videos(dataset, indices) -> set[str]:
    return {v for i in indices for v in dataset.sample_videos(i)}


def _assert_disjoint_by_video(dataset, split, fraction: float, seed: int) -> None:
    """No video in both sides; the dropped pairs are exactly those that straddle."""
    n = len(dataset)
    assert sorted(split.train + split.val + split.dropped) == list(range(n))
    train_videos, val_videos = _videos(dataset, split.train), _videos(dataset, split.val)
    assert split.val and split.train
    assert not train_videos & val_videos
    held = held_out_videos([dataset.sample_videos(i) for i in range(n)], fraction, seed)
    assert val_videos <= held and not train_videos & held
    for i in split.dropped:
        assert len(set(dataset.sample_videos(i)) & held) == 1  # one held out, one not


def _complete_pairs(task_videos: dict[str, int]) -> list[tuple[str, str]]:
    """Every pair of every task's videos, ``<task>/v<k>`` keys."""
    out = []
    for task, n in task_videos.items():
        keys = [f"{task}/v{k:02d}" for k in range(n)]
        out += [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    return out


# ------------------------------------------------------------------------------ the draw


def test_video_split_is_disjoint_counted_and_seeded():
    pairs = _complete_pairs({"a": 20, "b": 12})
    split = video_train_val_indices(pairs, 0.25, seed=3, dataset="toy")
    held = held_out_videos(pairs, 0.25, seed=3)
    # ceil(0.25 * n) videos of each task are held out
    assert sum(v.startswith("a/") for v in held) == 5
    assert sum(v.startswith("b/") for v in held) == 3
    for i in split.val:
        assert set(pairs[i]) <= held
    for i in split.train:
        assert not set(pairs[i]) & held
    for i in split.dropped:
        assert len(set(pairs[i]) & held) == 1
    # complete pairs: C(5,2) + C(3,2) validation pairs, C(15,2) + C(9,2) training pairs
    assert len(split.val) == 10 + 3
    assert len(split.train) == 105 + 36
    assert len(split.dropped) == len(pairs) - 13 - 141
    assert "13 validation and 141 training pairs" in split.note
    assert f"{len(split.dropped)} pairs with one video on each side dropped" in split.note
    assert "8 of 32 training videos held out" in split.note
    # the same seed gives the same split; the draw ignores the order of the samples
    assert video_train_val_indices(pairs, 0.25, seed=3, dataset="toy") == split
    assert held_out_videos(list(reversed(pairs)), 0.25, seed=3) == held
    assert held_out_videos(pairs, 0.25, seed=4) != held


def test_without_val_fraction_the_plain_draw_is_kept():
    pairs = _complete_pairs({"a": 6})
    split = video_train_val_indices(pairs, 0.0, train_size=7, seed=1)
    assert split == train_val_indices(len(pairs), 0.0, 7, 1)
    assert not split.dropped and not split.note


def test_train_size_draws_from_the_training_pairs_only():
    pairs = _complete_pairs({"a": 20})
    full = video_train_val_indices(pairs, 0.3, seed=0)
    small = video_train_val_indices(pairs, 0.3, train_size=20, seed=0)
    assert small.val == full.val and small.dropped == full.dropped
    assert len(small.train) == 20 and set(small.train) <= set(full.train)
    with pytest.raises(DataError, match=r"train_size is 500.*only 91 samples after holding out"):
        video_train_val_indices(pairs, 0.3, train_size=500, seed=0)


def test_too_few_validation_pairs_stop_with_counts_and_the_fix():
    pairs = _complete_pairs({"a": 20})  # 0.1 holds out 2 videos: one validation pair
    with pytest.raises(DataError) as info:
        video_train_val_indices(pairs, 0.1, seed=0, dataset="toy")
    msg = str(info.value)
    assert "dataset 'toy'" in msg
    assert "2 of 20 training videos held out" in msg
    assert f"1 validation pair(s) is fewer than {MIN_VAL_PAIRS}" in msg
    assert "36 pairs with one video on each side dropped" in msg
    assert "larger data.val_fraction (e.g. 0.25: 10 validation pairs" in msg
    assert "train.select_on: last" in msg
    # the suggestion works
    assert len(video_train_val_indices(pairs, 0.25, seed=0).val) == 10


def test_a_task_without_validation_or_training_pairs_stops():
    # task b's 3 videos: one held out, so no pair of b can validate
    pairs = _complete_pairs({"a": 20, "b": 3})
    with pytest.raises(DataError, match=r"task\(s\) b have no validation pair"):
        video_train_val_indices(pairs, 0.3, seed=0)
    with pytest.raises(DataError, match=r"task 'a'.*leaves no video to train on"):
        video_train_val_indices(_complete_pairs({"a": 4}), 0.8, seed=0)


def test_split_indices_picks_the_draw_by_the_dataset():
    class Plain:
        name = "plain"

        def __len__(self) -> int:
            return 10

    assert split_indices(Plain(), 0.2, None, 0) == train_val_indices(10, 0.2, None, 0)

    class Pairs(Plain):
        pairs = _complete_pairs({"a": 12})

        def __len__(self) -> int:
            return len(self.pairs)

        def sample_videos(self, index: int) -> tuple[str, str]:
            return self.pairs[index]

    split = split_indices(Pairs(), 0.4, None, 0)
    assert split == video_train_val_indices(Pairs.pairs, 0.4, seed=0, dataset="plain")
    assert split.note.startswith("dataset 'plain': validation drawn by video")


# ------------------------------------------------------------------------------ synthetic-pairs


def _pair_spec(tmp_path, val_fraction, **extra):
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    raw = {
        "model": {
            "backbone": {"name": "identity"},
            "aggregator": {"name": "average"},
            "heads": {"rank": {"name": "ranking", "params": {"hidden": 8}}},
        },
        "data": {
            "name": "synthetic-pairs",
            "params": {"routines": 64, "feature_dim": 8, "segments": 4,
                       "root": str(tmp_path / "syn")},
            "partners": {"train": 1, "test": 1},
            "batch_size": 64,
            "val_fraction": val_fraction,
            **extra,
        },
        "train": {"epochs": 1, "optimizer": {"name": "adam", "lr": 0.01},
                  "select_metric": "rank.pairwise_accuracy"},
        "seed": 0,
    }
    return resolve(parse_spec(raw), source="pairs.yaml")


def test_synthetic_pairs_open_with_a_video_disjoint_validation_split(tmp_path):
    from aqa_framework.data.open import open_data, open_split

    res = _pair_spec(tmp_path, 0.3)
    opened = open_data(res)
    full = opened.full
    train_idx = list(opened.train.queries.indices)  # PartnerDataset around the Subset
    val_idx = list(opened.val.queries.indices)
    assert not _videos(full, train_idx) & _videos(full, val_idx)
    split = split_indices(full, 0.3, None, 0)
    assert (train_idx, val_idx) == (split.train, split.val)
    _assert_disjoint_by_video(full, split, 0.3, 0)
    assert len(split.val) >= MIN_VAL_PAIRS
    assert opened.sizes["train"] == len(split.train) and opened.sizes["val"] == len(split.val)
    assert opened.notes == [split.note]
    assert f"{len(split.dropped)} pairs with one video on each side" in split.note
    # 48 training routines: ceil(0.3 * 48) = 15 held out
    assert "15 of 48 training videos held out" in split.note
    # the test split is untouched
    test = open_split(res, "test")
    assert opened.test.keys == test.keys
    assert opened.sizes["test"] == len(test)
    # determinism per seed; another subset_seed holds out other routines
    assert open_data(res).sizes == opened.sizes
    other = split_indices(full, 0.3, None, 1)
    assert other.val != split.val
    _assert_disjoint_by_video(full, other, 0.3, 1)


def test_a_run_logs_the_split_and_a_dry_run_refuses_too_few_pairs(tmp_path):
    from rich.console import Console

    from aqa_framework.builder import check_spec
    from aqa_framework.engine import runner

    res = _pair_spec(tmp_path, 0.3)
    report = check_spec(res, samples=False)
    assert "validation drawn by video: 15 of 48 training videos held out" in report

    log = io.StringIO()
    runner.run_training(res, run_dir=tmp_path / "run",
                        console=Console(file=log, width=400, soft_wrap=True))
    text = log.getvalue()
    assert "dataset 'synthetic-pairs': validation drawn by video" in text
    assert "dropped from both" in text

    tiny = _pair_spec(tmp_path, 0.05)  # 3 routines held out: at most 3 pairs
    with pytest.raises(DataError, match=r"dataset 'synthetic-pairs'.*fewer than 10.*"
                                        r"larger data.val_fraction.*select_on: last"):
        check_spec(tiny, samples=False)


def test_synthetic_pairs_dataset_names_its_videos(tmp_path):
    params = SyntheticPairsDataset.Params(routines=16, feature_dim=8, segments=4,
                                          root=str(tmp_path / "syn"))
    ds = SyntheticPairsDataset(params, "train")
    for i, pair in enumerate(ds.pairs):
        assert ds.sample_videos(i) == (f"routines/{pair.better}", f"routines/{pair.worse}")


# ------------------------------------------------------------------------------ release files


@pytest.mark.parametrize("fold", [1, 2, 3, 4])
def test_epic_skills_validation_shares_no_video_with_training(shared_data, fold):
    """All seven tasks at data.val_fraction 0.3: each task keeps pairs on both sides.

    The pair counts change against STATS.json: training keeps fewer pairs than the fold's
    ``train_pairs`` (those validating and those straddling go), the test split keeps its
    ``val_pairs``.
    """
    root = shared_data / "epic-skills"
    stats = json.loads((root / "STATS.json").read_text())["tasks"]
    params = EpicSkillsDataset.Params(root=str(root / "EPIC-Skills2018"), fold=fold)
    train = EpicSkillsDataset(params, "train")
    split = split_indices(train, 0.3, None, 0)
    _assert_disjoint_by_video(train, split, 0.3, 0)
    assert len(train) == sum(stats[t]["splits"][str(fold)]["train_pairs"] for t in EPIC_TASKS)
    assert len(EpicSkillsDataset(params, "test")) == sum(
        stats[t]["splits"][str(fold)]["val_pairs"] for t in EPIC_TASKS
    )
    for task in EPIC_TASKS:
        want = stats[task]["splits"][str(fold)]
        videos = {v for i in range(len(train)) for v in train.sample_videos(i)
                  if v.startswith(f"{task}/")}
        assert len(videos) == want["train_videos"]
        held = {v for v in _videos(train, split.val) if v.startswith(f"{task}/")}
        assert held  # every task validates
        tasks = [train.pairs[i].task for i in split.train]
        assert task in tasks
    assert len(split.train) < len(train) and len(split.val) >= MIN_VAL_PAIRS


def test_epic_skills_small_task_at_a_small_fraction_is_refused(shared_data):
    root = shared_data / "epic-skills" / "EPIC-Skills2018"
    train = EpicSkillsDataset(EpicSkillsDataset.Params(root=str(root), tasks=["Hand_Drawing"]),
                              "train")
    with pytest.raises(DataError) as info:
        split_indices(train, 0.2, None, 0)
    msg = str(info.value)
    assert "dataset 'epic-skills'" in msg and "3 of 15 training videos held out" in msg
    assert "data.val_fraction" in msg and "select_on: last" in msg


def test_best_validation_shares_no_video_with_training(shared_data):
    root = shared_data / "best"
    stats = json.loads((root / "STATS.json").read_text())["tasks"]
    train = BESTDataset(BESTDataset.Params(root=str(root)), "train")
    split = split_indices(train, 0.1, None, 0)
    _assert_disjoint_by_video(train, split, 0.1, 0)
    assert len(train) == sum(stats[t]["train_pairs"] for t in BEST_TASKS)
    # ceil(0.1 * 75) = 8 of each task's 75 training videos held out
    held = _videos(train, split.val)
    for task in BEST_TASKS:
        assert sum(v.startswith(f"{task}/") for v in held) == math.ceil(0.1 * 75)
    assert f"{len(held)} of {sum(stats[t]['train_videos'] for t in BEST_TASKS)} training" \
        in split.note
    # the test split is untouched: its pairs and videos are the release's
    test = BESTDataset(BESTDataset.Params(root=str(root)), "test")
    assert len(test) == sum(stats[t]["test_pairs"] for t in BEST_TASKS)


def test_epic_skills_through_open_data(shared_data):
    """The wiring on real files: aqa run's open_data gives video-disjoint train and val."""
    from aqa_framework.data.open import open_data
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    root = shared_data / "epic-skills" / "EPIC-Skills2018"
    raw = {
        "model": {
            "backbone": {"name": "identity"},
            "aggregator": {"name": "average"},
            "heads": {"rank": {"name": "ranking"}},
        },
        "data": {
            "name": "epic-skills",
            "params": {"root": str(root), "tasks": ["Suturing", "Knot_Tying"]},
            "partners": {"train": 1, "test": 1},
            "val_fraction": 0.25,
        },
        "train": {"select_metric": "rank.pairwise_accuracy"},
    }
    opened = open_data(resolve(parse_spec(raw), source="epic.yaml"))
    full = opened.full
    train_idx = list(opened.train.queries.indices)
    val_idx = list(opened.val.queries.indices)
    assert not _videos(full, train_idx) & _videos(full, val_idx)
    assert opened.notes and "dataset 'epic-skills'" in opened.notes[0]
