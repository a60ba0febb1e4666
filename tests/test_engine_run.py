"""The training engine end to end on a tiny in-memory dataset (no files, no video decoding)."""

from __future__ import annotations

import copy
import csv
import json
import signal

import pytest

from aqa_framework import testing
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import load_checkpoint
from aqa_framework.engine.inference import evaluate_split, load_trained_model
from aqa_framework.engine.signals import TrainingInterrupted
from aqa_framework.errors import CheckpointError, SpecError
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 16, "dropout": 0.3}},
        "heads": {
            "score": {"name": "score"},
            "cls": {"name": "classification"},
            "caption": {
                "name": "caption",
                "params": {"hidden": 16, "word_dim": 8, "metrics": ["bleu"]},
                "loss_weight": 0.01,
            },
        },
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 12, "num_clips": 2, "frames": 16, "size": 32},
        "batch_size": 3,
        "val_fraction": 0.25,
    },
    "train": {"epochs": 3, "optimizer": {"lr": 0.003}, "scheduler": {"name": "cosine"}},
    "seed": 3,
}


def use_tiny_registry():
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))


def resolved(*overrides):
    use_tiny_registry()
    raw = apply_overrides(copy.deepcopy(RAW), overrides)
    return resolve(parse_spec(raw), source="tiny.yaml")


def epochs_of(folder):
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time_s"), r.pop("samples_per_s")
    return records


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref") / "run"
    assert runner.run_training(resolved(), run_dir=folder) == folder
    return folder


def test_run_folder_holds_spec_metrics_predictions_report_and_checkpoints(reference_run):
    f = reference_run
    for name in (
        "spec.yaml",
        "environment.json",
        "metrics.jsonl",
        "predictions.csv",
        "results.json",
        "report.md",
        "report/scatter.png",
        "checkpoints/last/model.safetensors",
        "checkpoints/best/checkpoint.json",
    ):
        assert (f / name).is_file(), name
    assert "select_on: auto" in (f / "spec.yaml").read_text()  # defaults filled in
    env = json.loads((f / "environment.json").read_text())
    assert env["device"] == "cpu" and env["versions"]["torch"]
    records = epochs_of(f)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]["train"]) == {"loss", "score", "cls", "caption"}
    assert "score.spearman" in records[0]["val"] and "test" not in records[0]
    results = json.loads((f / "results.json").read_text())
    assert results["selection"]["split"] == "val" and results["samples"] == 12
    best = max(records, key=lambda r: r["val"]["score.spearman"])
    assert results["epoch"] == best["epoch"]
    assert load_checkpoint(f / "checkpoints" / "best").epoch == best["epoch"]
    assert (
        f"Epoch {best['epoch']} of 3 was selected on the validation split"
        in (f / "report.md").read_text()
    )
    rows = list(csv.DictReader((f / "predictions.csv").open()))
    assert len(rows) == 12 and rows[0]["key"] == "test-0000"
    assert rows[0]["cls.position"] in {"free", "pike", "tuck"}
    assert {"score.final_score", "score.final_score.ref", "caption.caption.ref"} <= set(rows[0])


def test_evaluate_reproduces_the_final_metrics(reference_run):
    use_tiny_registry()
    trained = load_trained_model(reference_run)
    assert trained.checkpoint.path.name == "best"
    result = evaluate_split(trained, "test")
    final = json.loads((reference_run / "results.json").read_text())["metrics"]
    assert result.metrics == pytest.approx(final, rel=1e-6, abs=1e-9)


def test_stop_signal_then_resume_ends_like_an_uninterrupted_run(
    reference_run, tmp_path, monkeypatch
):
    real = runner.train_one_epoch
    calls = {"epochs": 0}

    def interrupt_second_epoch(**kw):
        calls["epochs"] += 1
        if calls["epochs"] == 2:
            polled = kw["should_stop"]
            steps = {"n": 0}

            def should_stop():
                steps["n"] += 1
                if steps["n"] == 2:  # SIGTERM in the middle of the epoch
                    signal.raise_signal(signal.SIGTERM)
                return polled()

            kw["should_stop"] = should_stop
        return real(**kw)

    monkeypatch.setattr(runner, "train_one_epoch", interrupt_second_epoch)
    folder = tmp_path / "run"
    with pytest.raises(
        TrainingInterrupted,
        match=r"in epoch 2: the checkpoint of epoch 1 is "
        r"kept\. Resume with: aqa run tiny.yaml --resume .*run",
    ):
        runner.run_training(resolved(), run_dir=folder)
    assert load_checkpoint(folder / "checkpoints" / "last").epoch == 1
    assert not list((folder / "checkpoints").glob(".*"))  # nothing partial on disk
    assert [r["epoch"] for r in epochs_of(folder)] == [1]
    monkeypatch.setattr(runner, "train_one_epoch", real)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    runner.run_training(resolved(), resume=folder)
    assert epochs_of(folder) == epochs_of(reference_run)
    ref = json.loads((reference_run / "results.json").read_text())
    got = json.loads((folder / "results.json").read_text())
    assert got["metrics"] == ref["metrics"] and got["epoch"] == ref["epoch"]


def test_resume_refuses_a_different_spec(reference_run):
    with pytest.raises(
        SpecError,
        match=r"cannot resume .* with a different spec(.|\n)*"
        r"train.optimizer.lr: the run was started with 0.003",
    ):
        runner.run_training(resolved("train.optimizer.lr=0.1"), resume=reference_run)


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="cannot resume: .*nope does not exist"):
        runner.run_training(resolved(), resume=tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is not a run folder"):
        runner.run_training(resolved(), resume=tmp_path)


def test_a_finished_run_folder_is_not_overwritten(reference_run):
    with pytest.raises(CheckpointError, match="already holds a run"):
        runner.run_training(resolved(), run_dir=reference_run)
