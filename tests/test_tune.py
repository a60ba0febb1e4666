"""aqa tune: Optuna trials over a tiny spec, pruning after epochs, a study shared by workers."""

from __future__ import annotations

import multiprocessing
import re

import pytest
import yaml

from aqa_framework import testing
from aqa_framework.errors import AQAError, SpecError
from aqa_framework.registry import reset_registry

optuna = pytest.importorskip("optuna", reason="aqa tune needs the 'tune' extra (optuna)")

from aqa_framework.experiments.tune import (  # noqa: E402
    SearchSpace,
    StudyOptions,
    _ReportCallback,
    load_space,
    run_tune,
)

SPEC = {
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
    "seed": 0,
}
SPACE = {
    "trials": 2,
    "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
    "params": {
        "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "model.aggregator.params.shared_fc": {"type": "categorical", "choices": [4, 8]},
    },
}


@pytest.fixture
def files(tmp_path):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    yield spec, space
    reset_registry()


def test_space_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  train.optimizer.lr: {type: float, low: 0, high: 1, log: true}\n"
                   "  data.batch_size: {type: categorical}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_space(bad)
    text = str(exc.value)
    assert "bad.yaml" in text and "log: true needs low > 0" in text
    assert "params.data.batch_size" in text and "non-empty 'choices'" in text


class _FakeTrial:
    number = 7

    def __init__(self, prune):
        self.reported, self.prune = [], prune

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune


def test_report_callback_reports_val_and_prunes():
    from aqa_framework.engine.events import EpochEnd, RunInfo
    from aqa_framework.experiments.tune import TrialPrunedStop

    info = RunInfo(folder=None, name="r", spec={}, source=None, epochs=2)
    event = EpochEnd(info, epoch=1, record={"val": {"score.spearman": 0.5}},
                     best={"split": "val", "metric": "score.spearman", "value": 0.5})
    keep = _ReportCallback(_FakeTrial(False), "score.spearman")
    keep.on_epoch_end(event)
    assert keep.trial.reported == [(1, 0.5)] and keep.best == 0.5
    with pytest.raises(TrialPrunedStop, match="trial 7 pruned after epoch 1"):
        _ReportCallback(_FakeTrial(True), "score.spearman").on_epoch_end(event)
    no_val = EpochEnd(info, epoch=1, record={"train": {}})
    with pytest.raises(AQAError, match="val_fraction"):
        keep.on_epoch_end(no_val)


def _worker(spec, space, out, storage, seed):
    import torch

    torch.set_num_threads(1)
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))  # a new process
    run_tune(spec, SearchSpace.model_validate(SPACE), out, trials=1,
             study=StudyOptions(storage=storage, name="shared", seed=seed))


