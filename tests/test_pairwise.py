"""Pairwise skill: pair readers, EPIC-Skills and BEST on the release files, the ranking head."""

from __future__ import annotations

import csv
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from aqa_builtin.datasets.best import TASKS as BEST_TASKS
from aqa_builtin.datasets.best import BESTDataset
from aqa_builtin.datasets.epic_skills import TASKS as EPIC_TASKS
from aqa_builtin.datasets.epic_skills import EpicSkillsDataset
from aqa_builtin.datasets.synthetic_pairs import SyntheticPairsDataset
from aqa_builtin.heads.ranking import RankingHead

from aqa_framework import metrics as M
from aqa_framework import testing
from aqa_framework.data.pairs import check_pairs, read_order_table, read_winner_table
from aqa_framework.errors import DataError, SpecError
from aqa_framework.video.dataset import DataSkipWarning

# ------------------------------------------------------------------------------ readers


def test_winner_tables_read_both_spellings_trailing_commas_and_crlf(tmp_path):
    a = tmp_path / "a_gt.csv"
    a.write_bytes(b"Vid1,Vid2,Best,\r\nA1,A2,A2,\r\nA3,A1,A3\r\n")
    b = tmp_path / "b_gt.csv"
    b.write_text("Vid1,Vid2,Better\nB001,B002,B001,\n")
    pairs, problems = read_winner_table(a, "T")
    assert problems == []
    assert [(p.better, p.worse) for p in pairs] == [("A2", "A1"), ("A3", "A1")]
    assert pairs[0].where == f"{a}:2"
    pairs, _ = read_winner_table(b, "U")
    assert [(p.task, p.better, p.worse) for p in pairs] == [("U", "B001", "B002")]


def test_bad_winner_rows_name_file_and_line(tmp_path):
    f = tmp_path / "gt.csv"
    f.write_text("Vid1,Vid2,Best\nA1,A2,A9\nA1,A3\nA2,A3,A3\n")
    pairs, problems = read_winner_table(f, "T")
    assert [(p.better, p.worse) for p in pairs] == [("A3", "A2")]
    assert problems[0][0] == f"{f}:2" and "'A9' is neither" in problems[0][1]
    assert problems[1][0] == f"{f}:3" and "expected 3 fields" in problems[1][1]
    f.write_text("Video,Other,Winner\n")
    with pytest.raises(DataError, match=r"gt.csv:1: header .* not 'Vid1,Vid2,Best'"):
        read_winner_table(f, "T")


def test_order_tables_comma_with_header_or_spaces_with_dash_ids(tmp_path):
    f = tmp_path / "train_1.csv"
    f.write_text("Better,Worse,\nS32,S50,\nS18,S20,\n")
    pairs, problems = read_order_table(f, "T")
    assert problems == []
    assert [(p.better, p.worse) for p in pairs] == [("S32", "S50"), ("S18", "S20")]
    g = tmp_path / "train.txt"
    g.write_text("-l8BmvjKepM BTKb5ebeLUc\nonly_one\n")
    pairs, problems = read_order_table(g, "T")
    assert [(p.better, p.worse) for p in pairs] == [("-l8BmvjKepM", "BTKb5ebeLUc")]
    assert problems == [(f"{g}:2", "expected '<better> <worse>' (2 ids), got 'only_one'")]


