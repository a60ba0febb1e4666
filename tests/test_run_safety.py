"""Run folders: locking, unique names, refusing foreign folders, resume edge cases, stored paths.

Tiny in-memory data (``testing.tiny``), a narrow C3D and one or two epochs: each run takes a
few seconds on a CPU.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from pydantic import Field

from aqa_framework import testing
from aqa_framework.component import PATH_PARAM, path_params
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import _temporary, load_checkpoint
from aqa_framework.engine.inference import evaluate_split, load_trained_model
from aqa_framework.engine.optim import build_scheduler
from aqa_framework.engine.run_folder import create_run_folder, default_run_name
from aqa_framework.engine.run_lock import LOCK_FILE, RunLock
from aqa_framework.engine.signals import TrainingInterrupted
from aqa_framework.errors import CheckpointError, DataError, SpecError
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}, "cls": {"name": "classification"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 4,
        "val_fraction": 0.25,
        "num_workers": 0,
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}, "scheduler": {"name": "cosine"}},
    "seed": 1,
}


class RootedTiny(testing.TinyVideoDataset):
    """``testing.tiny`` that reads its number of samples from a file under a ``root`` folder."""

    name = "testing.rooted"

    class Params(testing.TinyVideoDatasetParams):
        root: str = Field(description="Folder holding n.txt.", json_schema_extra=PATH_PARAM)

    def __init__(self, params, split="train", train=False):
        from pathlib import Path

        f = Path(params.root) / "n.txt"
        if not f.is_file():
            raise DataError(f"no {f}")
        params = params.model_copy(update={"num_samples": int(f.read_text())})
        super().__init__(params, split, train)


def resolved(*overrides, raw=None):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset, RootedTiny]))
    spec = apply_overrides(copy.deepcopy(raw or RAW), overrides)
    return resolve(parse_spec(spec), source="tiny.yaml")


def interrupt_in_epoch(monkeypatch, which):
    """SIGTERM in the middle of epoch ``which`` (1-based) of the next run."""
    real = runner.train_one_epoch
    calls = {"epochs": 0}

    def train(**kw):
        calls["epochs"] += 1
        if calls["epochs"] == which:
            polled = kw["should_stop"]

            def should_stop():
                signal.raise_signal(signal.SIGTERM)
                return polled()

            kw["should_stop"] = should_stop
        return real(**kw)

    monkeypatch.setattr(runner, "train_one_epoch", train)
    return real


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref") / "run"
    runner.run_training(resolved(), run_dir=folder)
    return folder


# ---------------------------------------------------------------------------- 1: locking
def test_a_locked_run_folder_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    code = (
        "import sys, time; from aqa_framework.engine.run_lock import RunLock; "
        f"RunLock({str(folder)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=rf"in use by pid {holder.pid} on .*-c"):
            runner.run_training(resolved(), run_dir=folder)
        (folder / "spec.yaml").write_text("x")  # even a run folder to resume is refused
        with pytest.raises(CheckpointError, match=rf"in use by pid {holder.pid}"):
            runner.run_training(resolved(), resume=folder)
    finally:
        holder.kill()
        holder.wait()
    with RunLock(folder):  # the lock died with its holder
        pass


def test_the_lock_is_held_during_the_run_and_released_after(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    real = runner.train_one_epoch
    seen = []

    def train(**kw):
        with pytest.raises(CheckpointError, match=f"in use by pid {os.getpid()}"):
            RunLock(folder).acquire()
        seen.append(json.loads((folder / LOCK_FILE).read_text())["pid"])
        return real(**kw)

    monkeypatch.setattr(runner, "train_one_epoch", train)
    runner.run_training(resolved("train.epochs=1"), run_dir=folder)
    assert seen == [os.getpid()]
    with RunLock(folder):  # released at the end
        pass
    with pytest.raises(CheckpointError, match="already holds a run"):
        runner.run_training(resolved("train.epochs=1"), run_dir=folder)


def test_default_names_given_in_the_same_second_are_different_folders(tmp_path):
    name = default_run_name("specs/tiny.yaml", now=1_700_000_000)
    a = create_run_folder(tmp_path, name)
    b = create_run_folder(tmp_path, name)
    c = create_run_folder(tmp_path, name)
    assert a.path.name == name and b.path.name == f"{name}-2" and c.path.name == f"{name}-3"
    assert all(f.path.is_dir() and not any(f.path.iterdir()) for f in (a, b, c))


def test_temporary_checkpoint_names_are_unique_and_stale_ones_are_removed(tmp_path):
    first, second = _temporary(tmp_path, "last"), _temporary(tmp_path, "last")
    assert first != second and f"-{os.getpid()}-" in first.name
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / f".last.tmp-{dead}-abcd").mkdir()  # left by a process that died
    (tmp_path / ".last.tmp").mkdir()  # an older version's name
    mine = tmp_path / f".last.tmp-{os.getpid()}-beef"
    mine.mkdir()
    _temporary(tmp_path, "last")
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]


# ---------------------------------------------------------------------------- 2: foreign folders
def test_a_run_dir_that_holds_other_files_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "results.json").write_text('{"mine": 1}')
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(CheckpointError, match=r"is not empty and holds no run \(notes.txt, resu"):
        runner.run_training(resolved(), run_dir=folder)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE, "notes.txt", "results.json"]
    assert (folder / "results.json").read_text() == '{"mine": 1}'
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        runner.run_training(resolved(), run_dir=tmp_path / "file")


# ---------------------------------------------------------------------------- 3: more epochs
def test_resume_with_more_epochs_follows_the_schedule_for_the_new_length(two_epochs, tmp_path):
    folder = tmp_path / "longer"
    shutil.copytree(two_epochs, folder)
    runner.run_training(resolved("train.epochs=4"), resume=folder)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    ref = [json.loads(line) for line in (two_epochs / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records[:2]] == [r["lr"] for r in ref]  # the epochs done stay
    import torch

    spec = resolved("train.epochs=4").spec
    param = torch.nn.Parameter(torch.zeros(1))
    schedule = build_scheduler(torch.optim.SGD([param], lr=0.003), spec.train)
    for epoch in (2, 3):  # the 4-epoch cosine, not the 2-epoch one that ended at its minimum
        schedule.step(epoch)
        assert records[epoch]["lr"] == pytest.approx(schedule.optimizer.param_groups[0]["lr"])
    assert records[2]["lr"] > 1e-3
    assert json.loads((folder / "results.json").read_text())["selection"]
    assert load_checkpoint(folder / "checkpoints" / "last").epoch == 4


def test_resume_with_fewer_epochs_than_done_is_refused(two_epochs):
    with pytest.raises(SpecError, match=r"train.epochs: is 1, but .* already completed 2 epochs"):
        runner.run_training(resolved("train.epochs=1"), resume=two_epochs)


# ---------------------------------------------------------------------------- 4: before epoch 1
def test_a_run_stopped_before_its_first_checkpoint_resumes_or_restarts(tmp_path, monkeypatch):
    folder = tmp_path / "early"
    real = interrupt_in_epoch(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted, match=r"no checkpoint was written yet(.|\n)*--resume"):
        runner.run_training(resolved("train.epochs=1"), run_dir=folder)
    monkeypatch.setattr(runner, "train_one_epoch", real)
    assert (folder / "spec.yaml").is_file() and not (folder / "checkpoints" / "last").exists()
    again = tmp_path / "again"
    shutil.copytree(folder, again)
    (again / "notes.txt").write_text("kept")

    runner.run_training(resolved("train.epochs=1"), resume=folder)  # the printed command
    assert load_checkpoint(folder / "checkpoints" / "last").epoch == 1
    assert (folder / "results.json").is_file()

    runner.run_training(resolved("train.epochs=1"), run_dir=again)  # or a fresh run there
    assert (again / "results.json").is_file() and (again / "notes.txt").read_text() == "kept"
    env = json.loads((again / "environment.json").read_text())
    assert "resumes" not in env


# ---------------------------------------------------------------------------- 20: stored paths
def test_relative_paths_are_stored_absolute_and_evaluate_works_elsewhere(tmp_path, monkeypatch):
    assert path_params(RootedTiny.Params) == ["root"]
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    (work / "data" / "n.txt").write_text("8")
    elsewhere.mkdir()
    raw = copy.deepcopy(RAW)
    raw["data"]["name"] = "testing.rooted"
    raw["data"]["params"]["root"] = "data"
    monkeypatch.chdir(work)
    runner.run_training(resolved("train.epochs=1", raw=raw), run_dir="run")
    stored = (work / "run" / "spec.yaml").read_text()
    assert f"root: {work / 'data'}" in stored
    ckpt = load_checkpoint(work / "run" / "checkpoints" / "last")
    assert ckpt.spec["data"]["params"]["root"] == str(work / "data")

    monkeypatch.chdir(elsewhere)
    trained = load_trained_model(work / "run")
    result = evaluate_split(trained, "test")
    final = json.loads((work / "run" / "results.json").read_text())["metrics"]
    assert result.metrics == pytest.approx(final, rel=1e-6, abs=1e-9)

    # resuming from the directory the run was started in, with the same relative spec, fits
    monkeypatch.chdir(work)
    runner.run_training(resolved("train.epochs=1", raw=raw), resume="run")


def test_runs_of_older_versions_resolve_relative_paths_against_their_directory(
    tmp_path, monkeypatch
):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "n.txt").write_text("8")
    raw = copy.deepcopy(RAW)
    raw["data"]["name"] = "testing.rooted"
    raw["data"]["params"]["root"] = str(work / "data")
    monkeypatch.chdir(work)
    runner.run_training(resolved("train.epochs=1", raw=raw), run_dir=work / "run")
    meta_file = work / "run" / "checkpoints" / "best" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["spec"]["data"]["params"]["root"] = "data"  # as an older version stored it
    meta_file.write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    trained = load_trained_model(work / "run")  # environment.json says where it ran
    assert trained.resolved.dataset.params.root == str(work / "data")
    assert len(evaluate_split(trained, "test").keys) == 8
