"""aqa sweep --launcher ray|slurm: points handed to submitit or Ray, recorded in the sweep."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from aqa_framework import testing
from aqa_framework.errors import AQAError
from aqa_framework.experiments.launchers import LauncherSpec, launch_points
from aqa_framework.experiments.sweep import load_sweep, run_sweep, sweep_status, tabulate
from aqa_framework.registry import reset_registry

BASE = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {"name": "testing.tiny",
             "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32},
             "batch_size": 3},
    "train": {"epochs": 1},
}


@pytest.fixture
def sweep_file(tmp_path):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text("base: base.yaml\naxes:\n  seed: [0, 1]\n"
                    "launcher: {name: slurm, cluster: debug, time_min: 5}\n", encoding="utf-8")
    yield path
    reset_registry()


def test_slurm_launcher_records_points_and_resume_skips_them(sweep_file, tmp_path,
                                                             one_intra_op_thread):
    pytest.importorskip("submitit", reason="the 'slurm' extra (submitit) is not installed")
    sw = load_sweep(sweep_file)
    assert sw.file.launcher.name == "slurm" and sw.file.launcher.time_min == 5
    events = []
    statuses = run_sweep(sw, tmp_path / "out", on_event=lambda k, s: events.append(k))
    assert sorted(events) == ["done", "done", "start", "start"]
    assert all(s.state == "done" and "score.spearman" in s.metrics for s in statuses)
    assert [s.state for s in sweep_status(sw, tmp_path / "out")] == ["done", "done"]
    again = []
    run_sweep(sw, tmp_path / "out", on_event=lambda k, s: again.append(k))
    assert again == ["skip", "skip"]  # nothing redone


def test_missing_extra_is_named(tmp_path):
    for name, module in (("ray", "ray"), ("slurm", "submitit")):
        if importlib.util.find_spec(module) is not None:
            continue
        from aqa_framework.experiments.launchers import PointJob

        job = PointJob("a", {}, "a", str(tmp_path / "a"), False)
        with pytest.raises(AQAError, match=rf"pip install 'aqa-framework\[{name}\]'"):
            launch_points(LauncherSpec(name=name), [job], tmp_path, lambda j, p: None)



# Fresh worker processes (Ray tasks, submitit's local jobs) see only the registered built-ins,
# so these sweeps train a built-in dataset by name, generated once per module.
SYNTH = {"dives": 8, "dives_per_event": 4, "size": [64, 48], "crop": 48, "sampling": "spread",
         "num_clips": 1, "clip_length": 16}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from aqa_framework.synth.diving import generate_diving

    root = tmp_path_factory.mktemp("synth") / "diving"
    generate_diving(root, SYNTH["dives"], 0, tuple(SYNTH["size"]),
                    dives_per_event=SYNTH["dives_per_event"])
    return root


def process_sweep(tmp_path, synth_root, launcher: str) -> Path:
    """A two-point sweep of a built-in dataset, for launchers that train in other processes."""
    base = {
        "model": {
            "backbone": {"name": "c3d", "params": {"width": 0.0625}},
            "aggregator": {"name": "average", "params": {"shared_fc": 8}},
            "heads": {"score": {"name": "score"}},
        },
        "data": {"name": "synthetic-diving", "params": {**SYNTH, "root": str(synth_root)},
                 "batch_size": 4},
        "train": {"epochs": 1},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: base.yaml\naxes:\n  seed: [0, 1]\nlauncher: {launcher}\n",
                    encoding="utf-8")
    return path


def check_recorded(sw, folder: Path, events: list[str], statuses) -> None:
    """Both points trained in their run folders, recorded, tabulated; a rerun redoes nothing."""
    assert sorted(events) == ["done", "done", "start", "start"]
    assert all(s.state == "done" and "score.spearman" in s.metrics for s in statuses)
    for s in statuses:
        assert (folder / "runs" / s.run.id / "results.json").is_file()
        assert (folder / "results" / f"{s.run.id}.json").is_file()
    assert [s.state for s in sweep_status(sw, folder)] == ["done", "done"]
    written = {p.name for p in tabulate(sw, sweep_status(sw, folder)).write(folder)}
    assert "results.csv" in written
    rows = list(csv.DictReader((folder / "results.csv").open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["n"] == "2"
    again: list[str] = []
    run_sweep(sw, folder, on_event=lambda k, s: again.append(k))
    assert again == ["skip", "skip"]  # nothing redone


@pytest.fixture
def ray_module():
    """Ray, shut down after the test whatever happens (no processes are left behind)."""
    ray = pytest.importorskip("ray", reason="the 'ray' extra (ray>=2.9) is not installed")
    try:
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()


def test_ray_launcher_on_a_local_ray_instance(ray_module, tmp_path, synth_root, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    path = process_sweep(tmp_path, synth_root, "{name: ray, cpus: 1}")
    sw = load_sweep(path)
    folder = tmp_path / "out"
    events: list[str] = []
    statuses = run_sweep(sw, folder, on_event=lambda k, s: events.append(k))
    assert not ray_module.is_initialized()  # the local instance the launcher started is gone
    check_recorded(sw, folder, events, statuses)


def test_slurm_launcher_through_submitits_local_executor(tmp_path, synth_root, monkeypatch):
    pytest.importorskip("submitit", reason="the 'slurm' extra (submitit) is not installed")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job processes inherit it
    path = process_sweep(tmp_path, synth_root, "{name: slurm, cluster: local, time_min: 5}")
    sw = load_sweep(path)
    folder = tmp_path / "out"
    events: list[str] = []
    statuses = run_sweep(sw, folder, on_event=lambda k, s: events.append(k))
    check_recorded(sw, folder, events, statuses)
    logs = list((folder / "launcher-logs").rglob("*_result.pkl"))
    assert len(logs) == 2  # two separate submitit jobs ran


def test_points_reach_workers_with_absolute_paths(tmp_path, monkeypatch):
    """A worker may start in another directory: run folders and path params go absolute."""
    import aqa_framework.experiments.sweep as sweep_mod

    monkeypatch.chdir(tmp_path)
    path = process_sweep(tmp_path, Path("data/diving"), "{name: ray}")
    sent: list = []
    monkeypatch.setattr(sweep_mod, "launch_points",
                        lambda spec, jobs, logs, done: sent.extend(jobs))
    run_sweep(load_sweep(path), Path("out"))
    assert len(sent) == 2
    for job in sent:
        assert Path(job.run_dir) == tmp_path / "out" / "runs" / job.id
        assert job.raw["data"]["params"]["root"] == str(tmp_path / "data" / "diving")
    # what the sweep records is the spec as written (its hash, its plan)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text(encoding="utf-8"))
    assert plan["runs"][sent[0].id]["spec"]["data"]["params"]["root"] == "data/diving"


def test_slurm_asks_for_whole_cpus_and_gpus(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit",
                                   reason="the 'slurm' extra (submitit) is not installed")
    from aqa_framework.experiments.launchers import PointJob

    asked: dict = {}

    def capture(self, **params):
        asked.update(params)
        raise RuntimeError("stop before submitting")

    monkeypatch.setattr(submitit.AutoExecutor, "update_parameters", capture)
    job = PointJob("a", {}, "a", str(tmp_path / "a"), False)
    with pytest.raises(RuntimeError, match="stop before"):
        launch_points(LauncherSpec(name="slurm", cluster="debug", cpus=0.5, gpus=1.5), [job],
                      tmp_path, lambda j, p: None)
    assert asked["cpus_per_task"] == 1 and asked["gpus_per_node"] == 2  # not 0 and 1


def interrupted_sweep(tmp_path, synth_root, launcher: str) -> Path:
    """Point ``epochs-1`` finishes at once; point ``epochs-400`` trains until it is cancelled."""
    path = process_sweep(tmp_path, synth_root, launcher)
    path.write_text("base: base.yaml\naxes:\n  epochs: [1, 400]\npaths: {epochs: train.epochs}\n"
                    f"launcher: {launcher}\n", encoding="utf-8")
    return path


def check_interrupted(sw, folder: Path, exc_info, engine: str) -> None:
    """The finished point is recorded, the other cancelled and left to resume."""
    from aqa_framework.experiments.launchers import LaunchInterrupted

    exc = exc_info.value
    assert isinstance(exc, LaunchInterrupted) and isinstance(exc, KeyboardInterrupt)
    assert (exc.cancelled, exc.recorded) == (1, 1)
    assert str(exc) == f"interrupted: cancelled 1 unfinished {engine}; 1 finished point recorded"
    assert {s.run.id: s.state for s in sweep_status(sw, folder)} == {
        "epochs-1": "done", "epochs-400": "partial"}
    assert not (folder / "runs" / "epochs-400" / "results.json").exists()


def test_interrupted_ray_sweep_cancels_unfinished_tasks(ray_module, tmp_path, synth_root,
                                                        monkeypatch):
    """Ctrl-C in the wait loop: ray.cancel on the unfinished task, the finished one recorded."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    sw = load_sweep(interrupted_sweep(tmp_path, synth_root, "{name: ray, cpus: 1}"))
    folder = tmp_path / "out"
    recorded: list[str] = []
    cancelled: list = []
    real_wait, real_cancel = ray_module.wait, ray_module.cancel

    def wait(refs, **kwargs):  # Ctrl-C arrives in the loop once the short point is recorded
        if recorded and kwargs.get("timeout") != 0 and not cancelled:
            raise KeyboardInterrupt
        return real_wait(refs, **kwargs)

    def cancel(ref, **kwargs):
        cancelled.append(ref)
        return real_cancel(ref, **kwargs)

    monkeypatch.setattr(ray_module, "wait", wait)
    monkeypatch.setattr(ray_module, "cancel", cancel)
    with pytest.raises(KeyboardInterrupt) as exc_info:
        run_sweep(sw, folder, on_event=lambda k, s: k == "done" and recorded.append(s.run.id))
    assert recorded == ["epochs-1"] and len(cancelled) == 1
    assert not ray_module.is_initialized()  # the local instance stopped with the sweep
    check_interrupted(sw, folder, exc_info, "Ray task")


