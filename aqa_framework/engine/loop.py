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

from aqa_framework.data.partners import PARTNERS, partner_keys
from aqa_framework.data.skipping import SKIPPED
from aqa_framework.engine import distributed as D
from aqa_framework.engine.distributed import DistContext, gather_objects, sum_across
from aqa_framework.engine.loaders import to_device
from aqa_framework.engine.precision import autocast
from aqa_framework.engine.progress import TrainingProgress
from aqa_framework.errors import DataError


class StopRequested(Exception):
    """Raised inside an epoch when a stop was requested (the epoch is abandoned)."""


class NonFiniteLoss(Exception):
    """Raised inside an epoch when too many consecutive steps had a NaN or infinite loss.

    Attributes:
        steps: Consecutive non-finite steps (``train.max_nonfinite_steps``).
        step: 1-based step of the epoch at which training stopped.
        what: Which values were not finite, e.g. ``"loss nan (score nan)"``.
    """

    def __init__(self, steps: int, step: int, what: str) -> None:
        self.steps = steps
        self.step = step
        self.what = what
        super().__init__(f"{what} for {steps} consecutive steps")


@dataclass
class NonFiniteGuard:
    """Counts consecutive training steps whose loss or gradient was NaN or infinite.

    Such a step never updates the weights (nor the optimizer state). The count carries over
    epoch ends; a finite step resets it.

    Attributes:
        limit: Consecutive non-finite steps that stop training (``None``: never stop).
        consecutive: The current run of non-finite steps.
    """

    limit: int | None = 10
    consecutive: int = 0


@dataclass
class EpochStats:
    """What one training epoch measured.

    Attributes:
        losses: Mean loss per sample over the steps that updated the weights: ``"loss"``
            (weighted total) and one per task (NaN if no step did).
        samples: Samples seen (all ranks).
        seconds: Wall time of the epoch.
        nonfinite_steps: Steps skipped because the loss or gradient was NaN or infinite.
        skipped_samples: Samples left out because they could not be loaded
            (``on_error: skip``).
    """

    losses: dict[str, float]
    samples: int
    seconds: float
    nonfinite_steps: int = 0
    skipped_samples: int = 0

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
        metrics: ``{"task.metric": value}``, over the samples in ``keys``.
        skipped: Keys of the samples that could not be loaded and were left out
            (``on_error: skip``).
        exemplars: With ``data.partners``: each sample's exemplar keys, joined by ``;``
            (empty without partners).
    """

    keys: list[str]
    predictions: dict[str, dict[str, list]]
    references: dict[str, dict[str, list]]
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    exemplars: list[str] = field(default_factory=list)

    def columns(self, class_labels: dict[str, list[str]] | None = None) -> dict[str, list]:
        """Table columns: ``key``, ``<task>.<column>``, ``<task>.<column>.ref`` (``exemplars``).

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
        if self.exemplars:
            out["exemplars"] = list(self.exemplars)
        return out


def _named(values: list, labels: list[str] | None) -> list:
    if labels is None:
        return list(values)
    return [labels[v] if isinstance(v, int) and 0 <= v < len(labels) else v for v in values]


def _format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _describe_nonfinite(total: torch.Tensor, per_task: dict[str, torch.Tensor]) -> str:
    """``"the loss was nan (score nan)"``, naming the tasks whose loss was not finite."""
    value = float(total.detach())
    if math.isfinite(value):  # another process's loss, or the gradient
        return "the loss or the gradient norm was not finite"
    values = {k: float(v.detach()) for k, v in per_task.items()}
    bad = ", ".join(f"{k} {v:g}" for k, v in values.items() if not math.isfinite(v))
    return f"the loss was {value:g}" + (f" ({bad})" if bad else "")


