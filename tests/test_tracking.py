"""Trackers selected with ``track:``: what TensorBoard, MLflow and the csv tracker write, read
back with their own readers; unknown trackers and missing extras."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest

from aqa_framework import testing
from aqa_framework.engine import runner
from aqa_framework.errors import SpecError
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec
from aqa_framework.tracking import Tracker, resolve_trackers
from aqa_framework.tracking.compare import read_run

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 4,
        "val_fraction": 0.25,
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}},
    "seed": 2,
}


def resolved(track):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    raw = copy.deepcopy(RAW)
    raw["track"] = track
    return resolve(parse_spec(raw), source="tiny.yaml")


def available(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def tracks():
    out = ["csv"]
    out += ["tensorboard"] if available("tensorboard") else []
    out += ["mlflow"] if available("mlflow") else []
    return out


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracked") / "run"
    runner.run_training(resolved(tracks()), run_dir=folder)
    yield folder
    reset_registry(None)


def history(folder):
    return read_run(folder).history


def test_csv_tracker_writes_one_row_per_epoch(tracked_run):
    rows = list(csv.DictReader((tracked_run / "metrics.csv").open()))
    records = history(tracked_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, rec in zip(rows, records, strict=True):
        assert float(row["train/loss"]) == pytest.approx(rec["train"]["loss"], rel=1e-5)
        assert float(row["val/score.spearman"]) == pytest.approx(
            rec["val"]["score.spearman"], rel=1e-5, abs=1e-6
        )


@pytest.mark.skipif(not available("tensorboard"), reason="tensorboard is not installed")
def test_tensorboard_event_files_hold_the_epoch_metrics(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/score", "lr", "val/score.spearman"} <= tags
    for rec in history(tracked_run):
        by_step = {e.step: e.value for e in acc.Scalars("train/loss")}
        assert by_step[rec["epoch"]] == pytest.approx(rec["train"]["loss"], rel=1e-5)
        val = {e.step: e.value for e in acc.Scalars("val/score.pearson")}
        assert val[rec["epoch"]] == pytest.approx(rec["val"]["score.pearson"], rel=1e-5, abs=1e-6)
    final = json.loads((tracked_run / "results.json").read_text())
    got = acc.Scalars("final/score.spearman")[-1]
    assert got.value == pytest.approx(final["metrics"]["score.spearman"], rel=1e-5, abs=1e-6)


@pytest.mark.skipif(not available("mlflow"), reason="mlflow is not installed")
def test_mlflow_file_store_holds_params_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    stored = json.loads((tracked_run / "mlflow.json").read_text())
    assert stored["tracking_uri"].startswith("file://")
    client = MlflowClient(tracking_uri=stored["tracking_uri"])
    run = client.get_run(stored["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["train.optimizer.lr"] == "0.003"
    assert run.data.params["model.backbone.name"] == "c3d"
    records = history(tracked_run)
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in losses] == pytest.approx(
        [(r["epoch"], r["train"]["loss"]) for r in records], rel=1e-6
    )
    spearman = client.get_metric_history(run.info.run_id, "val/score.spearman")
    assert [m.step for m in spearman] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "report.html", "results.json", "report"} <= artifacts
    assert "report/scatter.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "report")
    }


def test_unknown_tracker_is_a_spec_error_naming_it_and_the_installed_ones(tmp_path):
    with pytest.raises(
        SpecError,
        match=r"track\[1\]: unknown tracker 'wandb'; installed "
        r"trackers: csv, mlflow, tensorboard",
    ):
        runner.run_training(resolved(["csv", "wandb"]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    reset_registry(None)


def test_tracker_params_are_checked(tmp_path):
    with pytest.raises(SpecError, match=r"track\[0\]\.params\.nope"):
        runner.run_training(
            resolved([{"name": "csv", "params": {"nope": 1}}]), run_dir=tmp_path / "run"
        )
    reset_registry(None)


def test_a_missing_extra_names_the_pip_install(monkeypatch):
    from aqa_framework.tracking.tensorboard import TensorBoardTracker

    monkeypatch.setattr(TensorBoardTracker, "requires", ("surely_not_installed_tb",))
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    from aqa_framework.registry import get_registry
    from aqa_framework.spec import ComponentSpec

    with pytest.raises(SpecError, match=r"pip install aqa-framework\[tensorboard\]"):
        resolve_trackers(["tensorboard"], get_registry())
    assert resolve_trackers([ComponentSpec(name="csv")], get_registry())[0].callback.name == "csv"
    reset_registry(None)


def test_scalars_of_a_record_keep_nan():
    from aqa_framework.tracking import epoch_scalars

    got = epoch_scalars({"epoch": 3, "lr": 0.1, "train": {"loss": None}, "val": {"a.b": 0.5}})
    assert got["lr"] == 0.1 and math.isnan(got["train/loss"]) and got["val/a.b"] == 0.5
    assert issubclass(Tracker, object)
