"""Multi-node training through torchrun's rendezvous, with elastic restarts, on localhost.

Two torchrun "nodes" (two torchrun processes, ``--nnodes 2``, one worker each, gloo on the
CPU) share one c10d rendezvous endpoint on a free port. Their run must end with the metrics of
a one-process run of the same global batch; and when a worker dies, ``--max-restarts 1`` must
restart the group, which continues the run folder from its last checkpoint and finishes it.

The data is a tiny synthetic-diving set (built-in, so a fresh torchrun worker finds it by
name): 16 dives of 32x32 frames, one clip each, a narrow C3D and a score head, 3 epochs.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from aqa_framework import testing
from aqa_framework.engine import distributed as D
from aqa_framework.engine.runner import run_training
from aqa_framework.errors import CheckpointError
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec

SPEC = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average"},
        "heads": {"score": {"name": "score", "params": {"target_scale": 20}}},
    },
    "data": {
        "name": "synthetic-diving",
        "params": {
            "dives": 16,
            "dives_per_event": 8,
            "size": [32, 32],
            "crop": 32,
            "sampling": "spread",
            "num_clips": 1,
            "clip_length": 16,
            "cache_dir": None,
            "jitter": 0,  # no augmentation: one and two processes see the same frames
            "flip": False,
        },
        "batch_size": 4,  # the global batch: 2 per process on two nodes
        "val_fraction": 0.3,  # 12 training dives: 4 to validate, 8 (two batches) to train
        "num_workers": 0,
    },
    "train": {"epochs": 3, "optimizer": {"name": "adam", "lr": 0.001}},
    "eval": {"report_samples": 2},
    "seed": 0,
}

# Worker for the restart test: the global rank 1 of the group's first start dies (os._exit, as
# a crash or an OOM kill would) when it starts epoch 2, once rank 0 has written epoch 1's
# checkpoint. Restarted workers (TORCHELASTIC_RESTART_COUNT > 0) run normally.
DYING_WORKER = """
import json, os, sys, time
from pathlib import Path

from aqa_framework.engine import runner

if os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
    original = runner._Run._train_epoch

    def _train_epoch(self, state, controls, epoch, epochs):
        if epoch == 1:
            marker = self.folder.checkpoints / "last" / "checkpoint.json"
            deadline = time.monotonic() + 120
            while not marker.is_file() and time.monotonic() < deadline:
                time.sleep(0.05)
            print("worker of rank 1 dies in epoch 2", file=sys.stderr, flush=True)
            os._exit(17)
        return original(self, state, controls, epoch, epochs)

    runner._Run._train_epoch = _train_epoch

from aqa_framework.cli.main import main

main(sys.argv[1:])
"""


def _torchrun_problem() -> str | None:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        return "torch.distributed with the gloo backend is not available"
    try:
        import torch.distributed.run  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the torch build
        return f"torchrun is not available: {exc}"
    return None


TORCHRUN_PROBLEM = _torchrun_problem()
needs_torchrun = pytest.mark.skipif(TORCHRUN_PROBLEM is not None, reason=str(TORCHRUN_PROBLEM))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(folder: Path) -> list[dict]:
    """metrics.jsonl without its timings."""
    out = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time_s"), rec.pop("samples_per_s")
        out.append(rec)
    return out


def final_metrics(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("multinode")
    raw = copy.deepcopy(SPEC)
    raw["data"]["params"]["root"] = str(base / "dives")
    raw["output"] = {"dir": str(base / "runs")}
    path = base / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def one_process(spec_file) -> Path:
    """The reference: one process, no torchrun (it also generates the dives)."""
    import torch

    from aqa_framework.resolve import load

    folder = spec_file.parent / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(load(spec_file, []), run_dir=folder, console=Console(file=io.StringIO()))
    finally:
        torch.set_num_threads(threads)
    return folder


def two_nodes(spec_file: Path, folder: Path, entry: list[str], max_restarts: int = 0):
    """Start two torchrun "nodes" of one worker each on localhost; their (code, output)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    procs = []
    for node in (0, 1):
        cmd = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-id", "aqa-test", "--rdzv-conf", f"is_host={1 if node == 0 else 0}",
            "--local-addr", "127.0.0.1", "--max-restarts", str(max_restarts),
            *entry, "run", str(spec_file), "--run-dir", str(folder),
        ]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        )
    results = []
    deadline = time.monotonic() + 300
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            out, _ = p.communicate()
            pytest.fail(f"torchrun did not end in time:\n{out[-3000:]}")
        results.append((p.returncode, out))
    return results


@pytest.fixture(scope="module")
def two_node_run(spec_file, one_process) -> Path:
    folder = spec_file.parent / "two"
    results = two_nodes(spec_file, folder, ["-m", "aqa_framework.cli.main"])
    for code, out in results:
        assert code == 0, out[-4000:]
    return folder