def _gradients_finite(model: nn.Module, grad_clip: float | None) -> bool:
    """Clip the gradient norm (if asked) and say whether it is finite."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return True
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return bool(torch.isfinite(norm))


def partner_inputs(batch: Any, device: torch.device | None = None) -> dict[str, Any]:
    """``{"partners": ...}`` for the model's forward when the batch carries exemplars, else ``{}``.

    Models written without partners keep being called as ``forward(video, batch)``.
    """
    if not isinstance(batch, dict) or PARTNERS not in batch:
        return {}
    partners = batch[PARTNERS]
    return {"partners": to_device(partners, device) if device is not None else partners}


def _never() -> bool:
    return False


@dataclass(frozen=True)
class StepReport:
    """What one training step did (for the ``step_end`` event).

    Attributes:
        step: The step, from 1.
        steps: Steps of the epoch.
        losses: This step's losses (``loss`` then per task; empty for a step with no sample).
        updated: Whether the weights were updated.
        mean_losses: The epoch's mean losses so far.
        samples_per_s: Throughput so far (all processes).
    """

    step: int
    steps: int
    losses: dict[str, float]
    updated: bool
    mean_losses: dict[str, float]
    samples_per_s: float


@dataclass
class EpochOptions:
    """How :func:`train_one_epoch` trains, besides what it trains with.

    Attributes:
        grad_clip: Clip the gradient norm to this value.
        max_steps: Stop after this many steps.
        progress: Progress display.
        should_stop: Polled after every step; ``True`` abandons the epoch.
        description: Label of the batch bar.
        guard: Counter of consecutive non-finite steps (default: a fresh one, limit 10).
        on_step: Called after every step with a :class:`StepReport` (the ``step_end``
            training event).
    """

    grad_clip: float | None = None
    max_steps: int | None = None
    progress: TrainingProgress | None = None
    should_stop: Callable[[], bool] = _never
    description: str = "train"
    guard: NonFiniteGuard | None = None
    on_step: Callable[[StepReport], None] | None = None

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = NonFiniteGuard()


@dataclass
class _EpochRun:
    """The training steps of one epoch and what they add up to."""

    model: nn.Module
    forward: Callable[..., dict]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    ctx: DistContext
    options: EpochOptions
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    seen: int = 0
    counted: int = 0  # samples of the steps that updated the weights
    nonfinite_steps: int = 0
    skipped_samples: int = 0
    start: float = field(default_factory=time.perf_counter)
    last: dict[str, float] = field(default_factory=dict)  # the last step's losses
    last_updated: bool = False

    def step(self, step: int, batch: Any) -> bool:
        """Train on one batch; ``False`` if every process's batch had no sample to train on.

        Raises:
            NonFiniteLoss: When ``guard.limit`` consecutive steps were not finite.
        """
        self.skipped_samples += len(batch.get(SKIPPED, ())) if isinstance(batch, dict) else 0
        # a batch whose every sample was left out (on_error: skip): every rank skips the step
        self.last, self.last_updated = {}, False
        if D.any_true(isinstance(batch, dict) and "video" not in batch, self.ctx):
            return False
        total, per_task, n = self._backward(to_device(batch, self.device))
        self.seen += n
        if self.options.on_step is not None:
            self.last = {k: float(v.detach()) for k, v in {"loss": total, **per_task}.items()}
        if self._finite(total):
            self._update(total, per_task, n)
            self.last_updated = True
        else:
            self._reject(step, total, per_task)
        return True

    def report(self, step: int, steps: int) -> None:
        """Send the ``step_end`` report of ``step`` (from 0) to ``options.on_step``."""
        on_step = self.options.on_step
        if on_step is None:
            return
        means = {k: float(v) / max(self.counted, 1) for k, v in self.sums.items()}
        rate = self.seen * self.ctx.world_size / max(time.perf_counter() - self.start, 1e-9)
        on_step(StepReport(step + 1, steps, self.last, self.last_updated, means, rate))

    def _backward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """Forward pass, loss and gradients; returns the losses and the batch size."""
        video = batch["video"]
        with autocast(self.device, self.precision):
            outputs = self.forward(video, batch, **partner_inputs(batch))
            total, per_task = self.model.loss(outputs, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        return total, per_task, int(video.shape[0])

    def _finite(self, total: torch.Tensor) -> bool:
        """Whether the step may update the weights (clipping the gradients if asked)."""
        grad_clip = self.options.grad_clip
        # every rank takes the same decision (DDP: the gradients are already averaged)
        finite = not D.any_true(not bool(torch.isfinite(total.detach())), self.ctx)
        if finite and grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
        if finite and self.precision != "fp16":
            finite = _gradients_finite(self.model, grad_clip)
        elif finite and grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        return finite

    def _update(self, total: torch.Tensor, per_task: dict[str, torch.Tensor], n: int) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.options.guard.consecutive = 0
        self.counted += n
        for name, value in {"loss": total, **per_task}.items():
            contrib = value.detach().float() * n
            self.sums[name] = self.sums[name] + contrib if name in self.sums else contrib

    def _reject(self, step: int, total: torch.Tensor, per_task: dict[str, torch.Tensor]) -> None:
        """A non-finite step: no update; stop after ``guard.limit`` in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        for name in ("loss", *per_task):  # the epoch still reports every loss (NaN)
            self.sums.setdefault(name, torch.zeros((), device=self.device))
        self.nonfinite_steps += 1
        guard = self.options.guard
        guard.consecutive += 1
        if guard.limit is not None and guard.consecutive >= guard.limit:
            if self.options.progress is not None:
                self.options.progress.end_bar()
            raise NonFiniteLoss(guard.consecutive, step + 1, _describe_nonfinite(total, per_task))

    def show(self, step: int, steps: int) -> None:
        """Advance the batch bar (with the running losses and throughput now and then)."""
        progress = self.options.progress
        if progress is None:
            return
        refresh = 1 if self.device.type == "cpu" else 10
        if progress.bars and (step % refresh == 0 or step + 1 == steps):
            means = {k: float(v) / max(self.counted, 1) for k, v in self.sums.items()}
            rate = self.seen * self.ctx.world_size / max(time.perf_counter() - self.start, 1e-9)
            progress.step(f"{_format_losses(means)} | {rate:.1f} samples/s")
        else:
            progress.step()

    def stats(self, seconds: float) -> EpochStats:
        """The epoch's losses and counts, summed over every process."""
        totals = sum_across(
            {k: float(v) for k, v in self.sums.items()}
            | {
                "__n": float(self.seen),
                "__counted": float(self.counted),
                "__steps": float(self.nonfinite_steps),
                "__samples": float(self.skipped_samples),
            },
            self.ctx,
        )
        n_all = totals.pop("__n")
        n_counted = totals.pop("__counted")
        nonfinite = int(totals.pop("__steps")) // max(self.ctx.world_size, 1)
        left_out = int(totals.pop("__samples"))
        losses = {k: (v / n_counted if n_counted else math.nan) for k, v in totals.items()}
        ordered = {"loss": losses.pop("loss", math.nan), **losses}
        return EpochStats(ordered, int(n_all), seconds, nonfinite, left_out)


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
    **options: Any,
) -> EpochStats:
    """Train for one epoch.

    A step whose loss (on any rank) or gradient norm is NaN or infinite does not update the
    weights; ``guard`` counts such steps and stops training after ``guard.limit`` in a row.
    With fp16 the gradient scaler handles overflowing gradients itself (only the loss is
    checked).

    Args:
        model: The (unwrapped) multitask model: its ``loss`` is used.
        forward: What runs the forward pass (the model, its DDP wrapper or compiled form).
        loader: The epoch's DataLoader.
        optimizer: The optimizer.
        scaler: Gradient scaler (enabled for fp16 only).
        device: Training device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        ctx: Distributed context (losses are averaged across ranks).
        **options: The fields of :class:`EpochOptions`, by name: ``grad_clip``,
            ``max_steps``, ``progress``, ``should_stop``, ``description``, ``guard``,
            ``on_step``.

    Raises:
        StopRequested: When ``should_stop`` returned ``True``.
        NonFiniteLoss: When ``guard.limit`` consecutive steps were not finite.
        TypeError: For an option :class:`EpochOptions` does not have.
    """
    opts = EpochOptions(**options)
    model.train()
    steps = len(loader) if opts.max_steps is None else min(len(loader), opts.max_steps)
    if opts.progress is not None:
        opts.progress.start_bar(opts.description, steps)
    run = _EpochRun(model, forward, optimizer, scaler, device, precision, ctx, opts)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        if not run.step(step, batch):
            if opts.progress is not None:
                opts.progress.step()
            run.report(step, steps)
            continue
        run.show(step, steps)
        run.report(step, steps)
        if opts.should_stop():
            raise StopRequested
    seconds = time.perf_counter() - run.start
    if opts.progress is not None:
        opts.progress.end_bar()
    return run.stats(seconds)


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

    Samples the dataset could not load (``on_error: skip``) are left out: the metrics cover
    the samples evaluated, and :attr:`EvalResult.skipped` names the others.

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
    skipped: list[str] = []
    exemplars: list[str] = []
    if progress is not None:
        progress.start_bar(description, len(loader))
    for batch in loader:
        skipped.extend(batch.get(SKIPPED, ()) if isinstance(batch, dict) else ())
        if isinstance(batch, dict) and "video" not in batch:  # every sample left out
            if progress is not None:
                progress.step()
            continue
        video = batch["video"].to(device, non_blocking=True)
        with autocast(device, precision):
            outputs = forward(
                video, None, **partner_inputs(batch, device), mask=_mask(batch, device)
            )
        exemplars.extend(";".join(k) for k in partner_keys(batch) or [])
        for task, cols in model.predict(outputs, batch).items():
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
        "skipped": skipped,
        "exemplars": exemplars,
    }
    shards = gather_objects(local, ctx)
    merged = _merge_shards(shards)
    left_out = sorted(k for s in shards for k in s["skipped"])
    if not merged["keys"] and left_out:
        raise DataError(
            f"{description}: none of the {len(left_out)} samples could be loaded "
            f"(first: {', '.join(left_out[:3])})"
        )
    result = EvalResult(merged["keys"], merged["preds"], merged["refs"], skipped=left_out)
    result.exemplars = merged.get("exemplars") or []
    result.metrics = compute_metrics(model, result.predictions, result.references)
    return result


