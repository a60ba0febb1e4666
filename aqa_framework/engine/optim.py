"""Optimizer and learning-rate schedule, created through timm's factories."""

from __future__ import annotations

from typing import Any

import torch

from aqa_framework.errors import SpecError
from aqa_framework.spec import TrainSpec

# torch optimizers (as timm names them) with a fused single-kernel step on CPU and CUDA.
_FUSED = {"adam", "adamw"}


def build_optimizer(model: torch.nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """``timm.optim.create_optimizer_v2`` from ``train.optimizer``.

    Adam and AdamW use PyTorch's fused implementation (the same update in one kernel per
    step, several times faster than the per-parameter loop) when every parameter is on a CPU
    or CUDA device.

    Raises:
        SpecError: At ``train.optimizer.name`` if timm does not know the optimizer.
    """
    from timm.optim import create_optimizer_v2, list_optimizers

    opt = train.optimizer
    extra: dict[str, Any] = {}
    if opt.name.lower() in _FUSED and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters()
    ):
        extra["fused"] = True
    try:
        return create_optimizer_v2(
            model,
            opt=opt.name,
            lr=opt.lr,
            weight_decay=opt.weight_decay,
            momentum=opt.momentum,
            **extra,
        )
    except ValueError as exc:
        if opt.name.lower() not in list_optimizers():
            some = ", ".join(n for n in ("adam", "adamw", "sgd", "rmsprop", "lamb"))
            raise SpecError(
                [("train.optimizer.name", f"timm has no optimizer {opt.name!r} (e.g. {some})")]
            ) from None
        raise SpecError([("train.optimizer", str(exc))]) from None


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec) -> Any | None:
    """``timm.scheduler.create_scheduler_v2`` from ``train.scheduler`` (``None`` for 'none').

    The schedule is stepped once per epoch with the number of completed epochs.

    Raises:
        SpecError: At ``train.scheduler.name`` if timm does not know the schedule.
    """
    sched = train.scheduler
    if sched.name.lower() in {"none", "constant", ""}:
        return None
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=sched.name,
            num_epochs=train.epochs,
            decay_epochs=sched.decay_epochs,
            decay_rate=sched.decay_rate,
            min_lr=sched.min_lr,
            warmup_epochs=sched.warmup_epochs,
            warmup_lr=min(train.optimizer.lr, 1e-5) if sched.warmup_epochs else 1e-5,
        )
    except ValueError as exc:
        raise SpecError([("train.scheduler.name", str(exc))]) from None
    return scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
