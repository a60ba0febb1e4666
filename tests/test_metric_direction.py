"""Heads declare whether each metric is higher- or lower-is-better; selection follows them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aqa_builtin.heads.caption import CaptionHead
from aqa_builtin.heads.classification import ClassificationHead
from aqa_builtin.heads.score import ScoreHead

from aqa_framework import testing
from aqa_framework.engine import runner
from aqa_framework.engine.selection import resolve_selection
from aqa_framework.metrics import direction_from_name
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec


class SpreadScoreHead(ScoreHead):
    """A third-party head with a lower-is-better metric whose name says nothing about it."""

    name = "testing.spread_score"
    metric_directions = {**ScoreHead.metric_directions, "spread": "min"}

    def metrics(self, predictions, references):
        out = super().metrics(predictions, references)
        col = self.names[0]
        out["spread"] = float(np.std(np.subtract(predictions[col], references[col])))
        return out


class OldHead(ScoreHead):
    """A head written for 0.1: it declares nothing."""

    name = "testing.old_score"
    metric_directions = {}


def spec_with(head: str, metric: str):
    return parse_spec(
        {
            "model": {"backbone": {"name": "c3d"}, "heads": {"score": {"name": head}}},
            "data": {"name": "synthetic-diving"},
            "train": {"select_metric": metric},
        }
    )


def test_declared_directions_and_the_fallback_rule():
    assert ScoreHead.metric_direction("rel_l2") == "min"
    assert ScoreHead.metric_direction("final_score_rel_l2") == "min"
    assert ScoreHead.metric_direction("difficulty_spearman") == "max"
    assert ClassificationHead.metric_direction("position_acc") == "max"
    assert CaptionHead.metric_direction("cider_raw") == "max"
    assert SpreadScoreHead.metric_direction("spread") == "min"
    # nothing declared: the name rule of 0.1
    assert OldHead.metric_direction("spread") == "max"
    assert OldHead.metric_direction("final_mse") == "min"
    assert direction_from_name("val_loss") == "min"
    assert direction_from_name("bleu_4") == "max"


@pytest.mark.parametrize(
    ("head", "metric", "mode"),
    [
        (SpreadScoreHead, "score.spread", "min"),
        (SpreadScoreHead, "score.spearman", "max"),
        (OldHead, "score.spread", "max"),
        (OldHead, "score.rel_l2", "min"),
        (None, "score.rel_l2", "min"),
    ],
)
def test_selection_follows_the_head(head, metric, mode):
    spec = spec_with("score", metric)
    heads = None if head is None else {"score": head}
    assert resolve_selection(spec, has_val=True, heads=heads).mode == mode


def test_a_run_selects_an_unusually_named_lower_is_better_metric_by_its_minimum(tmp_path):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset, SpreadScoreHead]))
    raw = {
        "model": {
            "backbone": {"name": "c3d", "params": {"width": 0.0625}},
            "aggregator": {"name": "average", "params": {"shared_fc": 16}},
            "heads": {"score": {"name": "testing.spread_score"}},
        },
        "data": {
            "name": "testing.tiny",
            "params": {"num_samples": 12, "num_clips": 2, "frames": 16, "size": 32},
            "batch_size": 3,
            "val_fraction": 0.25,
        },
        "train": {"epochs": 4, "optimizer": {"lr": 0.01}, "select_metric": "score.spread"},
        "seed": 1,
    }
    try:
        folder = runner.run_training(resolve(parse_spec(raw), source="t.yaml"), tmp_path / "r")
    finally:
        reset_registry()
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    spread = {r["epoch"]: r["val"]["score.spread"] for r in map(json.loads, lines)}
    assert len(set(spread.values())) > 1
    results = json.loads((folder / "results.json").read_text())
    assert results["epoch"] == min(spread, key=spread.get)
    assert "(lower is better)" in (folder / "report.md").read_text()
