"""What a run carries from epoch to epoch, and how it is saved to and restored from a checkpoint.

:class:`TrainState` holds the model, the optimizer, the learning-rate schedule, the gradient
scaler, the per-epoch history and the best epoch so far. :meth:`TrainState.save` writes it as a
checkpoint (with every process's random generator states) and :meth:`TrainState.restore` reads
it back, so that a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqa_framework.engine import distributed as D
from aqa_framework.engine.checkpoint import (
    Checkpoint,
    checkpoint_epoch,
    copy_checkpoint,
    load_weights,
    save_checkpoint,
)
from aqa_framework.engine.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    load_optimizer_state,
    restore_scheduler,
)
from aqa_framework.engine.precision import grad_scaler
from aqa_framework.engine.seeding import get_rng_state, set_rng_state
from aqa_framework.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from aqa_framework.engine.distributed import DistContext
    from aqa_framework.engine.run_folder import RunFolder
    from aqa_framework.spec import TrainSpec


@dataclass
class TrainState:
    """The training state of a run.

    Attributes:
        model: The (unwrapped) multitask model.
        optimizer: Its optimizer.
        scheduler: Its learning-rate schedule (``None`` without one).
        scaler: The gradient scaler (enabled for fp16 only).
        history: One record per completed epoch (what ``metrics.jsonl`` holds).
        best: The selected epoch so far: ``epoch``, ``split``, ``metric``, ``value``
            (``None`` before the first evaluation).
        epoch: Number of completed epochs.
        saved_epoch: The epoch of the last checkpoint written or resumed (0: none yet).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    scaler: torch.amp.GradScaler
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    epoch: int = 0
    saved_epoch: int = 0

    @classmethod
    def for_model(
        cls, model: torch.nn.Module, train: TrainSpec, device: torch.device, precision: str
    ) -> TrainState:
        """A fresh state: the optimizer, schedule and scaler ``train`` asks for.

        Args:
            model: The built model.
            train: The spec's ``train`` section.
            device: Training device.
            precision: ``fp32``, ``bf16`` or ``fp16``.
        """
        optimizer = build_optimizer(model, train)
        scheduler = build_scheduler(optimizer, train)
        return cls(model, optimizer, scheduler, grad_scaler(device, precision))

    # ------------------------------------------------------------------ save
    def training_state(self, rngs: list[Any]) -> dict[str, Any]:
        """The state a checkpoint stores besides the weights.

        Args:
            rngs: The random generator states of every process, by rank.
        """
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rngs,
        }

    def save(
        self,
        folder: RunFolder,
        meta: dict[str, Any],
        ctx: DistContext,
        *,
        also_best: bool = False,
    ) -> None:
        """Write the state as the run's ``last`` checkpoint (rank 0; every rank must call).

        The checkpoint's metadata is ``meta`` plus the epoch, its record, the best epoch, the
        history and the time (``metrics.jsonl`` is rewritten by the ``checkpoint`` event's
        callback, :class:`~aqa_framework.engine.builtin_callbacks.MetricsFileCallback`).

        Args:
            folder: The run folder.
            meta: What every checkpoint of the run stores (spec, targets, ...).
            ctx: Distributed context (the random states of all ranks are gathered).
            also_best: Also store it as the ``best`` checkpoint.
        """
        rngs = D.gather_objects(get_rng_state(), ctx)
        if ctx.is_main:
            meta = {
                **meta,
                "epoch": self.epoch,
                "metrics": self.history[-1] if self.history else {},
                "best": self.best,
                "history": self.history,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            save_checkpoint(
                folder.checkpoints,
                "last",
                self.model.state_dict(),
                meta,
                self.training_state(rngs),
                also_as=("best",) if also_best else (),
            )
        self.saved_epoch = self.epoch
        D.barrier(ctx)

    # ------------------------------------------------------------------ restore
    def restore(
        self,
        ckpt: Checkpoint,
        train: TrainSpec,
        ctx: DistContext,
        log: Callable[[str], None],
    ) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, scaler, random states.

        A schedule whose run had another ``train.epochs`` is rebuilt for the new length
        (:func:`~aqa_framework.engine.optim.restore_scheduler`); random states saved by another
        number of processes are not restored (the streams restart from the seed). Both are
        said through ``log``.

        Args:
            ckpt: The checkpoint, loaded with its training state.
            train: The current spec's ``train`` section.
            ctx: Distributed context (each rank restores its own random states).
            log: Where notes go.

        Raises:
            CheckpointError: If the saved optimizer, schedule or scaler state does not fit.
        """
        load_weights(self.model, ckpt.model_state, ckpt.path)
        state = ckpt.training_state or {}
        started_epochs = int(ckpt.spec.get("train", {}).get("epochs", train.epochs))
        try:
            self._restore_optimization(state, train, started_epochs, ckpt.epoch, log)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"training state in {ckpt.path} does not fit: {exc}") from None
        rngs = state.get("rng") or []
        if len(rngs) == ctx.world_size:
            set_rng_state(rngs[ctx.rank])
        else:
            log(
                f"note: the run had {len(rngs)} process(es), now {ctx.world_size}; "
                "random streams restart from the seed"
            )
        self.history = list(ckpt.meta.get("history", []))[: ckpt.epoch]
        self.best = ckpt.meta.get("best")
        self.epoch = self.saved_epoch = ckpt.epoch

    def _restore_optimization(
        self,
        state: dict[str, Any],
        train: TrainSpec,
        started_epochs: int,
        completed: int,
        log: Callable[[str], None],
    ) -> None:
        """Load the optimizer, schedule and scaler states.

        ``started_epochs`` is ``train.epochs`` of the run that wrote the checkpoint,
        ``completed`` the number of epochs it completed.
        """
        load_optimizer_state(self.optimizer, state["optimizer"])
        if (
            self.scheduler is not None
            and state.get("scheduler") is not None
            and restore_scheduler(
                self.scheduler, state["scheduler"], train, started_epochs, completed
            )
        ):
            log(
                f"train.epochs changed from {started_epochs} to {train.epochs}: "
                f"the learning-rate schedule now spans {train.epochs} epochs "
                f"(epoch {completed + 1} starts at lr {current_lr(self.optimizer):.4g})"
            )
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def repair_best(folder: RunFolder, ckpt: Checkpoint, best: dict | None, ctx: DistContext) -> None:
    """Re-create the ``best`` checkpoint from ``last`` if a crash came between writing the two.

    Args:
        folder: The run folder.
        ckpt: The checkpoint the run resumes from.
        best: The best epoch it records.
        ctx: Distributed context (rank 0 copies; every rank must call).
    """
    if not best or best.get("epoch") != ckpt.epoch or ckpt.path.parent != folder.checkpoints:
        return
    if checkpoint_epoch(folder.checkpoints / "best") != ckpt.epoch and ctx.is_main:
        copy_checkpoint(folder.checkpoints, ckpt.path.name, "best")
    D.barrier(ctx)
