"""Where a sweep's grid points train: here, as Ray tasks, or as SLURM jobs through submitit.

``aqa sweep FILE --launcher local|ray|slurm``. The local launcher trains the points one after
the other in this process. The others hand each unfinished point to a distributed engine:

* ``ray``: one Ray task per point with the declared CPUs and GPUs, on an existing cluster
  (``address``, e.g. ``auto`` after ``ray start``) or a local one started here (and stopped
  when the sweep ends);
* ``slurm``: one SLURM job per point through submitit (partition, time limit, GPUs and CPUs
  per job); ``cluster: local`` runs the jobs as local processes (submitit's local executor).

Every point trains into its run folder under the sweep folder (a file system the workers
share); this process waits for the points, reads each finished run's metrics and records them
in the same sweep folder and table as a local sweep. An interrupted sweep run again skips the
recorded points and resumes the others from their last checkpoint.

Interrupting the sweep (Ctrl-C, or SIGTERM while it waits) cancels the points it submitted that
have not finished (``ray.cancel`` of their tasks, ``job.cancel()`` of their jobs: a running
point stops like an interrupted run, keeping its last checkpoint), records the points that did
finish and raises :class:`LaunchInterrupted` (``aqa sweep`` prints how many were cancelled and
exits with status 130).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.errors import AQAError

__all__ = ["LaunchInterrupted", "LauncherSpec", "PointJob", "launch_points", "train_point"]

POLL_S = 1.0
"""How often the wait for the points looks at them (and lets a signal in), in seconds."""


class LauncherSpec(BaseModel):
    """How a sweep's points are launched (the sweep file's ``launcher:``; flags override it)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["local", "ray", "slurm"] = Field(
        "local", description="local (one after the other here), ray or slurm."
    )
    cpus: float = Field(1, gt=0, description="CPUs per point (Ray task, SLURM cpus_per_task).")
    gpus: float = Field(0, ge=0, description="GPUs per point (Ray task, SLURM gpus_per_node).")
    address: str | None = Field(
        None, description="Ray cluster address ('auto' after `ray start`); none: a local one."
    )
    partition: str | None = Field(None, description="SLURM partition.")
    time_min: int = Field(60, ge=1, description="SLURM time limit per point, in minutes.")
    cluster: Literal["slurm", "local", "debug"] | None = Field(
        None, description="submitit executor: slurm (default when sbatch exists), local or debug."
    )
    slurm_args: dict[str, Any] = Field(
        default_factory=dict, description="More submitit slurm_* parameters (e.g. account)."
    )


@dataclass(frozen=True)
class PointJob:
    """One unfinished point: its raw spec and run folder, and whether it resumes."""

    id: str
    raw: dict[str, Any]
    label: str
    run_dir: str
    resume: bool


def train_point(job: PointJob) -> str:
    """Validate and train one point (in the worker); return its run folder."""
    from aqa_framework.engine.runner import run_training
    from aqa_framework.resolve import load

    resolved = load(job.raw, label=job.label)
    Path(job.run_dir).parent.mkdir(parents=True, exist_ok=True)
    return str(run_training(resolved, run_dir=job.run_dir,
                            resume=job.run_dir if job.resume else None))


class LaunchInterrupted(KeyboardInterrupt):
    """The sweep was interrupted while its points ran on Ray or SLURM; the rest were cancelled.

    Args:
        cancelled: Points submitted and not finished, now cancelled.
        recorded: Points that finished and were recorded (before or while stopping).
        engine: ``Ray task`` or ``SLURM job``, for the message.
    """

    def __init__(self, cancelled: int, recorded: int, engine: str) -> None:
        self.cancelled, self.recorded = cancelled, recorded
        s = "" if cancelled == 1 else "s"
        super().__init__(
            f"interrupted: cancelled {cancelled} unfinished {engine}{s}; {recorded} finished "
            f"point{'' if recorded == 1 else 's'} recorded"
        )


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived while the sweep waited for its points."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While waiting (main thread only), SIGTERM interrupts like Ctrl-C instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise AQAError(
            f"--launcher {extra} needs {module}: pip install 'aqa-framework[{extra}]'"
        ) from None


def launch_points(
    spec: LauncherSpec, jobs: Sequence[PointJob], log_dir: Path,
    on_done: Callable[[PointJob, Path], None],
) -> None:
    """Run the jobs on Ray or SLURM; call ``on_done(job, run_folder)`` as each finishes.

    Raises:
        AQAError: If the launcher's package is missing (naming the extra), or a point failed
            (after the others finished; rerun the sweep to retry it).
        LaunchInterrupted: On Ctrl-C or SIGTERM while waiting: the unfinished points were
            cancelled, the finished ones recorded.
    """
    if not jobs:
        return
    runner = _ray if spec.name == "ray" else _slurm
    failures = runner(spec, jobs, log_dir, on_done)
    if failures:
        shown = "; ".join(f"{job.id}: {why}" for job, why in failures[:5])
        raise AQAError(
            f"{len(failures)} of {len(jobs)} sweep points failed ({shown}); the others are "
            "recorded: run the same command again to retry"
        )