def _merge_shards(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Interleave per-rank results: rank r's j-th sample is sample ``r + j * world``."""
    if len(shards) == 1:
        return shards[0]
    world = len(shards)
    total = sum(len(s["keys"]) for s in shards)
    if any(s.get("skipped") for s in shards):
        # samples were left out: the shards no longer interleave, so concatenate them
        merged = {
            "keys": [k for s in shards for k in s["keys"]],
            "exemplars": [k for s in shards for k in s.get("exemplars", [])],
        }
        for part in ("preds", "refs"):
            columns = dict.fromkeys(
                (t, c) for s in shards for t, cols in s[part].items() for c in cols
            )
            merged[part] = {}
            for task, col in columns:
                values = [v for s in shards for v in s[part].get(task, {}).get(col, [])]
                merged[part].setdefault(task, {})[col] = values
        return merged

    def interleave(lists: list[list]) -> list:
        out: list = [None] * total
        for r, values in enumerate(lists):
            out[r::world] = values
        return out

    merged: dict[str, Any] = {"keys": interleave([s["keys"] for s in shards])}
    if any(s.get("exemplars") for s in shards):
        merged["exemplars"] = interleave([s.get("exemplars", []) for s in shards])
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


def _mask(batch: Any, device: Any) -> Any:
    """The batch's ``video_mask`` (padded feature sequences) on ``device``, or ``None``."""
    mask = batch.get("video_mask") if isinstance(batch, dict) else None
    return mask.to(device, non_blocking=True) if mask is not None else None

