"""Optimizer and learning-rate schedule, created through timm's factories."""

from __future__ import annotations

from fnmatch import fnmatchcase
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
    groups = parameter_groups(model, train)
    try:
        return create_optimizer_v2(
            model if groups is None else groups,
            opt=opt.name,
            lr=opt.lr,
            weight_decay=opt.weight_decay,
            momentum=opt.momentum,
            filter_bias_and_bn=not opt.decay_all,
            **extra,
        )
    except ValueError as exc:
        if opt.name.lower() not in list_optimizers():
            some = ", ".join(n for n in ("adam", "adamw", "sgd", "rmsprop", "lamb"))
            raise SpecError(
                [("train.optimizer.name", f"timm has no optimizer {opt.name!r} (e.g. {some})")]
            ) from None
        raise SpecError([("train.optimizer", str(exc))]) from None


def names_module(pattern: str, name: str) -> bool:
    """Whether a module path or fnmatch pattern names the parameter (or module) ``name``.

    ``backbone`` names ``backbone.conv1.weight``; ``heads.*.fc*`` names
    ``heads.score.fc1.bias``.
    """
    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern)


def _no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases and normalisation weights (1-D) get no weight decay, as in timm's default."""
    return param.ndim <= 1 or name.endswith(".bias")


def parameter_groups(model: torch.nn.Module, train: TrainSpec) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups of ``train.param_groups``, or ``None`` without any.

    Each trainable parameter joins the first group one of whose ``modules`` names it (see
    :func:`names_module`), else the default group. A group's learning rate is
    ``train.optimizer.lr x lr_scale`` (timm's schedules then follow each group's own initial
    rate, keeping the ratio at every step). As timm does by default, biases and 1-D weights
    get no weight decay unless ``train.optimizer.decay_all``.

    Raises:
        SpecError: At ``train.param_groups.<i>.modules`` for a path naming no parameter.
    """
    specs = train.param_groups
    if not specs:
        return None
    opt = train.optimizer
    members: list[list[tuple[str, torch.Tensor]]] = [[] for _ in range(len(specs) + 1)]
    used: set[tuple[int, int]] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        index = len(specs)
        for i, group in enumerate(specs):
            hit = next((j for j, pat in enumerate(group.modules) if names_module(pat, name)), None)
            if hit is not None:
                index = i
                used.add((i, hit))
                break
        members[index].append((name, param))
    problems = [
        (f"train.param_groups.{i}.modules", f"{pat!r} names no trainable parameter of the model")
        for i, group in enumerate(specs)
        for j, pat in enumerate(group.modules)
        if (i, j) not in used
    ]
    if problems:
        raise SpecError(problems)
    out: list[dict[str, Any]] = []
    for index in [len(specs), *range(len(specs))]:  # the default group first (current_lr)
        params = members[index]
        group = specs[index] if index < len(specs) else None
        scale = group.lr_scale if group is not None else 1.0
        decay = group.weight_decay if group is not None and group.weight_decay is not None else None
        wd = opt.weight_decay if decay is None else decay
        extra = {"lr": opt.lr * scale} if group is not None else {}
        exempt = bool(wd) and not opt.decay_all
        plain = [p for n, p in params if not (exempt and _no_decay(n, p))]
        free = [p for n, p in params if exempt and _no_decay(n, p)]
        for chosen, value in ((plain, wd), (free, 0.0)):
            if chosen:
                out.append({"params": chosen, "weight_decay": value, **extra})
    return out


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


def _length_keys(train: TrainSpec, other_epochs: int) -> set[str]:
    """Scheduler state entries that depend on ``train.epochs`` (``t_initial`` for cosine)."""
    lr = train.optimizer.lr
    states = []
    for epochs in (train.epochs, other_epochs):
        param = torch.nn.Parameter(torch.zeros(1))
        sched = build_scheduler(
            torch.optim.SGD([param], lr=lr), train.model_copy(update={"epochs": epochs})
        )
        states.append(sched.state_dict() if sched is not None else {})
    a, b = states
    return {k for k in set(a) | set(b) if repr(a.get(k)) != repr(b.get(k))}


def restore_scheduler(
    scheduler: Any, state: dict[str, Any], train: TrainSpec, started_epochs: int, completed: int
) -> bool:
    """Restore a schedule from a checkpoint, rebuilt if ``train.epochs`` changed since.

    With the same number of epochs the saved state is loaded as it is (a resumed run then
    computes exactly what an uninterrupted one does). With another number the schedule is the
    one a run planned with the new ``train.epochs`` from the start would follow: the entries
    of the saved state that depend on the run's length (cosine's ``t_initial``, ...) come from
    the new schedule, the rest from the checkpoint, and the learning rate of the next epoch is
    set from the new schedule. Schedules that do not depend on the length (``step``,
    ``multistep``, ``plateau``) are restored unchanged.

    Args:
        scheduler: The schedule built for the current spec (:func:`build_scheduler`).
        state: The saved ``scheduler.state_dict()``.
        train: The current ``train`` section.
        started_epochs: ``train.epochs`` of the run that wrote the checkpoint.
        completed: Number of epochs completed (the checkpoint's epoch).

    Returns:
        Whether the schedule was rebuilt for a new length.
    """
    if started_epochs == train.epochs:
        scheduler.load_state_dict(state)
        return False
    keys = _length_keys(train, started_epochs)
    fresh = scheduler.state_dict()
    scheduler.load_state_dict({**state, **{k: fresh[k] for k in keys if k in fresh}})
    if not keys:
        return False
    scheduler.step(completed)  # the learning rate of the next epoch, on the new schedule
    return True


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore an optimizer's state with each per-parameter tensor laid out like its parameter.

    ``torch.optim.Optimizer.load_state_dict`` keeps the memory format of the saved tensors
    (checkpoints store them contiguous), so the moments of a ``channels_last_3d`` weight would
    come back in another layout than an uninterrupted run has, and some element-wise kernels
    round differently across layouts. Matching the layout makes a resumed run bit-identical.

    Args:
        optimizer: The optimizer, already holding the (possibly channels-last) parameters.
        state: What ``optimizer.state_dict()`` returned.
    """
    optimizer.load_state_dict(state)
    for param, slots in optimizer.state.items():
        for name, value in slots.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == param.shape
                and value.stride() != param.stride()
            ):
                slots[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
