"""What a finished run writes: ``predictions.csv``, ``results.json`` and ``report.md``.

:func:`write_results` takes the final evaluation (:class:`RunResults`) and writes the three
files into the run folder; it returns the line the run prints at its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqa_framework.engine.report import ReportInputs, write_report
from aqa_framework.engine.run_folder import RESULTS_FILE, RunFolder
from aqa_framework.engine.selection import Selection, describe_selection

if TYPE_CHECKING:
    from aqa_framework.engine.last_epochs import EpochMean
    from aqa_framework.engine.loop import EvalResult
    from aqa_framework.resolve import ResolvedSpec


@dataclass
class RunResults:
    """The outcome of a run, as the results writer needs it.

    Attributes:
        result: The final evaluation (of the selected epoch, on ``eval.split``).
        selection: How the epoch was chosen.
        averaged: With ``select_on: last_mean``, the per-epoch values of the last epochs and
            their means, which are then the reported metrics (``result`` is the last
            epoch's evaluation, written to ``predictions.csv``).
        best: The selected epoch (see :attr:`TrainState.best
            <aqa_framework.engine.train_state.TrainState.best>`).
        history: One record per epoch.
        sizes: Samples per split (``train``, ``val``, the final split).
        class_labels: Class field -> labels (written instead of class indices).
        dropped: Keys of the final split's samples left out when it was opened
            (``on_error: skip``).
        parameters: Parameter counts by component.
        train_seconds: Wall time of the training.
        environment: Lines describing where it ran (device, processes).
    """

    result: EvalResult
    selection: Selection
    best: dict[str, Any] | None
    history: list[dict[str, Any]]
    sizes: dict[str, int]
    class_labels: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    train_seconds: float = 0.0
    environment: list[str] = field(default_factory=list)
    averaged: EpochMean | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The reported metrics: the means of the last epochs, else the final evaluation's."""
        if self.averaged is not None:
            return dict(self.averaged.mean)
        return dict(self.result.metrics)

    @property
    def skipped(self) -> list[str]:
        """Keys left out of the final split: when it was opened or when loading failed."""
        return sorted({*self.dropped, *self.result.skipped})


def write_results(folder: RunFolder, resolved: ResolvedSpec, results: RunResults) -> str:
    """Write the predictions, ``results.json`` and the report of a finished run.

    Args:
        folder: The run folder.
        resolved: The run's resolved spec.
        results: The final evaluation and what the report says about the run.

    Returns:
        The line summarising the final metrics.
    """
    spec = resolved.spec
    result = results.result
    folder.write_predictions(result.columns(results.class_labels))
    sentence = describe_selection(
        results.selection,
        results.best if results.selection.split else None,
        spec.train.epochs,
        spec.eval.split,
        results.sizes.get("val", 0),
        spec.data.subset_seed,
    )
    folder.write_json(RESULTS_FILE, _results_json(resolved, results, sentence))
    write_report(folder.path, _report_inputs(folder, resolved, results, sentence))
    skipped = results.skipped
    table = " ".join(f"{k} {v:.4f}" for k, v in results.metrics.items())
    left_out = f", {len(skipped)} left out (on_error: skip)" if skipped else ""
    averaged = results.averaged
    what = (
        f"Mean of the {spec.eval.split} metrics of the last {len(averaged.epochs)} epochs"
        if averaged is not None
        else f"Final {spec.eval.split} metrics"
    )
    return f"{what} ({len(result.keys)} samples{left_out}): {table}"


def _results_json(resolved: ResolvedSpec, results: RunResults, sentence: str) -> dict[str, Any]:
    """The content of ``results.json``."""
    spec = resolved.spec
    best, selection, skipped = results.best, results.selection, results.skipped
    doc: dict[str, Any] = {
        "split": spec.eval.split,
        "samples": len(results.result.keys),
        "skipped": {"count": len(skipped), "keys": skipped},
        "metrics": results.metrics,
        "epoch": best["epoch"] if best else spec.train.epochs,
        "selection": {
            "split": selection.split,
            "metric": selection.metric,
            "mode": selection.mode,
            "value": best.get("value") if best else None,
            "protocol": selection.protocol,
            "description": sentence,
        },
        "train_time_s": round(results.train_seconds, 2),
    }
    if results.averaged is not None:
        from aqa_framework.engine.last_epochs import label

        doc["selection"]["last_epochs"] = selection.last_epochs
        doc["selection"]["label"] = label(spec.eval.split, selection.last_epochs)
        doc["last_epochs"] = {
            **results.averaged.to_json(),
            "last_epoch_metrics": dict(results.result.metrics),
        }
    return doc


def _report_inputs(
    folder: RunFolder, resolved: ResolvedSpec, results: RunResults, sentence: str
) -> ReportInputs:
    """What ``report.md`` shows."""
    spec, r = resolved.spec, resolved
    components = [f"backbone {r.backbone.name}", f"aggregator {r.aggregator.name}"]
    components += [
        f"head {t} -> {h.name} (loss weight {h.loss_weight:g})" for t, h in r.heads.items()
    ]
    return ReportInputs(
        title=folder.path.name,
        description=spec.description,
        spec_source=r.source,
        components=components,
        dataset=f"{r.dataset.name}: " + ", ".join(f"{v} {k}" for k, v in results.sizes.items()),
        selection=sentence,
        final_split=spec.eval.split,
        result=results.result,
        averaged=results.averaged,
        task_kinds={t: h.cls.target_kind for t, h in r.heads.items()},
        history=results.history,
        environment=results.environment,
        parameters=results.parameters,
        wall_time_s=results.train_seconds,
        samples=spec.eval.report_samples,
        skipped=results.skipped,
    )
