"""One training epoch and one evaluation pass of a multitask model.

The model follows the :class:`~aqa_framework.model.MultitaskModel` contract:
``forward(video, batch)`` returns ``{task: outputs}``, ``loss(outputs, batch)`` returns
``(total, {task: loss})`` and ``predict(outputs)`` returns ``{task: {column: values}}``; each head
in ``model.heads`` turns a batch into reference columns and a whole split into metrics.
Metrics are reported as ``"<task>.<metric>"``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from aqa_framework.engine.distributed import DistContext, gather_objects, sum_across
from aqa_framework.engine.loaders import to_device
from aqa_framework.engine.precision import autocast
from aqa_framework.engine.progress import TrainingProgress


class StopRequested(Exception):
    """Raised inside an epoch when a stop was requested (the epoch is abandoned)."""


@dataclass
class EpochStats:
    """What one training epoch measured.

    Attributes:
        losses: Mean loss per sample: ``"loss"`` (weighted total) and one per task.
        samples: Samples seen (all ranks).
        seconds: Wall time of the epoch.
    """

    losses: dict[str, float]
    samples: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        """Training throughput."""
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EvalResult:
    """Predictions, references and metrics of one split.

    Attributes:
        keys: Sample keys in split order.
        predictions: ``{task: {column: values}}``.
        references: ``{task: {column: values}}`` (same columns).
        metrics: ``{"task.metric": value}``.
    """

    keys: list[str]
    predictions: dict[str, dict[str, list]]
    references: dict[str, dict[str, list]]
    metrics: dict[str, float] = field(default_factory=dict)

    def columns(self, class_labels: dict[str, list[str]] | None = None) -> dict[str, list]:
        """Table columns: ``key`` then ``<task>.<column>`` and ``<task>.<column>.ref``.

        Args:
            class_labels: Class field -> labels; class indices in those columns are written
                as their labels.
        """
        labels = class_labels or {}
        out: dict[str, list] = {"key": list(self.keys)}
        for task, cols in self.predictions.items():
            refs = self.references.get(task, {})
            for col, values in cols.items():
                names = labels.get(col)
                out[f"{task}.{col}"] = _named(values, names)
                if col in refs:
                    out[f"{task}.{col}.ref"] = _named(refs[col], names)
        return out


def _named(values: list, labels: list[str] | None) -> list:
    if labels is None:
        return list(values)
    return [labels[v] if isinstance(v, int) and 0 <= v < len(labels) else v for v in values]


def _format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in losses.items())


def train_one_epoch(
    *,
    model: nn.Module,
    forward: Callable[..., dict],
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str,
    ctx: DistContext,
    grad_clip: float | None = None,
    max_steps: int | None = None,
    progress: TrainingProgress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    description: str = "train",
) -> EpochStats:
    """Train for one epoch.

    Args:
        model: The (unwrapped) multitask model: its ``loss`` is used.
        forward: What runs the forward pass (the model, its DDP wrapper or compiled form).
        loader: The epoch's DataLoader.
        optimizer: The optimizer.
        scaler: Gradient scaler (enabled for fp16 only).
        device: Training device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        ctx: Distributed context (losses are averaged across ranks).
        grad_clip: Clip the gradient norm to this value.
        max_steps: Stop after this many steps.
        progress: Progress display.
        should_stop: Polled after every step; ``True`` abandons the epoch.
        description: Label of the batch bar.

    Raises:
        StopRequested: When ``should_stop`` returned ``True``.
    """
    model.train()
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    if progress is not None:
        progress.start_bar(description, steps)
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    refresh = 1 if device.type == "cpu" else 10
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        batch = to_device(batch, device)
        video = batch["video"]
        with autocast(device, precision):
            outputs = forward(video, batch)
            total, per_task = model.loss(outputs, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        n = int(video.shape[0])
        seen += n
        for name, value in {"loss": total, **per_task}.items():
            contrib = value.detach().float() * n
            sums[name] = sums[name] + contrib if name in sums else contrib
        if progress is not None and progress.bars and (step % refresh == 0 or step + 1 == steps):
            means = {k: float(v) / seen for k, v in sums.items()}
            rate = seen * ctx.world_size / max(time.perf_counter() - start, 1e-9)
            progress.step(f"{_format_losses(means)} | {rate:.1f} samples/s")
        elif progress is not None:
            progress.step()
        if should_stop():
            raise StopRequested
    seconds = time.perf_counter() - start
    if progress is not None:
        progress.end_bar()
    totals = sum_across({k: float(v) for k, v in sums.items()} | {"__n": float(seen)}, ctx)
    n_all = totals.pop("__n")
    losses = {k: (v / n_all if n_all else math.nan) for k, v in totals.items()}
    ordered = {"loss": losses.pop("loss", math.nan), **losses}
    return EpochStats(ordered, int(n_all), seconds)


@torch.no_grad()
def evaluate(
    *,
    model: nn.Module,
    loader: Any,
    device: torch.device,
    precision: str,
    ctx: DistContext,
    forward: Callable[..., dict] | None = None,
    progress: TrainingProgress | None = None,
    description: str = "eval",
) -> EvalResult:
    """Predict a split, gather the predictions of all ranks and compute every head's metrics.

    Args:
        model: The (unwrapped) multitask model.
        loader: A loader over this rank's shard (see :func:`~.loaders.eval_loader`).
        device: Device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        ctx: Distributed context.
        forward: What runs the forward pass (defaults to the model).
        progress: Progress display.
        description: Label of the batch bar.
    """
    forward = forward or model
    was_training = model.training
    model.eval()
    preds: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    refs: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    keys: list[str] = []
    if progress is not None:
        progress.start_bar(description, len(loader))
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)
        with autocast(device, precision):
            outputs = forward(video, None)
        for task, cols in model.predict(outputs).items():
            for col, values in cols.items():
                preds[task][col].extend(values)
        for task, head in model.heads.items():
            for col, values in head.references(batch).items():
                refs[task][col].extend(values)
        keys.extend(batch["key"])
        if progress is not None:
            progress.step()
    if progress is not None:
        progress.end_bar()
    model.train(was_training)
    local = {
        "keys": keys,
        "preds": {t: dict(c) for t, c in preds.items()},
        "refs": {t: dict(c) for t, c in refs.items()},
    }
    merged = _merge_shards(gather_objects(local, ctx))
    result = EvalResult(merged["keys"], merged["preds"], merged["refs"])
    result.metrics = compute_metrics(model, result.predictions, result.references)
    return result


def _merge_shards(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Interleave per-rank results: rank r's j-th sample is sample ``r + j * world``."""
    if len(shards) == 1:
        return shards[0]
    world = len(shards)
    total = sum(len(s["keys"]) for s in shards)

    def interleave(lists: list[list]) -> list:
        out: list = [None] * total
        for r, values in enumerate(lists):
            out[r::world] = values
        return out

    merged: dict[str, Any] = {"keys": interleave([s["keys"] for s in shards])}
    for part in ("preds", "refs"):
        # in first-seen order; a rank with no samples has no columns
        columns = dict.fromkeys((t, c) for s in shards for t, cols in s[part].items() for c in cols)
        merged[part] = {}
        for task, col in columns:
            lists = [s[part].get(task, {}).get(col, []) for s in shards]
            merged[part].setdefault(task, {})[col] = interleave(lists)
    return merged


def compute_metrics(
    model: nn.Module,
    predictions: dict[str, dict[str, list]],
    references: dict[str, dict[str, list]],
) -> dict[str, float]:
    """Every head's metrics over a split, as ``{"task.metric": value}``."""
    out: dict[str, float] = {}
    for task, head in model.heads.items():
        values = head.metrics(predictions.get(task, {}), references.get(task, {}))
        for name, value in values.items():
            out[f"{task}.{name}"] = float(value)
    return out
