"""``aqa run``: train and evaluate the model a resolved spec describes, in a run folder.

:func:`run_training` is the whole pipeline: set up the device (and the process group under
torchrun), open the data (train / validation / test), build the model, optimizer and schedule,
train with checkpoints at epoch ends, pick the epoch (:mod:`.selection`), evaluate it on the
final split and write the report. ``resume`` continues an interrupted run from its last complete
checkpoint with the same generator states, so it ends with the metrics of an uninterrupted run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.data import Dataset, Subset

from aqa_framework.engine import distributed as D
from aqa_framework.engine.checkpoint import (
    CHECKPOINTS_DIR,
    Checkpoint,
    checkpoint_epoch,
    copy_checkpoint,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    remove_temporaries,
    save_checkpoint,
)
from aqa_framework.engine.environment import collect_environment
from aqa_framework.engine.loaders import EpochLoader, eval_loader, resolve_num_workers
from aqa_framework.engine.loop import (
    EvalResult,
    NonFiniteGuard,
    NonFiniteLoss,
    StopRequested,
    evaluate,
    train_one_epoch,
)
from aqa_framework.engine.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    load_optimizer_state,
    restore_scheduler,
)
from aqa_framework.engine.precision import (
    configure_backends,
    grad_scaler,
    resolve_device,
    resolve_precision,
)
from aqa_framework.engine.progress import TrainingProgress
from aqa_framework.engine.report import ReportInputs, write_report
from aqa_framework.engine.run_folder import (
    ENVIRONMENT_FILE,
    RESULTS_FILE,
    RunFolder,
    create_run_folder,
    default_run_name,
)
from aqa_framework.engine.run_lock import RunLock
from aqa_framework.engine.seeding import get_rng_state, seed_everything, set_rng_state
from aqa_framework.engine.selection import Selection, describe_selection, resolve_selection
from aqa_framework.engine.signals import GracefulStop, TrainingInterrupted
from aqa_framework.errors import AQAError, CheckpointError, SpecError, TrainingDiverged
from aqa_framework.resolve import ResolvedSpec
from aqa_framework.spec import Spec, dump_spec
from aqa_framework.spec_paths import absolute_paths, absolute_raw_paths

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
    "description",
)


def run_training(
    resolved: ResolvedSpec,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
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
            a run that stopped before its first checkpoint.
        resume: Run folder (or checkpoint folder) of an interrupted run to continue; a run
            that stopped before its first checkpoint starts from the beginning.
        console: Where progress and messages go (default: stderr).

    Raises:
        SpecError: If the spec does not fit the data, or differs from the resumed run's.
        CheckpointError: If the run to resume has no readable checkpoint, the run folder is
            in use by another process, or holds something else than a run.
        TrainingInterrupted: On SIGINT/SIGTERM, after saying how to resume.
    """
    resolved = absolute_paths(resolved)
    spec = resolved.spec
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(spec.train.device, local_rank)
    ctx = D.init_distributed(device.type)
    run = None
    try:
        run = _Run(resolved, ctx, device, console or Console(stderr=True, soft_wrap=True))
        return run.execute(run_dir, resume)
    finally:
        if run is not None:
            run.release()
        D.shutdown(ctx)


@dataclass
class _Data:
    train: Dataset
    val: Dataset | None
    test: Dataset
    targets: Any
    sizes: dict[str, int] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None


def _frame_size(dataset: Any) -> list[int] | None:
    """The dataset's video frame size ``[width, height]`` for ``aqa predict``, if it knows it."""
    try:
        size = dataset.frame_size()
    except (AttributeError, AQAError, OSError):
        return None
    return [int(size[0]), int(size[1])] if size else None


def _spec_dict(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, path))
        else:
            out[path] = v
    return out


