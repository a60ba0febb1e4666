"""Which epoch a run reports, and how the report says it was chosen.

The default protocol is honest: the epoch is picked on a validation split carved from the
training split (``data.val_fraction``), or, without one, the last epoch is reported. The test
split is then used once, for the final evaluation. Picking the epoch on the test split (what the
published code of MTL-AQA and its successors does) is available as ``train.select_on: test``
and is labelled optimistic in the report; so is ``train.select_on: last_mean``, which reports
the mean of the test metrics of the last ``train.last_epochs`` epochs (:mod:`.last_epochs`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aqa_framework.errors import SpecError
from aqa_framework.metrics import direction_from_name
from aqa_framework.spec import Spec


@dataclass(frozen=True)
class Selection:
    """How the best epoch is chosen.

    Attributes:
        split: ``"val"``, the final split (``eval.split``) or ``None`` (the last epoch is
            reported).
        metric: ``task.metric`` compared across epochs.
        mode: ``"max"`` or ``"min"``.
        last_epochs: With ``select_on: last_mean``, the number of final epochs whose
            final-split metrics are averaged (``split`` is then ``None``); 0 otherwise.
    """

    split: str | None
    metric: str
    mode: str
    last_epochs: int = 0

    @property
    def protocol(self) -> str:
        """``val``, ``test`` (the epoch chosen on that split), ``last`` or ``last_mean``."""
        if self.last_epochs:
            return "last_mean"
        if self.split is None:
            return "last"
        return "val" if self.split == "val" else "test"

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats the best so far (NaN never does)."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if self.mode == "max" else value < best

    def value(self, metrics: dict[str, float]) -> float:
        """The selection metric from an evaluation.

        Raises:
            SpecError: At ``train.select_metric`` if the heads do not report it.
        """
        if self.metric not in metrics:
            raise SpecError(
                [
                    (
                        "train.select_metric",
                        f"no metric {self.metric!r}; the heads report: "
                        + ", ".join(sorted(metrics)),
                    )
                ]
            )
        return float(metrics[self.metric])


def resolve_selection(
    spec: Spec, has_val: bool, heads: Mapping[str, type] | None = None
) -> Selection:
    """The selection protocol a spec asks for.

    With ``train.select_mode: auto`` the direction is the one the selected task's head
    declares (:meth:`~aqa_framework.interfaces.TaskHead.metric_direction`); without the
    head's class, the name rule :func:`aqa_framework.metrics.direction_from_name`.

    Args:
        spec: The validated spec.
        has_val: Whether the run has a validation split.
        heads: Task name -> head class (the resolved spec's heads).

    Raises:
        SpecError: If ``select_on: val`` has no validation split, ``select_on: last_mean``
            averages more epochs than the run has, or the metric names no task.
    """
    tr = spec.train
    task = tr.select_metric.split(".", 1)[0]
    if "." not in tr.select_metric or task not in spec.model.heads:
        raise SpecError(
            [
                (
                    "train.select_metric",
                    f"{tr.select_metric!r} must be <task>.<metric> with a task of model.heads "
                    f"({', '.join(spec.model.heads)}), e.g. "
                    f"{next(iter(spec.model.heads))}.spearman",
                )
            ]
        )
    on = tr.select_on
    if on == "val" and not has_val:
        raise SpecError(
            [("train.select_on", "'val' needs a validation split: set data.val_fraction > 0")]
        )
    if on == "last_mean" and tr.last_epochs > tr.epochs:
        raise SpecError(
            [
                (
                    "train.last_epochs",
                    f"is {tr.last_epochs}, but the run has only train.epochs = {tr.epochs} "
                    f"epochs to average; give at most {tr.epochs} (or more train.epochs)",
                )
            ]
        )
    split = {"auto": "val" if has_val else None, "val": "val", "test": spec.eval.split}.get(on)
    mode = tr.select_mode
    if mode == "auto":
        metric_name = tr.select_metric.split(".", 1)[1]
        head = (heads or {}).get(task)
        direction = getattr(head, "metric_direction", direction_from_name)
        mode = direction(metric_name)
    return Selection(
        split, tr.select_metric, mode, tr.last_epochs if on == "last_mean" else 0
    )


def describe_selection(
    selection: Selection,
    best: dict[str, Any] | None,
    epochs: int,
    final_split: str,
    val_size: int = 0,
    subset_seed: int = 0,
) -> str:
    """One sentence for the report: which split picked the epoch, and by what."""
    if selection.last_epochs:
        from aqa_framework.engine.last_epochs import describe

        return describe(final_split, selection.last_epochs, epochs)
    if selection.split is None or best is None:
        return (
            f"No epoch selection: the last epoch ({epochs}) is reported; the {final_split} "
            "split was used only for this final evaluation."
        )
    better = "higher" if selection.mode == "max" else "lower"
    how = f"by {selection.metric} = {best['value']:.4f} ({better} is better)"
    if selection.split == "val":
        return (
            f"Epoch {best['epoch']} of {epochs} was selected on the validation split "
            f"({val_size} samples held out from the training split, data.subset_seed="
            f"{subset_seed}) {how}; the {final_split} split was used only for this final "
            "evaluation."
        )
    return (
        f"Epoch {best['epoch']} of {epochs} was selected on the {selection.split} split {how}, "
        f"the protocol of published AQA code: these {final_split} metrics are optimistic "
        "because the same split picked the epoch."
    )