def test_check_pairs_duplicates_contradictions_unknown_videos(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a b\nb a\na b\nc a\na a\n")
    pairs, _ = read_order_table(f, "T")
    kept, problems = check_pairs(pairs, {"T": {"a", "b"}})
    assert [p.where for p in kept] == [f"{f}:1", f"{f}:3"]  # the repeat is kept
    wheres = dict(problems)
    assert "contradicts" in wheres[f"{f}:2"] and f"{f}:1" in wheres[f"{f}:2"]
    assert "'c' is not a video of task 'T'" in wheres[f"{f}:4"]
    assert "with itself" in wheres[f"{f}:5"]
    kept, _ = check_pairs(pairs, {"T": {"a", "b"}}, duplicates="drop")
    assert [p.where for p in kept] == [f"{f}:1"]


def test_pairwise_accuracy_counts_ties_as_wrong():
    assert M.pairwise_accuracy([2, 1, 3], [1, 2, 0]) == pytest.approx(2 / 3)
    assert M.pairwise_accuracy([1, 1], [1, 1]) == 0.0
    assert np.isnan(M.pairwise_accuracy([], []))
    assert np.isnan(M.pairwise_accuracy([float("nan")], [0.0]))
    by = M.pairwise_accuracy_by_group([1, 0, 5], [0, 1, 4], ["x", "x", "y"])
    assert by == {"x": 0.5, "y": 1.0}


# ------------------------------------------------------------------------------ release files


@pytest.mark.parametrize("fold", [1, 2, 3, 4])
def test_epic_skills_counts_match_stats(shared_data, fold):
    root = shared_data / "epic-skills"
    stats = json.loads((root / "STATS.json").read_text())["tasks"]
    for task in EPIC_TASKS:
        params = EpicSkillsDataset.Params(
            root=str(root / "EPIC-Skills2018"), tasks=[task], fold=fold
        )
        want = stats[task]["splits"][str(fold)]
        assert len(EpicSkillsDataset(params, "train")) == want["train_pairs"], task
        assert len(EpicSkillsDataset(params, "test")) == want["val_pairs"], task
    params = EpicSkillsDataset.Params(root=str(root / "EPIC-Skills2018"), fold=fold)
    test = EpicSkillsDataset(params, "test")
    assert test.targets.classes["task"].labels == list(EPIC_TASKS)
    assert len(set(test.keys)) == len(test)  # repeated pairs get their own keys


def test_epic_skills_drop_duplicates_and_pairs_stay_in_their_split(shared_data):
    root = str(shared_data / "epic-skills" / "EPIC-Skills2018")
    params = EpicSkillsDataset.Params(root=root, tasks=["Chopstick_Using"], duplicates="drop")
    train, test = EpicSkillsDataset(params, "train"), EpicSkillsDataset(params, "test")
    both = {p.unordered for p in train.pairs} & {p.unordered for p in test.pairs}
    assert not both  # a pair is in one split only
    assert len(train) + len(test) == 534  # the gt file's unique pairs


def test_best_counts_match_stats(shared_data):
    root = shared_data / "best"
    stats = json.loads((root / "STATS.json").read_text())["tasks"]
    for task in BEST_TASKS:
        params = BESTDataset.Params(root=str(root), tasks=[task])
        assert len(BESTDataset(params, "train")) == stats[task]["train_pairs"]
        assert len(BESTDataset(params, "test")) == stats[task]["test_pairs"]
    keys = BESTDataset(BESTDataset.Params(root=str(root)), "train").keys
    assert any("/-" in k for k in keys)  # ids starting with '-' are read as ids


def _best_copy(shared_data, tmp_path):
    root = tmp_path / "best"
    (root / "splits").mkdir(parents=True)
    shutil.copy(shared_data / "best" / "BEST.csv", root / "BEST.csv")
    shutil.copytree(shared_data / "best" / "splits" / "origami", root / "splits" / "origami")
    return root


def test_best_pair_crossing_the_split_is_an_error_or_skipped(shared_data, tmp_path):
    root = _best_copy(shared_data, tmp_path)
    folder = root / "splits" / "origami"
    train_video = (folder / "train_vid_list.txt").read_text().split()[0]
    test_video = (folder / "test_vid_list.txt").read_text().split()[0]
    lines = (folder / "test.txt").read_text().splitlines()
    lines[4] = f"{test_video} {train_video}"
    (folder / "test.txt").write_text("\n".join(lines) + "\n")
    params = BESTDataset.Params(root=str(root), tasks=["origami"])
    with pytest.raises(DataError, match=rf"test.txt:5: video '{train_video}' is not a video of "
                                        r"task 'origami' in this test split's video list"):
        BESTDataset(params, "test")
    skip = params.model_copy(update={"on_error": "skip"})
    with pytest.warns(DataSkipWarning, match="test.txt:5"):
        # skip also leaves out pairs without feature files: give every video one
        feats = root / "features" / "origami"
        feats.mkdir(parents=True)
        for v in (folder / "test_vid_list.txt").read_text().split():
            np.save(feats / f"{v}.npy", np.ones((3, 4), np.float32))
        data = BESTDataset(skip.model_copy(update={"feature_dim": 4, "segments": 5}), "test")
    assert len(data) == 211 and len(data.dropped_keys) == 1
    sample = data[0]
    assert sample["video"].shape == (5, 4) and sample["partners"]["video"].shape == (1, 5, 4)


def test_epic_split_pair_not_in_gt_names_file_and_line(shared_data, tmp_path):
    src = shared_data / "epic-skills" / "EPIC-Skills2018" / "annotations" / "Sonic_Drawing"
    root = tmp_path / "es"
    shutil.copytree(src, root / "annotations" / "Sonic_Drawing")
    split = root / "annotations" / "Sonic_Drawing" / "splits" / "sonic_drawing_val_1.csv"
    lines = split.read_text().splitlines()
    better, worse = lines[1].split(",")[:2]
    lines[1] = f"{worse},{better},"
    split.write_text("\n".join(lines) + "\n")
    params = EpicSkillsDataset.Params(root=str(root), tasks=["Sonic_Drawing"])
    with pytest.raises(DataError, match=rf"sonic_drawing_val_1.csv:2: says {worse} is better"):
        EpicSkillsDataset(params, "test")


# ------------------------------------------------------------------------------ synthetic, head


def _synthetic(tmp_path, **kw):
    params = SyntheticPairsDataset.Params(
        routines=24, feature_dim=8, segments=6, root=str(tmp_path / "syn"), **kw
    )
    return params


def test_synthetic_pairs_order_by_hidden_execution_within_a_split(tmp_path):
    params = _synthetic(tmp_path)
    train = SyntheticPairsDataset(params, "train")
    batch = testing.check_dataset(train)
    assert batch["video"].shape == (2, 6, 8) and batch["partners"]["video"].shape == (2, 1, 6, 8)
    root = tmp_path / "syn"
    for split, data in (("train", train), ("test", SyntheticPairsDataset(params, "test"))):
        with (root / f"{split}.csv").open() as fh:
            execution = {r["video"]: float(r["execution"]) for r in csv.DictReader(fh)}
        for pair in data.pairs:
            assert execution[pair.better] - execution[pair.worse] >= 1.0
    with pytest.raises(DataError, match="other settings"):
        SyntheticPairsDataset(params.model_copy(update={"min_gap": 2.0}), "train")


def _head(**params):
    from aqa_framework.targets import ArrayTarget, ClassField, Targets

    t = Targets(
        classes={"task": ClassField(labels=["a", "b"])},
        arrays={"preference": ArrayTarget(kind="pair_order", low=0, high=1)},
    )
    return RankingHead(RankingHead.Params(**params), (4,), t)


def test_ranking_head_loss_predictions_and_per_task_accuracy():
    testing.check_component_class(RankingHead, "head")
    head = _head(margin=1.0)
    with torch.no_grad():
        head.scorer[-1].weight.copy_(torch.tensor([[1.0, 0, 0, 0]]))
        head.scorer[-1].bias.zero_()
    q = torch.tensor([[3.0, 0, 0, 0], [0.5, 0, 0, 0], [1.0, 0, 0, 0]])
    p = torch.tensor([[0.0, 0, 0, 0], [0.0, 0, 0, 0], [2.0, 0, 0, 0]])
    out = head(q, None, {"features": p.unsqueeze(1)})
    batch = {"arrays": {"preference": torch.ones(3)}, "classes": {"task": torch.tensor([0, 0, 1])}}
    # hinge max(0, 1 - (s - p)): 0, 0.5, 2
    assert head.loss(out, batch).item() == pytest.approx((0 + 0.5 + 2) / 3)
    preds, refs = head.predict(out), head.references(batch)
    assert preds == {"skill": [3.0, 0.5, 1.0], "partner_skill": [0.0, 0.0, 2.0]}
    metrics = head.metrics(preds, refs)
    assert metrics["pairwise_accuracy"] == pytest.approx(2 / 3)
    assert metrics["pairwise_accuracy_a"] == 1.0 and metrics["pairwise_accuracy_b"] == 0.0
    assert metrics["pairwise_accuracy_mean"] == 0.5
    # an equal pair is pulled within the margin
    batch["arrays"]["preference"] = torch.zeros(3)
    assert head.loss(out, batch).item() == pytest.approx((2 + 0 + 0) / 3)


def test_ranking_head_needs_a_pair_dataset():
    problem = RankingHead.check_targets(RankingHead.Params(), testing.tiny_targets())
    assert problem and "pair_order" in problem


# ------------------------------------------------------------------------------ a run


def _spec(tmp_path, **data):
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    raw = {
        "model": {
            "backbone": {"name": "identity"},
            "aggregator": {"name": "average"},
            "heads": {"rank": {"name": "ranking", "params": {"hidden": 16}}},
        },
        "data": {
            "name": "synthetic-pairs",
            "params": {"routines": 40, "feature_dim": 16, "segments": 8,
                       "root": str(tmp_path / "syn"), **data},
            "partners": {"train": 1, "test": 1},
            "batch_size": 16,
        },
        "train": {"epochs": 12, "optimizer": {"name": "adam", "lr": 0.01},
                  "select_metric": "rank.pairwise_accuracy"},
        "seed": 0,
    }
    return raw, resolve(parse_spec(raw), source="pairs.yaml")


def test_a_pair_spec_trains_and_reports_pairwise_accuracy(tmp_path):
    from aqa_framework.data.open import open_data
    from aqa_framework.engine import runner
    from aqa_framework.engine.inference import evaluate_split, load_trained_model

    raw, res = _spec(tmp_path)
    run = tmp_path / "run"
    runner.run_training(res, run_dir=run)
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    test = open_data(res, training=False).test
    assert [r["key"] for r in rows] == test.keys
    for row, pair in zip(rows, test.pairs, strict=True):
        assert row["exemplars"] == f"routines/{pair.worse}"
        float(row["rank.skill"]), float(row["rank.partner_skill"])
    share = np.mean([float(r["rank.skill"]) > float(r["rank.partner_skill"]) for r in rows])
    result = evaluate_split(load_trained_model(run))
    assert result.metrics["rank.pairwise_accuracy"] == pytest.approx(share)
    assert result.metrics["rank.pairwise_accuracy"] >= 0.7  # chance is 0.5: it learned the order


def test_pair_samples_refuse_more_than_one_partner(tmp_path):
    from aqa_framework.data.open import open_data
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    raw, _ = _spec(tmp_path)
    raw["data"]["partners"] = {"train": 1, "test": 3}
    res = resolve(parse_spec(raw), source="pairs.yaml")
    with pytest.raises(DataError, match=r"brings its own 1 partner.*data.partners.test to 1"):
        open_data(res, training=False).test[0]
    del raw["data"]["partners"]
    with pytest.raises(SpecError, match="add data.partners"):
        resolve(parse_spec(raw), source="pairs.yaml")


def test_skip_drops_pairs_without_feature_files(tmp_path):
    params = _synthetic(tmp_path)
    SyntheticPairsDataset(params, "test")
    victim = SyntheticPairsDataset(params, "test").pairs[0].better
    (tmp_path / "syn" / "features" / f"{victim}.npy").unlink()
    with pytest.raises(DataError, match=f"feature file not found: .*{victim}.npy"):
        SyntheticPairsDataset(params, "test")[
            next(i for i, p in enumerate(SyntheticPairsDataset(params, "test").pairs)
                 if victim in p.videos)
        ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = SyntheticPairsDataset(params.model_copy(update={"on_error": "skip"}), "test")
    assert any("feature file not found" in str(w.message) for w in caught)
    assert all(victim not in p.videos for p in data.pairs) and data.dropped_keys