def spec_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, str]]:
    """Paths whose values differ between a run's stored spec and a new one (resume check)."""
    a, b = _flatten(stored), _flatten(current)
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
        self.saved_epoch = 0
        self.lock: RunLock | None = None

    def release(self) -> None:
        """Drop the run folder's lock (rank 0)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ setup
    def log(self, message: str) -> None:
        if self.ctx.is_main:
            self.console.print(message, highlight=False, markup=False)

    def _folder(
        self, run_dir: str | Path | None, resume: str | Path | None
    ) -> tuple[RunFolder, Checkpoint | None]:
        """Claim (rank 0) and share the run folder; load the checkpoint to resume."""
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
        spec = self.spec
        ckpt = load_checkpoint(ckpt_path, training_state=True)
        stored = absolute_raw_paths(ckpt.spec, self.resolved)
        problems = spec_differences(stored, _spec_dict(spec))
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
        return folder, ckpt

    def _claim(
        self, run_dir: str | Path | None, resume: str | Path | None
    ) -> tuple[str, str | None]:
        """Rank 0: find or create the run folder and lock it.

        Returns:
            The run folder and the checkpoint to resume from (``None`` for a fresh start).
        """
        spec = self.spec
        if resume is not None:
            resume = Path(resume)
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
        if folder.is_unstarted_run():
            self.log(
                f"{folder.path} holds a run that stopped before its first checkpoint: "
                "starting it again"
            )
        folder.create()
        remove_temporaries(folder.checkpoints)
        return str(folder.path), None

    def _lock(self, folder: RunFolder) -> None:
        self.lock = RunLock(folder.path).acquire()

    def _data(self) -> _Data:
        from aqa_framework.builder import dataset_input_shape, open_dataset
        from aqa_framework.data.subsets import train_val_indices
        from aqa_framework.engine.preflight import check_eval_split

        spec = self.spec
        check_eval_split(self.resolved)
        # Rank 0 opens first: a dataset generated on first use is written once.
        if self.ctx.is_main:
            full = open_dataset(self.resolved, "train", train=True)
        D.barrier(self.ctx)
        if not self.ctx.is_main:
            full = open_dataset(self.resolved, "train", train=True)
        idx = train_val_indices(
            len(full), spec.data.val_fraction, spec.data.train_size, spec.data.subset_seed
        )
        train: Dataset = full if len(idx.train) == len(full) else Subset(full, idx.train)
        val = None
        if idx.val:
            val = Subset(open_dataset(self.resolved, "train", train=False), idx.val)
        test = open_dataset(self.resolved, spec.eval.split, train=False)
        sizes = {"train": len(train), "val": len(idx.val), spec.eval.split: len(test)}
        shape = dataset_input_shape(full)
        if shape is None:  # not declared: one (unaugmented) sample tells
            shape = tuple(test[0]["video"].shape)
        return _Data(train, val, test, full.targets, sizes, shape)

    # ------------------------------------------------------------------ main
    def execute(self, run_dir: str | Path | None, resume: str | Path | None) -> Path:
        spec = self.spec
        heads = {task: head.cls for task, head in self.resolved.heads.items()}
        selection = resolve_selection(spec, has_val=spec.data.val_fraction > 0, heads=heads)
        folder, ckpt = self._folder(run_dir, resume)
        self.folder = folder
        configure_backends(self.device)
        data = self._data()
        if ckpt is not None and ckpt.meta["targets"] != data.targets.model_dump(mode="json"):
            raise CheckpointError(
                f"cannot resume {folder.path}: the dataset's targets changed since the run "
                "started (different classes, score range or vocabulary)"
            )

        from aqa_framework.builder import build_model, count_parameters

        seed_everything(spec.seed)
        model = build_model(
            self.resolved, data.targets, device=self.device, input_shape=data.input_shape
        )
        if spec.train.channels_last:
            model.to_channels_last()
        if self.ctx.world_size > 1:
            seed_everything((spec.seed + 7919 * self.ctx.rank) % 2**32)
        optimizer = build_optimizer(model, spec.train)
        scheduler = build_scheduler(optimizer, spec.train)
        scaler = grad_scaler(self.device, self.precision)

        history: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        start_epoch = 0
        if ckpt is not None:
            load_weights(model, ckpt.model_state, ckpt.path)
            state = ckpt.training_state or {}
            started_epochs = int(ckpt.spec.get("train", {}).get("epochs", spec.train.epochs))
            try:
                load_optimizer_state(optimizer, state["optimizer"])
                if (
                    scheduler is not None
                    and state.get("scheduler") is not None
                    and restore_scheduler(
                        scheduler, state["scheduler"], spec.train, started_epochs, ckpt.epoch
                    )
                ):
                    self.log(
                        f"train.epochs changed from {started_epochs} to {spec.train.epochs}: "
                        f"the learning-rate schedule now spans {spec.train.epochs} epochs "
                        f"(epoch {ckpt.epoch + 1} starts at lr {current_lr(optimizer):.4g})"
                    )
                if state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
            except (KeyError, ValueError, RuntimeError) as exc:
                raise CheckpointError(
                    f"training state in {ckpt.path} does not fit: {exc}"
                ) from None
            rngs = state.get("rng") or []
            if len(rngs) == self.ctx.world_size:
                set_rng_state(rngs[self.ctx.rank])
            else:
                self.log(
                    f"note: the run had {len(rngs)} process(es), now {self.ctx.world_size}; "
                    "random streams restart from the seed"
                )
            history = list(ckpt.meta.get("history", []))[: ckpt.epoch]
            best = ckpt.meta.get("best")
            self._repair_best(folder, ckpt, best)
            start_epoch = ckpt.epoch
            self.saved_epoch = ckpt.epoch
            self.log(f"Resuming {folder.path} after epoch {start_epoch} ({ckpt.path.name})")

        self.history = history
        if self.ctx.is_main:
            self._write_start(folder, ckpt, model, count_parameters)

        forward: Any = model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        eval_forward: Any = model
        if spec.train.compile:
            forward = torch.compile(forward)
            eval_forward = torch.compile(model)

        pin = self.device.type == "cuda"
        workers = resolve_num_workers(spec.data.num_workers, self.device, self.ctx.world_size)
        train_loader = EpochLoader(
            data.train, spec.data.batch_size, workers, spec.seed, self.ctx, pin
        )
        ebs = spec.data.eval_batch_size or spec.data.batch_size
        loaders = {
            "val": eval_loader(data.val, ebs, workers, self.ctx, pin)
            if data.val is not None
            else None,
            spec.eval.split: eval_loader(data.test, ebs, workers, self.ctx, pin),
        }
        self.log(
            f"Data: {', '.join(f'{v} {k}' for k, v in data.sizes.items() if v)} samples | "
            f"device {self.device}, {self.precision}"
            + (f", {self.ctx.world_size} processes" if self.ctx.enabled else "")
        )

        epochs = spec.train.epochs
        meta_base = {
            "spec": _spec_dict(spec),
            "targets": data.targets.model_dump(mode="json"),
            "task_kinds": {t: h.cls.target_kind for t, h in self.resolved.heads.items()},
            "dataset": self.resolved.dataset.name,
            "input_shape": list(data.input_shape) if data.input_shape else None,
            "frame_size": _frame_size(data.test),
            "world_size": self.ctx.world_size,
        }
        started = time.perf_counter()
        enabled = self.ctx.is_main
        with (
            GracefulStop(on_request=self._on_signal) as stop,
            TrainingProgress(self.console, epochs, enabled=enabled) as progress,
        ):
            progress.set_completed_epochs(start_epoch)

            def should_stop() -> bool:
                return D.any_true(stop.requested is not None, self.ctx)

            guard = NonFiniteGuard(spec.train.max_nonfinite_steps)
            for epoch in range(start_epoch, epochs):
                lr = current_lr(optimizer)
                try:
                    stats = train_one_epoch(
                        model=model,
                        forward=forward,
                        loader=train_loader.epoch(epoch),
                        optimizer=optimizer,
                        scaler=scaler,
                        device=self.device,
                        precision=self.precision,
                        ctx=self.ctx,
                        grad_clip=spec.train.grad_clip,
                        max_steps=spec.train.max_steps_per_epoch,
                        progress=progress,
                        should_stop=should_stop,
                        description=f"epoch {epoch + 1}/{epochs}",
                        guard=guard,
                    )
                except StopRequested:
                    self._interrupted(stop.requested or "a signal", epoch + 1, history)
                except NonFiniteLoss as exc:
                    self._diverged(exc, epoch + 1)
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train": stats.losses,
                    "samples_per_s": round(stats.samples_per_second, 3),
                    "time_s": round(stats.seconds, 3),
                }
                if stats.nonfinite_steps:
                    record["nonfinite_steps"] = stats.nonfinite_steps
                if stats.skipped_samples:
                    record["skipped_samples"] = stats.skipped_samples
                last = epoch + 1 == epochs
                is_best = False
                if (epoch + 1) % spec.eval.every == 0 or last:
                    splits = []
                    if data.val is not None:
                        splits.append("val")
                    if spec.eval.track_test or selection.split == spec.eval.split:
                        splits.append(spec.eval.split)
                    for split in splits:
                        res = evaluate(
                            model=model,
                            loader=loaders[split],
                            device=self.device,
                            precision=self.precision,
                            ctx=self.ctx,
                            forward=eval_forward,
                            progress=progress,
                            description=f"eval {split}",
                        )
                        record[split] = res.metrics
                    if selection.split is not None:
                        value = selection.value(record[selection.split])
                        if selection.better(value, best["value"] if best else None):
                            best = {
                                "epoch": epoch + 1,
                                "split": selection.split,
                                "metric": selection.metric,
                                "value": value,
                            }
                            is_best = True
                if selection.split is None:  # the last epoch is the selected one
                    best, is_best = (
                        {
                            "epoch": epoch + 1,
                            "split": None,
                            "metric": selection.metric,
                            "value": None,
                        },
                        False,
                    )
                if scheduler is not None:
                    metric = None
                    if selection.split is not None and selection.split in record:
                        metric = record[selection.split].get(selection.metric)
                    scheduler.step(epoch + 1, metric)
                history.append(record)
                progress.end_epoch(self._summary(record, epochs))
                save = is_best or last or (epoch + 1) % spec.train.checkpoint_every == 0
                if save:
                    self._checkpoint(
                        model,
                        optimizer,
                        scheduler,
                        scaler,
                        meta_base,
                        epoch + 1,
                        record,
                        best,
                        history,
                        is_best or selection.split is None,
                    )
                elif self.ctx.is_main:
                    folder.write_metrics(history)
                if stop.requested is not None and not last:
                    self._interrupted(stop.requested, epoch + 1, history)
        train_seconds = time.perf_counter() - started

        result = self._final(model, eval_forward, loaders[spec.eval.split], best, epochs)
        if self.ctx.is_main:
            self._write_results(
                folder,
                data,
                result,
                selection,
                best,
                history,
                model,
                count_parameters,
                train_seconds,
            )
        D.barrier(self.ctx)
        return folder.path

    # ------------------------------------------------------------------ pieces
    def _repair_best(self, folder: RunFolder, ckpt: Checkpoint, best: dict | None) -> None:
        """Re-create ``best`` from ``last`` if a crash came between writing the two."""
        if not best or best.get("epoch") != ckpt.epoch or ckpt.path.parent != folder.checkpoints:
            return
        if checkpoint_epoch(folder.checkpoints / "best") != ckpt.epoch and self.ctx.is_main:
            copy_checkpoint(folder.checkpoints, ckpt.path.name, "best")
        D.barrier(self.ctx)

    def _on_signal(self, name: str) -> None:
        self.log(f"{name} received: stopping after this step (send SIGINT again to stop now)")

    def _interrupted(self, signame: str, epoch: int, history: list) -> None:
        source = self.resolved.source or "SPEC"
        saved = self.saved_epoch
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
        raise TrainingInterrupted(msg)

    def _diverged(self, exc: NonFiniteLoss, epoch: int) -> None:
        """Stop a run whose loss stayed non-finite, saying what was kept."""
        saved = self.saved_epoch
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

    def _summary(self, record: dict[str, Any], epochs: int) -> str:
        losses = " ".join(f"{k} {v:.4g}" for k, v in record["train"].items())
        text = f"epoch {record['epoch']}/{epochs} loss: {losses}"
        for split in ("val", self.spec.eval.split):
            if split in record:
                shown = list(record[split].items())[:6]
                text += f" | {split} " + " ".join(f"{k} {v:.3f}" for k, v in shown)
        return text + f" | {record['samples_per_s']:.1f} samples/s"

    def _write_start(self, folder: RunFolder, ckpt: Checkpoint | None, model, count) -> None:
        folder.write_spec(dump_spec(self.spec))
        env = collect_environment(self.device, self.precision, self.ctx.world_size)
        env["parameters"] = count(model)
        if ckpt is not None:
            import json

            old_path = folder.file(ENVIRONMENT_FILE)
            old = json.loads(old_path.read_text()) if old_path.is_file() else {}
            resumes = old.pop("resumes", [])
            resumes.append(
                {
                    "time": env["time"],
                    "command": env["command"],
                    "after_epoch": ckpt.epoch,
                    "device": env["device"],
                }
            )
            env = old or env
            env["resumes"] = resumes
        folder.write_json(ENVIRONMENT_FILE, env)
        folder.write_metrics(self.history)
        self.log(f"Run folder: {folder.path}")

    def _checkpoint(
        self, model, optimizer, scheduler, scaler, meta_base, epoch, record, best, history, is_best
    ) -> None:
        rngs = D.gather_objects(get_rng_state(), self.ctx)
        if self.ctx.is_main:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rngs,
            }
            meta = {
                **meta_base,
                "epoch": epoch,
                "metrics": record,
                "best": best,
                "history": history,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            save_checkpoint(
                self.folder.checkpoints,
                "last",
                model.state_dict(),
                meta,
                state,
                also_as=("best",) if is_best else (),
            )
            self.folder.write_metrics(history)
        self.saved_epoch = epoch
        D.barrier(self.ctx)

    def _final(self, model, eval_forward, loader, best, epochs) -> EvalResult:
        if best is not None and best["epoch"] != epochs:
            ckpt = load_checkpoint(self.folder.checkpoints / "best", training_state=False)
            load_weights(model, ckpt.model_state, ckpt.path)
            self.log(
                f"Evaluating epoch {ckpt.epoch} (selected) on the {self.spec.eval.split} split"
            )
        return evaluate(
            model=model,
            loader=loader,
            device=self.device,
            precision=self.precision,
            ctx=self.ctx,
            forward=eval_forward,
            description=f"final {self.spec.eval.split}",
        )

    def _write_results(
        self, folder, data, result, selection: Selection, best, history, model, count, train_seconds
    ) -> None:
        spec = self.spec
        split = spec.eval.split
        # left out when the split was opened, or when loading failed (on_error: skip)
        skipped = sorted({*getattr(data.test, "dropped_keys", []), *result.skipped})
        class_labels = {f: c.labels for f, c in data.targets.classes.items()}
        folder.write_predictions(result.columns(class_labels))
        sentence = describe_selection(
            selection,
            best if selection.split else None,
            spec.train.epochs,
            split,
            data.sizes.get("val", 0),
            spec.data.subset_seed,
        )
        folder.write_json(
            RESULTS_FILE,
            {
                "split": split,
                "samples": len(result.keys),
                "skipped": {"count": len(skipped), "keys": skipped},
                "metrics": result.metrics,
                "epoch": best["epoch"] if best else spec.train.epochs,
                "selection": {
                    "split": selection.split,
                    "metric": selection.metric,
                    "mode": selection.mode,
                    "value": best.get("value") if best else None,
                    "description": sentence,
                },
                "train_time_s": round(train_seconds, 2),
            },
        )
        r = self.resolved
        components = [f"backbone {r.backbone.name}", f"aggregator {r.aggregator.name}"]
        components += [
            f"head {t} -> {h.name} (loss weight {h.loss_weight:g})" for t, h in r.heads.items()
        ]
        write_report(
            folder.path,
            ReportInputs(
                title=folder.path.name,
                description=spec.description,
                spec_source=r.source,
                components=components,
                dataset=f"{r.dataset.name}: "
                + ", ".join(f"{v} {k}" for k, v in data.sizes.items()),
                selection=sentence,
                final_split=split,
                result=result,
                task_kinds={t: h.cls.target_kind for t, h in r.heads.items()},
                history=history,
                environment=[
                    f"device: {self.device} ({self.precision})",
                    f"processes: {self.ctx.world_size}",
                ],
                parameters=count(model),
                wall_time_s=train_seconds,
                samples=spec.eval.report_samples,
                skipped=skipped,
            ),
        )
        table = " ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        left_out = f", {len(skipped)} left out (on_error: skip)" if skipped else ""
        self.log(f"Final {split} metrics ({len(result.keys)} samples{left_out}): {table}")
