"""``aqa run``: train and evaluate the model a resolved spec describes, in a run folder.

:func:`run_training` is the whole pipeline: set up the device (and the process group under
torchrun), open the data (train / validation / test), build the model, optimizer and schedule,
train with checkpoints at epoch ends, pick the epoch (:mod:`.selection`), evaluate it on the
final split and write the report. ``resume`` continues an interrupted run from its last complete
checkpoint with the same generator states, so it ends with the metrics of an uninterrupted run.

The pieces live in their own modules: :mod:`.train_state` (what is saved and restored),
:mod:`.epoch_policy` (what the end of an epoch does) and :mod:`.results` (what a finished run
writes); this module claims the run folder, opens the data and runs the epochs.

Everything a run reports goes through its training events (:mod:`.events`): the progress
display, ``metrics.jsonl``, the results and ``status.json`` are the first callbacks
(:mod:`.builtin_callbacks`), then the spec's trackers (``track:``), then the plugins'.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from rich.console import Console

from aqa_framework.data.open import OpenedData
from aqa_framework.data.padding import SequencePadding, check_eval_lengths
from aqa_framework.engine import distributed as D
from aqa_framework.engine.checkpoint import (
    CHECKPOINTS_DIR,
    META_FILE,
    Checkpoint,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    remove_temporaries,
)
from aqa_framework.engine.environment import collect_environment
from aqa_framework.engine.epoch_policy import EpochPolicy, epoch_record
from aqa_framework.engine.events import (
    Callback,
    CallbackError,
    CheckpointSaved,
    Close,
    EpochEnd,
    EpochStart,
    Evaluate,
    Event,
    EventBus,
    Interrupt,
    Registered,
    Resume,
    RunEnd,
    RunInfo,
    RunPruned,
    RunStart,
    StepEnd,
)
from aqa_framework.engine.loaders import EpochLoader, eval_loader, resolve_num_workers
from aqa_framework.engine.loop import (
    EpochStats,
    EvalResult,
    NonFiniteGuard,
    NonFiniteLoss,
    StepReport,
    StopRequested,
    evaluate,
    train_one_epoch,
)
from aqa_framework.engine.optim import current_lr
from aqa_framework.engine.precision import configure_backends, resolve_device, resolve_precision
from aqa_framework.engine.progress import TrainingProgress
from aqa_framework.engine.results import RunResults
from aqa_framework.engine.run_folder import (
    ENVIRONMENT_FILE,
    RunFolder,
    create_run_folder,
    default_run_name,
)
from aqa_framework.engine.run_lock import RunLock
from aqa_framework.engine.seeding import seed_everything
from aqa_framework.engine.selection import Selection, resolve_selection
from aqa_framework.engine.signals import GracefulStop, TrainingInterrupted
from aqa_framework.engine.train_state import TrainState, repair_best
from aqa_framework.errors import AQAError, CheckpointError, SpecError, TrainingDiverged
from aqa_framework.resolve import (
    ResolvedSpec,
    comparable_stored_spec,
    dump_resolved_spec,
    resolved_spec_dict,
)
from aqa_framework.spec import flat_paths
from aqa_framework.spec_paths import absolute_paths

# Spec paths that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.device",
    "train.compile",
    "train.max_nonfinite_steps",
    "data.num_workers",
    "data.eval_batch_size",
    "eval.report_samples",
    "output",
    "track",
    "callbacks",
    "description",
)


def run_training(
    resolved: ResolvedSpec,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
    callbacks: list[Callback] | None = None,
) -> Path:
    """Train and evaluate a resolved spec; returns the run folder.

    The run folder is locked (:class:`~aqa_framework.engine.run_lock.RunLock`) from the moment
    it is claimed until the run ends, so a second process cannot write into it. Relative paths
    among the components' parameters (``data.params.root``, ``cache_dir``, ``pretrained``)
    are made absolute against the current directory before anything is stored, so the run
    folder's spec works from any directory.

    Args:
        resolved: The validated spec with its components.
        run_dir: Run folder to create (default ``output.dir/output.name``, the name defaulting
            to the spec file's stem and the time, made unique). It must be new, empty, or hold
            a run that stopped before its first checkpoint. One exception: when torchrun
            restarts the group (``--max-restarts``; ``TORCHELASTIC_RESTART_COUNT`` > 0), an
            explicit folder (``run_dir`` or ``output.name``) whose last checkpoint was written
            by this same torchrun job (its rendezvous id and elastic agents) is resumed from
            that checkpoint.
        resume: Run folder (or checkpoint folder) of an interrupted run to continue; a run
            that stopped before its first checkpoint starts from the beginning.
        console: Where progress and messages go (default: stderr).
        callbacks: More training callbacks (:class:`~aqa_framework.engine.events.Callback`),
            called after the built-in ones, the trackers and the plugins' callbacks.

    Raises:
        SpecError: If the spec does not fit the data, differs from the resumed run's, or
            names an unknown tracker (or one whose optional dependency is missing).
        CallbackError: When a training callback raised (the run stopped; its last checkpoint
            is kept).
        CheckpointError: If the run to resume has no readable checkpoint, the run folder is
            in use by another process, or holds something else than a run.
        TrainingInterrupted: On SIGINT/SIGTERM, after saying how to resume.
        RunPruned: When a callback ended the run early on purpose (``aqa tune`` pruned the
            trial); the run closed with status ``pruned`` (``status.json``), its checkpoints
            are kept.
    """
    resolved = absolute_paths(resolved)
    spec = resolved.spec
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(spec.train.device, local_rank)
    ctx = D.init_distributed(device.type)
    run = None
    try:
        run = _Run(resolved, ctx, device, console or Console(stderr=True, soft_wrap=True))
        run.set_callbacks(callbacks or [])
        return run.execute(run_dir, resume)
    finally:
        if run is not None:
            run.release()
        D.shutdown(ctx)


@dataclass
class _Controls:
    """What an epoch polls and reports to.

    The stop request, the progress display and the counter of non-finite steps (which
    carries over epoch ends).
    """

    stop: GracefulStop
    progress: TrainingProgress | None
    guard: NonFiniteGuard
    ctx: D.DistContext

    def should_stop(self) -> bool:
        """Whether any process was asked to stop."""
        return D.any_true(self.stop.requested is not None, self.ctx)


def fit_heads(model: Any, data: OpenedData) -> None:
    """Let every head that fits state before training (``TaskHead.fit``) see the training samples.

    Only the training samples' targets are read (the exemplar pool's, with their group
    values, when the spec has ``data.partners``); nothing is read when no head fits.
    """
    from aqa_framework.data.partners import fit_data, sample_targets
    from aqa_framework.interfaces import TaskHead

    heads = [h for h in model.heads.values() if type(h).fit is not TaskHead.fit]
    if not heads or data.train is None:
        return
    if data.partners is not None:
        fitted = fit_data(data.partners.rows, data.partners.group_by)
    else:
        fitted = fit_data([sample_targets(data.train, i) for i in range(len(data.train))])
    for head in heads:
        head.fit(fitted)


def _frame_size(dataset: Any) -> list[int] | None:
    """The dataset's video frame size ``[width, height]`` for ``aqa predict``, if it knows it."""
    try:
        size = dataset.frame_size()
    except (AttributeError, AQAError, OSError):
        return None
    return [int(size[0]), int(size[1])] if size else None


