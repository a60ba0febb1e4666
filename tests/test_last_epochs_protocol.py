"""``train.select_on: last_mean``: the mean of the test metrics of the last epochs (MUSDL).

Tiny in-memory runs (testing.tiny, a narrow C3D, score head only): the reported metrics are
the means of the per-epoch test values the run recorded, NaN propagates, the protocol is
labelled in results.json, the report, sweep tables and ``aqa runs compare``, bad values are
refused, and a run killed with SIGKILL resumes to the same numbers.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from aqa_framework import testing
from aqa_framework.engine import runner
from aqa_framework.engine.epoch_policy import EpochPolicy
from aqa_framework.engine.last_epochs import mean_of_last_epochs, missing_epochs, window
from aqa_framework.engine.selection import resolve_selection
from aqa_framework.errors import SpecError
from aqa_framework.experiments.sweep import describe_source, source_of_results
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec
from aqa_framework.tracking.compare import read_run

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8, "dropout": 0.0}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 3,
    },
    "train": {
        "epochs": 4,
        "optimizer": {"lr": 0.003},
        "select_on": "last_mean",
        "last_epochs": 3,
        "device": "cpu",
    },
    "seed": 5,
}


def resolved(*overrides):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    raw = apply_overrides(copy.deepcopy(RAW), list(overrides))
    return resolve(parse_spec(raw), source="tiny.yaml")


def records(folder):
    out = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time_s"), rec.pop("samples_per_s")
        out.append(rec)
    return out


def as_float(v):
    return math.nan if v is None else v


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the killed subprocess: the same float sums."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("last") / "run"
    runner.run_training(resolved(), run_dir=folder)
    return folder


def test_metrics_are_the_mean_of_the_recorded_per_epoch_test_values(reference):
    recs = records(reference)
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
    assert "test" not in recs[0]  # epoch 1 is outside the last 3: not evaluated on test
    assert all("test" in r for r in recs[1:])
    results = json.loads((reference / "results.json").read_text())
    last = results["last_epochs"]
    assert last["epochs"] == [2, 3, 4] and last["split"] == "test"
    for metric, value in results["metrics"].items():
        per_epoch = [as_float(r["test"][metric]) for r in recs[1:]]
        assert last["per_epoch"][metric] == pytest.approx(per_epoch, nan_ok=True)
        assert as_float(value) == pytest.approx(sum(per_epoch) / 3, nan_ok=True)
    assert math.isfinite(results["metrics"]["score.spearman"])
    # the per-epoch values differ, so a single epoch's value would not pass for the mean
    assert len({r["test"]["score.mse"] for r in recs[1:]}) == 3
    # predictions.csv and last_epoch_metrics are the last epoch's evaluation
    assert last["last_epoch_metrics"] == pytest.approx(recs[-1]["test"], rel=1e-6)
    assert last["predictions"] == "predictions.csv: the last epoch (4)"
    assert results["epoch"] == 4


def test_results_report_and_tables_label_the_protocol(reference, capsys):
    results = json.loads((reference / "results.json").read_text())
    sel = results["selection"]
    assert sel["protocol"] == "last_mean" and sel["last_epochs"] == 3 and sel["split"] is None
    assert sel["label"] == "mean of the test metrics of the last 3 epochs (paper protocol)"
    assert "paper protocol" in sel["description"] and "optimistic" in sel["description"]
    assert "epochs 2-4 of 4" in sel["description"]
    assert "arithmetic mean" in results["last_epochs"]["convention"]
    report = (reference / "report.md").read_text()
    assert "paper protocol" in report and "Per-epoch values on the test split" in report
    assert "| mean |" in report
    html = (reference / "report.html").read_text()
    assert "Per-epoch values on the test split" in html
    source = source_of_results(results)
    assert describe_source(source) == "test, mean of last 3 epochs (paper protocol)"
    assert read_run(reference).evaluated_on == "test, mean of last 3 epochs (paper protocol)"
    from aqa_framework.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["runs", "compare", str(reference), str(reference)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "evaluated on" in out and "paper protocol" in out


def test_other_protocols_keep_their_labels():
    base = {"split": "test", "selection": {"split": "val", "protocol": "val"}}
    assert describe_source(source_of_results(base)) == "test, epoch chosen on val"
    old = {"split": "test", "selection": {"split": "test"}}  # results.json before protocol
    assert describe_source(source_of_results(old)) == "test, epoch chosen on test (optimistic)"


def test_nan_in_one_epoch_makes_the_mean_nan(tmp_path, monkeypatch):
    real = runner.evaluate
    calls = {"test": 0}

    def nan_in_second_test_evaluation(**kw):
        result = real(**kw)
        if kw["description"] == "eval test":
            calls["test"] += 1
            if calls["test"] == 2:  # epoch 3
                result.metrics["score.spearman"] = math.nan
        return result

    monkeypatch.setattr(runner, "evaluate", nan_in_second_test_evaluation)
    folder = tmp_path / "run"
    runner.run_training(resolved(), run_dir=folder)
    results = json.loads((folder / "results.json").read_text())
    assert results["metrics"]["score.spearman"] is None  # NaN, written as null
    assert "metrics.score.spearman" in results["nonfinite"]
    per_epoch = results["last_epochs"]["per_epoch"]["score.spearman"]
    assert per_epoch[1] is None and per_epoch[0] is not None and per_epoch[2] is not None
    assert math.isfinite(results["metrics"]["score.mse"])  # the other metrics are unaffected


def test_mean_of_last_epochs_unit():
    history = [
        {"epoch": 1, "train": {}},
        {"epoch": 2, "test": {"a": 1.0, "b": 2.0}},
        {"epoch": 3, "test": {"a": 2.0, "b": None}},  # a checkpoint stores NaN as null
        {"epoch": 4, "test": {"a": 4.5, "b": 4.0}},
    ]
    got = mean_of_last_epochs(history, "test", epochs=4, last_epochs=3)
    assert got.epochs == [2, 3, 4]
    assert got.mean["a"] == pytest.approx(2.5)
    assert math.isnan(got.mean["b"]) and math.isnan(got.values["b"][1])
    assert mean_of_last_epochs(history, "test", 4, 1).mean == {"a": 4.5, "b": 4.0}
    assert window(80, 10) == list(range(71, 81))
    assert missing_epochs(history, "test", 4, 4, done=4) == [1]
    assert missing_epochs(history, "test", 6, 4, done=4) == []  # 3, 4 recorded; 5, 6 to come
    with pytest.raises(ValueError, match=r"epochs \[1\] have no test metrics"):
        mean_of_last_epochs(history, "test", 4, 4)


def test_policy_evaluates_the_test_split_in_the_averaged_epochs_only():
    spec = resolved("eval.every=3", "train.epochs=6").spec
    policy = EpochPolicy.from_spec(spec, resolve_selection(spec, has_val=False), has_val=False)
    assert [policy.splits_to_evaluate(e) for e in range(1, 7)] == [
        [], [], [], ["test"], ["test"], ["test"],
    ]
    assert policy.select(5, {}, None)[0]["epoch"] == 5  # no epoch is chosen: the last one


def test_spec_validation():
    with pytest.raises(SpecError, match=r"train.last_epochs.*greater than or equal to 1"):
        resolved("train.last_epochs=0")
    with pytest.raises(SpecError) as err:
        resolved("train.last_epochs=5")
    assert err.value.problems[0][0] == "train.last_epochs"
    assert "only train.epochs = 4" in err.value.problems[0][1] and "at most 4" in str(err.value)
    with pytest.raises(SpecError, match="select_on"):
        resolved("train.select_on=mean")
    # last_epochs beyond train.epochs only matters with last_mean
    assert resolved("train.last_epochs=10", "train.select_on=last").spec.train.last_epochs == 10


KILLED = textwrap.dedent(
    """
    import copy, os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_last_epochs_protocol import resolved
    from aqa_framework.engine import runner
    from aqa_framework.engine.events import Callback

    class KillInEpoch4(Callback):
        name = "kill"
        def on_epoch_start(self, event):
            if event.epoch == 4:  # epochs 2 and 3 were evaluated and checkpointed
                os.kill(os.getpid(), signal.SIGKILL)

    runner.run_training(resolved(), run_dir={folder!r}, callbacks=[KillInEpoch4()])
    """
)


def test_killed_run_resumes_with_the_per_epoch_values_it_had(reference, tmp_path):
    folder = tmp_path / "killed"
    script = KILLED.format(tests=os.path.dirname(__file__), folder=str(folder))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not (folder / "results.json").exists()
    assert [r["epoch"] for r in records(folder)] == [1, 2, 3]

    # 3 epochs would average epoch 1, which was never evaluated on the test split
    with pytest.raises(SpecError, match=r"epochs \[1\].*give at least 6"):
        runner.run_training(resolved("train.epochs=3"), resume=folder)
    runner.run_training(resolved(), resume=folder)
    assert records(folder) == records(reference)
    got = json.loads((folder / "results.json").read_text())
    ref = json.loads((reference / "results.json").read_text())
    assert got["metrics"] == ref["metrics"]
    assert got["last_epochs"]["per_epoch"] == ref["last_epochs"]["per_epoch"]


def test_aqa_evaluate_says_its_figures_are_one_epochs_not_the_reported_mean(reference, capsys):
    from aqa_framework.cli.eval_cmd import evaluate

    resolved()  # the registry with the test dataset
    evaluate(reference, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert "last 3 epochs" in doc["note"] and "not the run's reported mean" in doc["note"]
    results = json.loads((reference / "results.json").read_text())
    # the re-evaluation gives the last epoch's figures, which results.json also keeps
    last = results["last_epochs"]["last_epoch_metrics"]
    assert doc["metrics"]["score.mse"] == pytest.approx(last["score.mse"], rel=1e-5)