def test_sigterm_to_a_slurm_sweep_cancels_its_unfinished_jobs(tmp_path, synth_root, monkeypatch):
    """SIGTERM while waiting: job.cancel() stops the running point like an interrupted run."""
    import os
    import signal
    import threading
    import time

    pytest.importorskip("submitit", reason="the 'slurm' extra (submitit) is not installed")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sw = load_sweep(interrupted_sweep(tmp_path, synth_root,
                                      "{name: slurm, cluster: local, time_min: 5}"))
    folder = tmp_path / "out"
    long_run = folder / "runs" / "epochs-400"

    def terminate_when_ready() -> None:  # the short point recorded, the long one training
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (folder / "results" / "epochs-1.json").is_file() and (
                    long_run / "metrics.jsonl").is_file():
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    terms: list[int] = []

    def guard(signum, frame):  # a SIGTERM outside the sweep's wait must not end pytest
        terms.append(signum)

    previous = signal.signal(signal.SIGTERM, guard)
    try:
        threading.Thread(target=terminate_when_ready, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as exc_info:
            run_sweep(sw, folder)
        assert signal.getsignal(signal.SIGTERM) is guard  # restored after the wait
        assert not terms  # the sweep's handler took the signal
    finally:
        signal.signal(signal.SIGTERM, previous)
    check_interrupted(sw, folder, exc_info, "SLURM job")
    # the cancelled job got SIGINT: its run stops after the step and closes as interrupted
    deadline = time.monotonic() + 60
    while not (long_run / "status.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads((long_run / "status.json").read_text())["status"] == "interrupted"


def test_cli_sweep_says_how_many_points_were_cancelled(sweep_file, monkeypatch, capsys):
    import aqa_framework.experiments.sweep as sweep_mod
    from aqa_framework.cli.main import main
    from aqa_framework.experiments.launchers import LaunchInterrupted

    def interrupted(*args, **kwargs):
        raise LaunchInterrupted(2, 1, "SLURM job")

    monkeypatch.setattr(sweep_mod, "run_sweep", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(sweep_file), "-o", str(sweep_file.parent / "out")])
    assert exc.value.code == 130
    err = capsys.readouterr().err
    assert "cancelled 2 unfinished SLURM jobs; 1 finished point recorded" in err