def _ray(
    spec: LauncherSpec, jobs: Sequence[PointJob], _log_dir: Path,
    on_done: Callable[[PointJob, Path], None],
) -> list[tuple[PointJob, str]]:
    ray = _need("ray", "ray")
    started = not ray.is_initialized()
    if started:  # connect to `address`, or start a local instance for this sweep
        ray.init(address=spec.address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_retries=0)(train_point)
        return _ray_tasks(ray, task, jobs, on_done)
    finally:
        if started:  # a local instance started here stops with the sweep (no stray workers)
            ray.shutdown()


def _ray_tasks(
    ray: Any, task: Any, jobs: Sequence[PointJob], on_done: Callable[[PointJob, Path], None],
) -> list[tuple[PointJob, str]]:
    """Submit one task per point, record each as it finishes; cancel the rest if interrupted."""
    pending: dict[Any, PointJob] = {}
    failures: list[tuple[PointJob, str]] = []
    recorded = 0

    def finish(ref: Any) -> None:
        nonlocal recorded
        job = pending.pop(ref)
        try:
            on_done(job, Path(ray.get(ref)))
        except Exception as exc:  # the task's error, re-raised by ray.get
            failures.append((job, f"{type(exc).__name__}: {exc}"))
        else:
            recorded += 1

    try:
        with _sigterm_interrupts():
            for job in jobs:  # one by one: an interrupt cancels what was submitted
                pending[task.remote(job)] = job
            while pending:  # a timeout, so that Ctrl-C and SIGTERM get in between
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    finish(ref)
    except KeyboardInterrupt:
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:  # finished while we were stopping: keep their results
                finish(ref)
        for ref in pending:
            ray.cancel(ref)
        raise LaunchInterrupted(len(pending), recorded, "Ray task") from None
    return failures


def _slurm(
    spec: LauncherSpec, jobs: Sequence[PointJob], log_dir: Path,
    on_done: Callable[[PointJob, Path], None],
) -> list[tuple[PointJob, str]]:
    submitit = _need("submitit", "slurm")
    executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster=spec.cluster)
    # SLURM allocates whole CPUs and GPUs: a fraction (fine for Ray) asks for the next one up
    params: dict[str, Any] = {"timeout_min": spec.time_min, "cpus_per_task": ceil(spec.cpus),
                              "gpus_per_node": ceil(spec.gpus)}
    if executor.cluster == "slurm":
        params.update(slurm_partition=spec.partition,
                      **{f"slurm_{k}": v for k, v in spec.slurm_args.items()})
        params = {k: v for k, v in params.items() if v is not None}
    executor.update_parameters(name="aqa-sweep", **params)
    pending: list[tuple[Any, PointJob]] = []
    failures: list[tuple[PointJob, str]] = []
    recorded = 0

    def finish(handle: Any, job: PointJob) -> None:
        nonlocal recorded
        pending.remove((handle, job))
        try:
            on_done(job, Path(handle.result()))
        except Exception as exc:  # the job's error (submitit.core.utils.FailedJobError)
            failures.append((job, f"{type(exc).__name__}: {str(exc)[-300:]}"))
        else:
            recorded += 1

    try:
        with _sigterm_interrupts():
            for job in jobs:  # one by one: an interrupt cancels what was submitted
                pending.append((executor.submit(train_point, job), job))
            while pending:  # record each job as it ends, whatever the order
                done = [(h, j) for h, j in pending if h.done()]
                for handle, job in done:
                    finish(handle, job)
                if not done:
                    time.sleep(POLL_S)
    except KeyboardInterrupt:
        asked = executor.cluster != "debug"  # asking a debug job would run it here
        for handle, job in [(h, j) for h, j in pending if asked and _ended(h)]:
            finish(handle, job)  # finished while we were stopping: keep their results
        for handle, _job in pending:
            handle.cancel(check=False)
        raise LaunchInterrupted(len(pending), recorded, "SLURM job") from None
    return failures


def _ended(handle: Any) -> bool:
    """Whether a submitit job ended, asked without waiting."""
    try:
        return bool(handle.done())
    except Exception:  # the scheduler cannot be asked now: treat the job as unfinished
        return False