def test_two_workers_share_one_sqlite_study_and_best_spec_loads(files, tmp_path,
                                                               one_intra_op_thread):
    spec, space = files
    out = tmp_path / "tune"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # spawn, not fork: forking a process whose torch thread pools already ran (earlier tests
    # in the same session) can deadlock the child
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(spec, space, out, storage, s)) for s in (1, 2)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(240)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 2
    states = {t.state.name for t in study.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    assert len({t.number for t in study.trials}) == 2
    for t in study.trials:
        assert (out / f"trial-{t.number}" / "metrics.jsonl").is_file()
    # one more trial in this process joins the same study and writes the best spec
    summary = run_tune(spec, load_space(space), out, trials=1,
                       study=StudyOptions(storage=storage, name="shared"))
    assert len(summary.trials) == 3 and summary.direction == "maximize"
    best = optuna.load_study(study_name="shared", storage=storage).best_trial
    assert summary.best_params == best.params and summary.best_value == best.value
    raw = yaml.safe_load(summary.best_spec.read_text())
    assert raw["train"]["optimizer"]["lr"] == best.params["train.optimizer.lr"]
    assert raw["model"]["aggregator"]["params"]["shared_fc"] == best.params[
        "model.aggregator.params.shared_fc"]
    from aqa_framework.resolve import load

    assert load(summary.best_spec).spec.train.optimizer.lr == best.params["train.optimizer.lr"]


def test_cli_tune_prunes_and_writes_best(files, tmp_path, capsys, one_intra_op_thread):
    from aqa_framework.cli.main import main

    spec, space = files
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exc:
        main(["tune", str(spec), "--space", str(space), "--out", str(out), "--trials", "2",
              "--seed", "0", "--set", "train.epochs=3"])
    assert exc.value.code in (0, None)
    captured = capsys.readouterr()
    assert "Best spec:" in captured.out and (out / "best.yaml").is_file()
    assert (out / "study.db").is_file()
    assert "trial 1:" in captured.err
    assert "train.epochs" not in captured.out
    assert yaml.safe_load((out / "best.yaml").read_text())["train"]["epochs"] == 3


def test_pruned_trial_closes_as_pruned_lists_as_pruned_and_resume_says_so(
    files, tmp_path, monkeypatch, capsys, one_intra_op_thread
):
    """A pruned trial's run folder says ``pruned`` (not failed) wherever its status is read."""
    import json

    from rich.console import Console

    from aqa_framework.cli.main import main
    from aqa_framework.engine.runner import run_training
    from aqa_framework.resolve import load
    from aqa_framework.tracking.compare import find_runs

    spec, space = files
    # trial 1 is pruned after its first epoch, whatever the pruner would have said
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
    out = tmp_path / "tune"
    summary = run_tune(spec, load_space(space), out, trials=2, study=StudyOptions(seed=0))
    assert [(n, state) for n, state, _v, _p in summary.trials] == [(0, "complete"),
                                                                   (1, "pruned")]
    ended = json.loads((out / "trial-1" / "status.json").read_text())
    assert ended["status"] == "pruned" and ended["epoch"] == 1
    assert "trial 1 pruned after epoch 1" in ended["reason"] and "error" not in ended
    assert json.loads((out / "trial-0" / "status.json").read_text())["status"] == "finished"

    runs = {r.name: r for r in find_runs(out)}
    assert runs["trial-1"].state == "pruned" and runs["trial-1"].status == "pruned after epoch 1"
    assert runs["trial-0"].state == "finished"
    with pytest.raises(SystemExit) as exc:
        main(["runs", "list", str(out)])
    assert exc.value.code in (0, None)
    listed = capsys.readouterr().out
    assert re.search(r"trial-1 +│ pruned +│ 1/2", listed) and "failed" not in listed, listed
    with pytest.raises(SystemExit) as exc:
        main(["runs", "compare", str(out / "trial-0"), str(out / "trial-1")])
    assert exc.value.code in (0, None)  # a pruned run is no error to compare
    assert "pruned after" in capsys.readouterr().out

    # resuming the pruned trial says so, then trains it to the end as an ordinary run
    from io import StringIO

    stream = StringIO()
    resolved = load(out / "trial-1" / "spec.yaml")
    run_training(resolved, resume=out / "trial-1", console=Console(file=stream, width=200))
    assert "was pruned after epoch 1 (trial 1 pruned after epoch 1)" in stream.getvalue()
    assert json.loads((out / "trial-1" / "status.json").read_text())["status"] == "finished"
    assert find_runs(out / "trial-1")[0].state == "finished"


def test_runs_list_shows_pruned_interrupted_and_failed_runs(tmp_path, capsys):
    """The tables read ``status.json``; a run without one (killed, older) reads as stopped."""
    import json

    from aqa_framework.cli.main import main
    from aqa_framework.tracking.compare import read_run

    def make(name: str, epochs: int, status: dict | None) -> None:
        run = tmp_path / name
        run.mkdir()
        (run / "spec.yaml").write_text("train: {epochs: 3}\n")
        (run / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": e, "val": {"score.spearman": 0.1 * e}}) + "\n"
                    for e in range(1, epochs + 1)))
        if status is not None:
            (run / "status.json").write_text(json.dumps(status))

    make("a-pruned", 1, {"status": "pruned", "epoch": 1, "reason": "trial 4 pruned"})
    make("b-failed", 2, {"status": "failed", "epoch": 2, "error": "boom"})
    make("c-killed", 2, None)
    make("d-damaged", 1, None)
    (tmp_path / "d-damaged" / "status.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["runs", "list", str(tmp_path)])
    assert exc.value.code in (0, None)
    shown = capsys.readouterr().out
    for name, state, epochs in (("a-pruned", "pruned", "1/3"), ("b-failed", "failed", "2/3"),
                                ("c-killed", "stopped", "2/3"), ("d-damaged", "stopped", "1/3")):
        assert re.search(rf"{name} +│ {state} +│ {epochs}", shown), shown
    compared = read_run(tmp_path / "a-pruned"), read_run(tmp_path / "b-failed")
    assert [r.status for r in compared] == ["pruned after epoch 1", "failed after epoch 2"]
