"""The paper protocol ``train.select_on: last_mean``: the mean of the last epochs' test metrics.

MUSDL reports on JIGSAWS the mean of the test Spearman correlation over the last 10 of its
epochs. A run with ``select_on: last_mean`` evaluates the final split (``eval.split``) after
each of its last ``train.last_epochs`` epochs; the metrics it reports are, for every metric,
the arithmetic mean of those per-epoch values (a NaN in any epoch makes the mean NaN; it is
never left out). The per-epoch values live in the run's history, which every checkpoint
stores, so a resumed run averages the values computed before the interruption.
``predictions.csv`` holds the last epoch's predictions.

This is opt-in and labelled: no validation split is involved, and the test split is evaluated
at every one of these epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROTOCOL = "last_mean"
"""The value of ``train.select_on`` (and of ``results.json``'s ``selection.protocol``)."""

CONVENTION = (
    "arithmetic mean of the per-epoch values; a NaN in any epoch makes the mean NaN "
    "(never left out)"
)
"""How the per-epoch values are combined (written to ``results.json``)."""


def window(epochs: int, last_epochs: int) -> list[int]:
    """The epochs (from 1) whose metrics are averaged: the last ``last_epochs`` of ``epochs``."""
    return list(range(max(epochs - last_epochs, 0) + 1, epochs + 1))


def label(split: str, last_epochs: int) -> str:
    """The short name of the protocol, as sweep tables and ``aqa runs compare`` show it."""
    return f"mean of the {split} metrics of the last {last_epochs} epochs (paper protocol)"


def describe(split: str, last_epochs: int, epochs: int) -> str:
    """The report's sentence saying how the metrics were computed."""
    first = epochs - last_epochs + 1
    which = f"epoch {epochs}" if first == epochs else f"epochs {first}-{epochs}"
    return (
        f"Mean of the {split} metrics of the last {last_epochs} epochs ({which} of {epochs}): "
        f"the {split} split was evaluated after each of them and every metric is the "
        "arithmetic mean of its per-epoch values (a NaN in any epoch makes the mean NaN). "
        "This is a paper protocol (MUSDL's JIGSAWS figures), optimistic: no validation split "
        f"is used and the {split} split is seen at every one of these epochs. "
        f"predictions.csv holds the predictions of the last epoch ({epochs})."
    )


@dataclass(frozen=True)
class EpochMean:
    """The per-epoch values of the final split over the last epochs, and their means.

    Attributes:
        split: The averaged split (``eval.split``).
        epochs: The averaged epochs (from 1), in order.
        values: Metric -> its value after each of ``epochs`` (NaN where it was NaN).
        mean: Metric -> the arithmetic mean of its values (NaN if any value is NaN).
    """

    split: str
    epochs: list[int]
    values: dict[str, list[float]]
    mean: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """What ``results.json`` holds under ``last_epochs``."""
        return {
            "split": self.split,
            "epochs": list(self.epochs),
            "per_epoch": {m: list(v) for m, v in self.values.items()},
            "mean": dict(self.mean),
            "convention": CONVENTION,
            "predictions": f"predictions.csv: the last epoch ({self.epochs[-1]})",
        }


def _number(value: Any) -> float:
    """A metric value from the history (``None``, as a checkpoint stores NaN, is NaN)."""
    return math.nan if value is None else float(value)


def missing_epochs(
    history: Sequence[Mapping[str, Any]], split: str, epochs: int, last_epochs: int, done: int
) -> list[int]:
    """The averaged epochs among the first ``done`` whose record has no ``split`` metrics."""
    by_epoch = {int(r.get("epoch", 0)): r for r in history}
    return [
        e
        for e in window(epochs, last_epochs)
        if e <= done and not isinstance(by_epoch.get(e, {}).get(split), Mapping)
    ]


def mean_of_last_epochs(
    history: Sequence[Mapping[str, Any]], split: str, epochs: int, last_epochs: int
) -> EpochMean:
    """Average the ``split`` metrics of the last ``last_epochs`` epochs of a run's history.

    Args:
        history: The run's per-epoch records (``metrics.jsonl``).
        split: The final split, evaluated after each averaged epoch.
        epochs: ``train.epochs``.
        last_epochs: ``train.last_epochs``.

    Raises:
        ValueError: If an averaged epoch has no record of ``split`` (the run did not evaluate
            it, which the engine prevents).
    """
    chosen = window(epochs, last_epochs)
    missing = missing_epochs(history, split, epochs, last_epochs, epochs)
    if missing:
        raise ValueError(
            f"epochs {missing} have no {split} metrics to average (train.select_on: last_mean)"
        )
    by_epoch = {int(r["epoch"]): r[split] for r in history if r.get("epoch") in chosen}
    names = list(dict.fromkeys(m for e in chosen for m in by_epoch[e]))
    values = {m: [_number(by_epoch[e].get(m)) for e in chosen] for m in names}
    mean = {
        m: math.nan if any(math.isnan(x) for x in v) else sum(v) / len(v)
        for m, v in values.items()
    }
    return EpochMean(split=split, epochs=chosen, values=values, mean=mean)
