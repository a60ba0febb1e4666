"""Samples that cannot be loaded (on_error: skip) are left out of their split, never replaced."""

from __future__ import annotations

import copy
import csv
import json
from typing import ClassVar

import torch

from aqa_framework import testing
from aqa_framework.data.skipping import skipped_sample
from aqa_framework.engine import runner
from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.loaders import eval_loader
from aqa_framework.engine.loop import compute_metrics, evaluate
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec

BAD = {"train": {1, 4}, "test": {2, 3}}


class FlakyDataset(testing.TinyVideoDataset):
    """The tiny dataset, with a few samples per split that cannot be loaded."""

    name: ClassVar[str] = "testing.flaky"

    def __getitem__(self, index):
        if index in BAD.get(self.split, ()):
            return skipped_sample(self.keys[index], "cannot open video")
        return super().__getitem__(index)


RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average"},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.flaky",
        "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 3,
        "eval_batch_size": 2,
    },
    "train": {"epochs": 1},
    "eval": {"split": "test"},
}


def resolved(*overrides):
    reset_registry(testing.registry_with("testing", [FlakyDataset]))
    raw = apply_overrides(copy.deepcopy(RAW), overrides)
    return resolve(parse_spec(raw), source="flaky.yaml")


def test_run_leaves_out_unloadable_samples_and_counts_them(tmp_path, one_intra_op_thread):
    folder = runner.run_training(resolved(), run_dir=tmp_path / "run")
    with open(folder / "predictions.csv", newline="") as f:
        keys = [row["key"] for row in csv.DictReader(f)]
    assert keys == ["test-0000", "test-0001", "test-0004", "test-0005"]  # each once
    results = json.loads((folder / "results.json").read_text())
    assert results["samples"] == 4
    assert results["skipped"] == {"count": 2, "keys": ["test-0002", "test-0003"]}
    record = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    assert record["skipped_samples"] == 2
    report = (folder / "report.md").read_text()
    assert "2 sample(s) of the split could not be loaded and were left out" in report


def test_metrics_cover_only_the_evaluated_samples(one_intra_op_thread):
    from aqa_framework.builder import build_model, open_dataset

    r = resolved()
    test = open_dataset(r, "test", train=False)
    torch.manual_seed(0)
    model = build_model(r, test.targets, device=torch.device("cpu"), input_shape=(1, 3, 16, 32, 32))
    result = evaluate(
        model=model,
        loader=eval_loader(test, 4, 0, DistContext()),
        device=torch.device("cpu"),
        precision="fp32",
        ctx=DistContext(),
    )
    assert result.skipped == ["test-0002", "test-0003"]
    assert len(result.predictions["score"]["final_score"]) == 4
    refs = result.references["score"]["final_score"]
    expected = [test[i]["scores"]["final_score"] for i in (0, 1, 4, 5)]
    assert refs == expected
    assert result.metrics == compute_metrics(model, result.predictions, result.references)