@pytest.mark.slow
@needs_torchrun
def test_two_nodes_match_one_process(one_process, two_node_run):
    env = json.loads((two_node_run / "environment.json").read_text())
    assert env["world_size"] == 2
    assert env["torchrun"]["run_id"] == "aqa-test" and len(env["torchrun"]["agents"]) == 2
    assert "resumes" not in env
    # Same global batches of 4 (2 per process); DDP averages the two halves' gradients, so
    # only the order of float summation differs from one process: the losses agree to ~1e-6
    # relative after 3 epochs, the metrics (computed on the same predictions) to 1e-3.
    one, two = records(one_process), records(two_node_run)
    assert [r["epoch"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert b["train"] == pytest.approx(a["train"], rel=1e-4)
        assert b["val"] == pytest.approx(a["val"], rel=1e-3, abs=1e-3)
    assert final_metrics(two_node_run) == pytest.approx(
        final_metrics(one_process), rel=1e-3, abs=1e-3
    )
    launch = json.loads((two_node_run / "checkpoints" / "last" / "checkpoint.json").read_text())
    assert launch["launch"]["run_id"] == "aqa-test"


@pytest.mark.slow
@needs_torchrun
def test_killed_worker_is_restarted_and_the_run_finishes(spec_file, two_node_run, tmp_path):
    worker = tmp_path / "dying_worker.py"
    worker.write_text(DYING_WORKER)
    folder = spec_file.parent / "restarted"
    results = two_nodes(spec_file, folder, [str(worker)], max_restarts=1)
    output = "\n".join(out for _, out in results)
    for code, out in results:
        assert code == 0, out[-4000:]
    assert "worker of rank 1 dies in epoch 2" in output
    assert "torchrun restarted the workers (restart 1 of 1)" in output
    env = json.loads((folder / "environment.json").read_text())
    assert [(r["after_epoch"], r["torchrun_restart"]) for r in env["resumes"]] == [(1, 1)]
    # One coherent history: every epoch once, and the same numbers as the uninterrupted run
    # (the restart restores weights, optimizer and every rank's random state).
    got, ref = records(folder), records(two_node_run)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for a, b in zip(ref, got, strict=True):
        assert b["train"] == pytest.approx(a["train"], rel=1e-5)
        assert b["val"] == pytest.approx(a["val"], rel=1e-5, abs=1e-6)
    assert final_metrics(folder) == pytest.approx(final_metrics(two_node_run), rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------- the rule, in one process

TINY = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average"},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 4,
        "val_fraction": 0.25,
        "num_workers": 0,
    },
    "train": {"epochs": 1},
    "seed": 1,
}


def tiny(*overrides):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    return resolve(parse_spec(apply_overrides(copy.deepcopy(TINY), list(overrides))),
                   source="tiny.yaml")


def elastic_env(monkeypatch, run_id: str, restart: int) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", run_id)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restart))
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")


def test_elastic_launch_identity(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert D.elastic_launch(D.DistContext()) is None
    elastic_env(monkeypatch, "job-a", 2)
    launch = D.elastic_launch(D.DistContext())
    assert launch is not None and launch.restarted and launch.max_restarts == 3
    assert launch.agents == (f"{socket.gethostname()}:{os.getppid()}",)
    assert launch.started(launch.to_json())
    assert not launch.started({**launch.to_json(), "run_id": "job-b"})
    assert not launch.started({"run_id": "job-a", "agents": ["elsewhere:1"]})
    assert not launch.started(None)


def test_restart_resumes_only_this_jobs_run(monkeypatch, tmp_path, one_intra_op_thread):
    folder = tmp_path / "run"
    elastic_env(monkeypatch, "job-a", 0)
    run_training(tiny(), run_dir=folder)
    first = records(folder)

    # A first start (restart count 0) into the folder is refused, as without torchrun.
    with pytest.raises(CheckpointError, match="already holds a run"):
        run_training(tiny(), run_dir=folder)
    # Another job's restart (another rendezvous id) does not take the run over.
    elastic_env(monkeypatch, "job-b", 1)
    with pytest.raises(CheckpointError, match="already holds a run"):
        run_training(tiny(), run_dir=folder)
    # A run started without torchrun is not resumed by a torchrun restart either.
    plain = tmp_path / "plain"
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    run_training(tiny(), run_dir=plain)
    elastic_env(monkeypatch, "job-a", 1)
    with pytest.raises(CheckpointError, match="already holds a run"):
        run_training(tiny(), run_dir=plain)

    # This job's restart continues the run from its last checkpoint.
    log = io.StringIO()
    run_training(tiny(), run_dir=folder, console=Console(file=log, width=200))
    assert "torchrun restarted the workers (restart 1 of 3)" in log.getvalue()
    assert records(folder) == first
    env = json.loads((folder / "environment.json").read_text())
    assert [(r["after_epoch"], r["torchrun_restart"]) for r in env["resumes"]] == [(1, 1)]

    # ... but not with a spec that computes something else.
    from aqa_framework.errors import SpecError

    shutil.copytree(folder, tmp_path / "copy")
    with pytest.raises(SpecError, match="different spec"):
        run_training(tiny("train.optimizer.lr=0.5"), run_dir=tmp_path / "copy")


def test_each_start_of_a_group_gets_a_fresh_store_namespace():
    """Workers of a restarted group must not read what the dead group left in the agent's store."""
    import threading
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.HashStore()
    store.set_timeout(timedelta(seconds=30))

    def start(world_size: int) -> list[str]:
        got: list[str] = [""] * world_size

        def worker(rank: int) -> None:
            got[rank] = D._fresh_namespace(store, rank, world_size, timeout_s=30)

        threads = [threading.Thread(target=worker, args=(r,)) for r in range(world_size)]
        for t in threads[::-1]:
            t.start()
        for t in threads:
            t.join(60)
        return got

    first = start(3)
    assert len(set(first)) == 1 and first[0]
    # A dead start's rank 2 left its token behind; the next start still agrees on a new name.
    store.set("aqa/hello/2", "token-of-a-dead-worker")
    second = start(3)
    assert len(set(second)) == 1 and second[0] != first[0]
    with pytest.raises(RuntimeError, match=r"ranks \[1\] did not join"):
        D._fresh_namespace(store, 0, 2, timeout_s=0.2)