def spec_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, str]]:
    """Paths whose values differ between a run's stored spec and a new one (resume check)."""
    a, b = flat_paths(stored), flat_paths(current)
    problems = []
    for path in sorted(set(a) | set(b)):
        if any(path == p or path.startswith(p + ".") for p in RESUMABLE_CHANGES):
            continue
        if a.get(path) != b.get(path):
            problems.append(
                (
                    path,
                    f"the run was started with {a.get(path)!r}, the spec now says {b.get(path)!r}",
                )
            )
    return problems


def _run_folder_of(path: Path) -> Path:
    """The run folder of a run folder or of a checkpoint folder inside one."""
    if path.parent.name == CHECKPOINTS_DIR:
        return path.parent.parent
    return path


class _Run:
    def __init__(
        self, resolved: ResolvedSpec, ctx: D.DistContext, device: torch.device, console: Console
    ) -> None:
        self.resolved = resolved
        self.spec = resolved.spec
        self.ctx = ctx
        self.device = device
        self.console = console
        self.precision = resolve_precision(self.spec.train.precision, device)
        self.lock: RunLock | None = None
        self.launch: D.ElasticLaunch | None = None
        # set up by execute()
        self.folder: RunFolder
        self.forward: Any = None
        self.eval_forward: Any = None
        self.train_loader: EpochLoader
        self.loaders: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.progress_callback = _builtin_progress(console)
        self.bus = EventBus([], ctx.is_main)
        self.info: RunInfo
        self.state: TrainState | None = None
        self.sizes: dict[str, int] = {}

    def set_callbacks(self, extra: list[Callback]) -> None:
        """The run's callbacks: built-ins, the spec's trackers, the plugins', then ``extra``.

        Raises:
            SpecError: For an unknown tracker or one whose dependency is missing.
            PluginError: When a plugin registers a bad callback.
        """
        from aqa_framework.engine.builtin_callbacks import (
            MetricsFileCallback,
            ResultsCallback,
            StatusFileCallback,
        )
        from aqa_framework.engine.events import (
            instantiate,
            plugin_callback_classes,
            select_callbacks,
        )
        from aqa_framework.registry import get_registry
        from aqa_framework.tracking import resolve_trackers

        registry = get_registry()
        framework = "aqa-framework"
        callbacks = [
            Registered(self.progress_callback, framework),
            Registered(MetricsFileCallback(), framework),
            Registered(ResultsCallback(), framework),
            Registered(StatusFileCallback(), framework),
            *resolve_trackers(getattr(self.spec, "track", []), registry, self.resolved.source),
            *instantiate(
                select_callbacks(
                    plugin_callback_classes(registry),
                    getattr(self.spec, "callbacks", []),
                    self.resolved.source,
                )
            ),
            *(Registered(cb, "run_training(callbacks=...)") for cb in extra),
        ]
        self.bus = EventBus(callbacks, self.ctx.is_main)

    def emit(self, name: str, event: Event) -> None:
        """Send an event to the callbacks (see :mod:`aqa_framework.engine.events`)."""
        self.bus.emit(name, event)

    def release(self) -> None:
        """Drop the run folder's lock (rank 0)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def log(self, message: str) -> None:
        if self.ctx.is_main:
            self.console.print(message, highlight=False, markup=False)

    # ------------------------------------------------------------------ main
    def execute(self, run_dir: str | Path | None, resume: str | Path | None) -> Path:
        spec = self.spec
        heads = {task: head.cls for task, head in self.resolved.heads.items()}
        selection = resolve_selection(spec, has_val=spec.data.val_fraction > 0, heads=heads)
        folder, ckpt = self._folder(run_dir, resume)
        self.folder = folder
        if ckpt is not None:
            self._check_averaged_epochs(ckpt, selection)
        self.info = RunInfo(
            folder=folder.path,
            name=folder.path.name,
            spec=resolved_spec_dict(self.resolved),
            source=self.resolved.source,
            epochs=spec.train.epochs,
            world_size=self.ctx.world_size,
            rank=self.ctx.rank,
            log=self.log,
        )
        status, error, reason = "failed", None, None
        try:
            configure_backends(self.device)
            data = self._data()
            state = self.state = self._start(ckpt, data)
            policy = EpochPolicy.from_spec(spec, selection, has_val=data.val is not None)
            started = time.perf_counter()
            self._train(state, policy)
            train_seconds = time.perf_counter() - started
            result = self._final(state.model, state.best)
            if self.ctx.is_main:
                self._finish(data, state, selection, result, train_seconds)
            D.barrier(self.ctx)
            status = "finished"
        except TrainingInterrupted:
            status = "interrupted"
            raise
        except RunPruned as exc:
            status, reason = "pruned", str(exc)
            self.log(f"{reason}: the run stopped ({self._kept()})")
            raise
        except CallbackError as exc:
            error = str(exc)
            raise CallbackError(
                f"{str(exc).rstrip('.')}. The run stopped: {self._kept()}",
                exc.origin,
                exc.callback,
                exc.event,
            ) from exc
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            closing = Close(self.info, status=status, error=error, reason=reason)
            for problem in self.bus.close(closing):
                self.log(f"warning: {problem}")
        return folder.path

    def _kept(self) -> str:
        """What a stopped run kept, and how to resume it."""
        saved = self.state.saved_epoch if self.state is not None else 0
        source = self.resolved.source or "SPEC"
        if not saved:
            return "no checkpoint was written yet (resuming starts the run from the beginning)"
        return (
            f"the checkpoint of epoch {saved} is kept; resume with: aqa run {source} "
            f"--resume {self.folder.path}"
        )

    # ------------------------------------------------------------------ run folder
    def _folder(
        self, run_dir: str | Path | None, resume: str | Path | None
    ) -> tuple[RunFolder, Checkpoint | None]:
        """Claim (rank 0) and share the run folder; load the checkpoint to resume."""
        self.launch = D.elastic_launch(self.ctx)
        claimed: tuple[str, str | None] | None = None
        error: AQAError | None = None
        if self.ctx.is_main:
            try:
                claimed = self._claim(run_dir, resume)
            except AQAError as exc:
                error = exc
            except OSError as exc:
                error = CheckpointError(f"cannot prepare the run folder: {exc}")
        shared = D.broadcast_object(claimed if error is None else str(error), self.ctx)
        if error is not None:
            raise error
        if isinstance(shared, str):
            raise CheckpointError(shared)
        folder_path, ckpt_path = shared
        folder = RunFolder(folder_path)
        if ckpt_path is None:
            return folder, None
        ckpt = load_checkpoint(ckpt_path, training_state=True)
        self._check_resumable(folder, ckpt)
        return folder, ckpt

    def _check_resumable(self, folder: RunFolder, ckpt: Checkpoint) -> None:
        """Refuse to resume with a spec that computes something else, or fewer epochs."""
        spec = self.spec
        stored = comparable_stored_spec(ckpt.spec, self.resolved)
        problems = spec_differences(stored, resolved_spec_dict(self.resolved))
        if problems:
            raise SpecError(
                [
                    (
                        "",
                        f"cannot resume {folder.path} with a different spec "
                        "(only train.epochs, devices, workers and output may change)",
                    ),
                    *problems,
                ],
                source=self.resolved.source,
            )
        if spec.train.epochs < ckpt.epoch:
            raise SpecError(
                [
                    (
                        "train.epochs",
                        f"is {spec.train.epochs}, but the run in {folder.path} already "
                        f"completed {ckpt.epoch} epochs; give at least {ckpt.epoch}",
                    )
                ],
                source=self.resolved.source,
            )

    def _check_averaged_epochs(self, ckpt: Checkpoint, selection: Selection) -> None:
        """Refuse a resume whose ``select_on: last_mean`` window holds epochs never evaluated.

        That happens when ``train.epochs`` changed: the last epochs moved to epochs the run
        already trained without evaluating them on the final split.
        """
        from aqa_framework.engine.last_epochs import missing_epochs

        spec = self.spec
        if not selection.last_epochs:
            return
        history = list(ckpt.meta.get("history", []))[: ckpt.epoch]
        missing = missing_epochs(
            history, spec.eval.split, spec.train.epochs, selection.last_epochs, ckpt.epoch
        )
        if missing:
            raise SpecError(
                [
                    (
                        "train.epochs",
                        f"is {spec.train.epochs}: select_on: last_mean would average the "
                        f"{spec.eval.split} metrics of epochs {missing}, which the run in "
                        f"{self.folder.path} trained without evaluating them on that split; "
                        f"resume with the run's original train.epochs or give at least "
                        f"{ckpt.epoch + selection.last_epochs}",
                    )
                ],
                source=self.resolved.source,
            )

    def _claim(
        self, run_dir: str | Path | None, resume: str | Path | None
    ) -> tuple[str, str | None]:
        """Rank 0: find or create the run folder and lock it.

        Returns:
            The run folder and the checkpoint to resume from (``None`` for a fresh start).
        """
        if resume is not None:
            return self._claim_resumed(Path(resume), run_dir)
        spec = self.spec
        if run_dir is None and not spec.output.name:
            folder = create_run_folder(spec.output.dir, default_run_name(self.resolved.source))
        else:
            folder = RunFolder(
                run_dir if run_dir is not None else spec.output.dir / spec.output.name
            )
            if folder.path.exists() and not folder.path.is_dir():
                raise CheckpointError(f"run folder {folder.path} is a file; give a folder")
            folder.path.mkdir(parents=True, exist_ok=True)
        self._lock(folder)
        if run_dir is not None or spec.output.name:
            restarted = self._claim_restarted(folder)
            if restarted is not None:
                return restarted
        if folder.is_unstarted_run():
            self.log(
                f"{folder.path} holds a run that stopped before its first checkpoint: "
                "starting it again"
            )
        folder.create()
        remove_temporaries(folder.checkpoints)
        return str(folder.path), None

    def _claim_resumed(self, resume: Path, run_dir: str | Path | None) -> tuple[str, str | None]:
        """Rank 0: lock the run folder of ``resume`` and find its last checkpoint."""
        if not resume.exists():
            raise CheckpointError(f"cannot resume: {resume} does not exist")
        folder = RunFolder(_run_folder_of(resume))
        if not folder.is_run_folder():
            raise CheckpointError(f"cannot resume: {folder.path} is not a run folder")
        if run_dir is not None and Path(run_dir).resolve() != folder.path.resolve():
            raise CheckpointError(
                f"--run-dir {run_dir} and --resume {resume} name different run folders"
            )
        self._lock(folder)
        remove_temporaries(folder.checkpoints)
        if folder.is_unstarted_run() and resume.resolve() == folder.path.resolve():
            folder.clear_unstarted()
            self.log(
                f"{folder.path} holds no checkpoint yet (the run stopped in its first "
                "epoch): starting it from the beginning"
            )
            return str(folder.path), None
        return str(folder.path), str(find_checkpoint(resume, prefer=("last",)))

    def _claim_restarted(self, folder: RunFolder) -> tuple[str, str] | None:
        """Rank 0, folder locked: the checkpoint to continue after torchrun restarted the group.

        ``None`` (start afresh, under the usual rules) unless this is a restart of an elastic
        torchrun job and the folder's last checkpoint was written by this same job.
        """
        launch = self.launch
        if launch is None or not launch.restarted or not folder.has_checkpoints():
            return None
        remove_temporaries(folder.checkpoints)
        try:
            path = find_checkpoint(folder.path, prefer=("last",))
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (CheckpointError, OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not launch.started(meta.get("launch")):
            return None
        self.log(
            f"torchrun restarted the workers (restart {launch.restart_count} of "
            f"{launch.max_restarts}): continuing {folder.path} from its last checkpoint"
        )
        return str(folder.path), str(path)

    def _lock(self, folder: RunFolder) -> None:
        self.lock = RunLock(folder.path).acquire()

    # ------------------------------------------------------------------ setup
    def _data(self) -> OpenedData:
        from aqa_framework.data.open import open_data

        return open_data(self.resolved, ctx=self.ctx)

    def _start(self, ckpt: Checkpoint | None, data: OpenedData) -> TrainState:
        """Build the training state (restored from ``ckpt``), record the start, open loaders."""
        if ckpt is not None and ckpt.targets != data.targets:
            raise CheckpointError(
                f"cannot resume {self.folder.path}: the dataset's targets changed since the run "
                "started (different classes, score range or vocabulary)"
            )
        state = self._build_state(data)
        check_eval_lengths(
            state.model,
            self.resolved.dataset,
            self.spec.data.eval_batch_size or self.spec.data.batch_size,
        )
        if ckpt is None:
            fit_heads(state.model, data)
        if ckpt is not None:
            state.restore(ckpt, self.spec.train, self.ctx, self.log)
            repair_best(self.folder, ckpt, state.best, self.ctx)
            self.log(f"Resuming {self.folder.path} after epoch {state.epoch} ({ckpt.path.name})")
            self._note_pruned()
        if self.ctx.is_main:
            self._write_start(ckpt, state)
        self._prepare_forward(state.model)
        self._prepare_loaders(data, SequencePadding.for_model(state.model))
        self.meta = self._checkpoint_meta(data)
        self.sizes = dict(data.sizes)
        self.emit(
            "run_start",
            RunStart(
                self.info,
                start_epoch=state.epoch,
                history=_copy(state.history),
                sizes=dict(data.sizes),
            ),
        )
        if ckpt is not None:
            self.emit("resume", Resume(self.info, after_epoch=ckpt.epoch, checkpoint=ckpt.path))
        return state

    def _note_pruned(self) -> None:
        """Say so when the run being resumed was pruned by a search (``status.json``)."""
        ended = self.folder.read_status() if self.ctx.is_main else None
        if ended is None or ended.get("status") != "pruned":
            return
        why = f" ({ended['reason']})" if ended.get("reason") else ""
        self.log(
            f"note: {self.folder.path} was pruned after epoch {ended.get('epoch', '?')}{why}; "
            "resuming trains it on as an ordinary run"
        )

    def _build_state(self, data: OpenedData) -> TrainState:
        """The model (seeded with ``spec.seed``), its optimizer, schedule and scaler.

        Warns first when the dataset's normalisation differs from what the backbone's
        pretrained weights expect.
        """
        from aqa_framework.builder import build_model
        from aqa_framework.engine.preflight import check_input_normalization

        spec = self.spec
        if self.ctx.is_main:
            check_input_normalization(self.resolved)
        seed_everything(spec.seed)
        model = build_model(
            self.resolved, data.targets, device=self.device, input_shape=data.input_shape
        )
        if spec.train.channels_last:
            model.to_channels_last()
        if spec.train.freeze_bn:
            model.freeze_batchnorm(spec.train.freeze_bn)
        if self.ctx.world_size > 1:
            seed_everything((spec.seed + 7919 * self.ctx.rank) % 2**32)
        return TrainState.for_model(model, spec.train, self.device, self.precision)

    def _prepare_forward(self, model: torch.nn.Module) -> None:
        """What runs the forward passes: the model, its DDP wrapper, their compiled forms."""
        forward: Any = model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        eval_forward: Any = model
        if self.spec.train.compile:
            forward = torch.compile(forward)
            eval_forward = torch.compile(model)
        self.forward, self.eval_forward = forward, eval_forward

    def _prepare_loaders(self, data: OpenedData, padding: SequencePadding) -> None:
        spec = self.spec
        pin = self.device.type == "cuda"
        workers = resolve_num_workers(spec.data.num_workers, self.device, self.ctx.world_size)
        self.train_loader = EpochLoader(
            data.train, spec.data.batch_size, workers, spec.seed, self.ctx, pin
        )
        ebs = spec.data.eval_batch_size or spec.data.batch_size
        self.loaders = {
            "val": eval_loader(data.val, ebs, workers, self.ctx, pin, padding)
            if data.val is not None
            else None,
            spec.eval.split: eval_loader(data.test, ebs, workers, self.ctx, pin, padding),
        }
        self.log(
            f"Data: {', '.join(f'{v} {k}' for k, v in data.sizes.items() if v)} samples | "
            f"device {self.device}, {self.precision}"
            + (f", {self.ctx.world_size} processes" if self.ctx.enabled else "")
        )
        for note in data.notes:
            self.log(note)

    def _checkpoint_meta(self, data: OpenedData) -> dict[str, Any]:
        """What every checkpoint of the run stores besides its epoch."""
        return {
            "spec": resolved_spec_dict(self.resolved),
            "targets": data.targets.model_dump(mode="json"),
            "task_kinds": {t: h.cls.target_kind for t, h in self.resolved.heads.items()},
            "dataset": self.resolved.dataset.name,
            "input_shape": list(data.input_shape) if data.input_shape else None,
            "frame_size": _frame_size(data.test),
            "world_size": self.ctx.world_size,
            "launch": self.launch.to_json() if self.launch is not None else None,
        }

    def _write_start(self, ckpt: Checkpoint | None, state: TrainState) -> None:
        """Rank 0: write the spec, the environment (a resume is appended) and the history."""
        from aqa_framework.builder import count_parameters

        folder = self.folder
        folder.write_spec(dump_resolved_spec(self.resolved))
        env = collect_environment(self.device, self.precision, self.ctx.world_size)
        env["parameters"] = count_parameters(state.model)
        launch = self.launch
        if launch is not None:
            env["torchrun"] = {
                "run_id": launch.run_id,
                "agents": list(launch.agents),
                "max_restarts": launch.max_restarts,
            }
        if ckpt is not None:
            old_path = folder.file(ENVIRONMENT_FILE)
            old = json.loads(old_path.read_text()) if old_path.is_file() else {}
            resumes = old.pop("resumes", [])
            resumes.append(
                {
                    "time": env["time"],
                    "command": env["command"],
                    "after_epoch": ckpt.epoch,
                    "device": env["device"],
                    **(
                        {"torchrun_restart": launch.restart_count}
                        if launch is not None and launch.restarted
                        else {}
                    ),
                }
            )
            env = old or env
            env["resumes"] = resumes
        folder.write_json(ENVIRONMENT_FILE, env)
        self.log(f"Run folder: {folder.path}")

    # ------------------------------------------------------------------ epochs
    def _train(self, state: TrainState, policy: EpochPolicy) -> None:
        """Train the remaining epochs; a stop request ends the run after the current step."""
        with GracefulStop(on_request=self._on_signal) as stop:
            guard = NonFiniteGuard(self.spec.train.max_nonfinite_steps)
            controls = _Controls(stop, self.progress_callback.progress, guard, self.ctx)
            for epoch in range(state.epoch, policy.epochs):
                self._epoch(state, policy, controls, epoch)

    def _epoch(
        self, state: TrainState, policy: EpochPolicy, controls: _Controls, epoch: int
    ) -> None:
        """Train epoch ``epoch`` (from 0), evaluate, select, step the schedule, checkpoint."""
        done = epoch + 1
        lr = current_lr(state.optimizer)
        record = epoch_record(done, lr, self._train_epoch(state, controls, epoch, policy.epochs))
        for split in policy.splits_to_evaluate(done):
            result = self._evaluate(state.model, split, self.progress_callback.progress)
            record[split] = result.metrics
            self.emit(
                "evaluate",
                Evaluate(
                    self.info, epoch=done, split=split, metrics=dict(result.metrics), result=result
                ),
            )
        decision = policy.end_epoch(done, record, state.best)
        state.best = decision.best
        if state.scheduler is not None:
            state.scheduler.step(done, decision.scheduler_metric)
        state.history.append(record)
        state.epoch = done
        if decision.checkpoint:
            state.save(self.folder, self.meta, self.ctx, also_best=decision.as_best)
            self.emit(
                "checkpoint",
                CheckpointSaved(
                    self.info,
                    epoch=done,
                    path=self.folder.checkpoints / "last",
                    best=decision.as_best,
                    history=_copy(state.history),
                ),
            )
        self.emit(
            "epoch_end",
            EpochEnd(
                self.info,
                epoch=done,
                record=_copy([record])[0],
                history=_copy(state.history),
                best=dict(state.best) if state.best else None,
                is_best=decision.is_best,
                summary=self._summary(record, policy.epochs),
            ),
        )
        if controls.stop.requested is not None and not policy.is_last(done):
            self._interrupted(controls.stop.requested, done, state)

    def _train_epoch(
        self, state: TrainState, controls: _Controls, epoch: int, epochs: int
    ) -> EpochStats:
        """One pass over the training split; a stop request or a diverged loss ends the run."""
        spec = self.spec
        loader = self.train_loader.epoch(epoch)
        steps = len(loader)
        if spec.train.max_steps_per_epoch is not None:
            steps = min(steps, spec.train.max_steps_per_epoch)
        done = epoch + 1
        self.emit(
            "epoch_start",
            EpochStart(self.info, epoch=done, steps=steps, lr=current_lr(state.optimizer)),
        )

        def on_step(report: StepReport) -> None:
            self.emit(
                "step_end",
                StepEnd(
                    self.info,
                    epoch=done,
                    step=report.step,
                    steps=report.steps,
                    losses=report.losses,
                    updated=report.updated,
                    mean_losses=report.mean_losses,
                    samples_per_s=report.samples_per_s,
                ),
            )

        try:
            return train_one_epoch(
                model=state.model,
                forward=self.forward,
                loader=loader,
                optimizer=state.optimizer,
                scaler=state.scaler,
                device=self.device,
                precision=self.precision,
                ctx=self.ctx,
                grad_clip=spec.train.grad_clip,
                max_steps=spec.train.max_steps_per_epoch,
                should_stop=controls.should_stop,
                description=f"epoch {epoch + 1}/{epochs}",
                guard=controls.guard,
                on_step=on_step,
            )
        except StopRequested:
            self._interrupted(controls.stop.requested or "a signal", epoch + 1, state)
        except NonFiniteLoss as exc:
            self._diverged(exc, epoch + 1, state)

    def _evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        progress: TrainingProgress | None = None,
        description: str | None = None,
    ) -> EvalResult:
        return evaluate(
            model=model,
            loader=self.loaders[split],
            device=self.device,
            precision=self.precision,
            ctx=self.ctx,
            forward=self.eval_forward,
            progress=progress,
            description=description or f"eval {split}",
        )

    def _summary(self, record: dict[str, Any], epochs: int) -> str:
        losses = " ".join(f"{k} {v:.4g}" for k, v in record["train"].items())
        text = f"epoch {record['epoch']}/{epochs} loss: {losses}"
        for split in ("val", self.spec.eval.split):
            if split in record:
                shown = list(record[split].items())[:6]
                text += f" | {split} " + " ".join(f"{k} {v:.3f}" for k, v in shown)
        return text + f" | {record['samples_per_s']:.1f} samples/s"

    # ------------------------------------------------------------------ stops
    def _on_signal(self, name: str) -> None:
        self.log(f"{name} received: stopping after this step (send SIGINT again to stop now)")

    def _interrupted(self, signame: str, epoch: int, state: TrainState) -> NoReturn:
        source = self.resolved.source or "SPEC"
        saved = state.saved_epoch
        kept = (
            f"the checkpoint of epoch {saved} is kept"
            if saved
            else "no checkpoint was written yet, so nothing was saved (resuming starts the "
            "run from the beginning)"
        )
        msg = (
            f"Stopped by {signame} in epoch {epoch}: {kept}. Resume with: aqa run {source} "
            f"--resume {self.folder.path} (with the same --set options)"
        )
        self.log(msg)
        self.emit(
            "interrupt",
            Interrupt(self.info, signal=signame, epoch=epoch, saved_epoch=saved, message=msg),
        )
        raise TrainingInterrupted(msg)

    def _diverged(self, exc: NonFiniteLoss, epoch: int, state: TrainState) -> NoReturn:
        """Stop a run whose loss stayed non-finite, saying what was kept."""
        saved = state.saved_epoch
        kept = (
            f"the checkpoint of epoch {saved} ({self.folder.checkpoints / 'last'}) is kept "
            "and nothing later was saved"
            if saved
            else "no epoch was complete, so no checkpoint was saved"
        )
        raise TrainingDiverged(
            f"training stopped in epoch {epoch}, step {exc.step}: {exc.what} for "
            f"{exc.steps} consecutive steps (train.max_nonfinite_steps); those steps did not "
            f"change the weights. {kept[0].upper()}{kept[1:]}. Lower train.optimizer.lr or set "
            "train.grad_clip, and check the data's scores."
        )

    # ------------------------------------------------------------------ end
    def _final(self, model: torch.nn.Module, best: dict[str, Any] | None) -> EvalResult:
        """Evaluate the selected epoch on the final split (its weights loaded if not the last)."""
        split = self.spec.eval.split
        if best is not None and best["epoch"] != self.spec.train.epochs:
            ckpt = load_checkpoint(self.folder.checkpoints / "best", training_state=False)
            load_weights(model, ckpt.model_state, ckpt.path)
            self.log(f"Evaluating epoch {ckpt.epoch} (selected) on the {split} split")
        result = self._evaluate(model, split, description=f"final {split}")
        epoch = best["epoch"] if best is not None else self.spec.train.epochs
        self.emit(
            "evaluate",
            Evaluate(
                self.info,
                epoch=epoch,
                split=split,
                metrics=dict(result.metrics),
                final=True,
                result=result,
            ),
        )
        return result

    def _finish(
        self,
        data: OpenedData,
        state: TrainState,
        selection: Selection,
        result: EvalResult,
        train_seconds: float,
    ) -> None:
        """Rank 0: the ``run_end`` event (the results callback writes the results files)."""
        from aqa_framework.builder import count_parameters

        averaged = None
        if selection.last_epochs:
            from aqa_framework.engine.last_epochs import mean_of_last_epochs

            averaged = mean_of_last_epochs(
                state.history, self.spec.eval.split, self.spec.train.epochs,
                selection.last_epochs,
            )
        results = RunResults(
            result=result,
            selection=selection,
            averaged=averaged,
            best=state.best,
            history=state.history,
            sizes=data.sizes,
            class_labels={f: c.labels for f, c in data.targets.classes.items()},
            # left out when the split was opened
            dropped=list(getattr(data.test, "dropped_keys", [])),
            parameters=count_parameters(state.model),
            train_seconds=train_seconds,
            environment=[
                f"device: {self.device} ({self.precision})",
                f"processes: {self.ctx.world_size}",
            ],
        )
        self.emit(
            "run_end",
            RunEnd(
                self.info,
                metrics=dict(averaged.mean if averaged is not None else result.metrics),
                epoch=state.best["epoch"] if state.best else self.spec.train.epochs,
                history=_copy(state.history),
                results=results,
                resolved=self.resolved,
            ),
        )


def _copy(records: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Deep copies of per-epoch records, so that no callback can change the run's."""
    import copy

    return tuple(copy.deepcopy(r) for r in records)


def _builtin_progress(console: Console) -> Any:
    from aqa_framework.engine.builtin_callbacks import ProgressCallback

    return ProgressCallback(console)
