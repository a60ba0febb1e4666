"""The final report of a run: ``report.md`` (and the same as one HTML page, ``report.html``).

It holds the metrics table, a predicted-vs-judged scatter plot, sample commentaries next to
their references and the training history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqa_framework.engine.loop import EvalResult
from aqa_framework.engine.run_folder import REPORT_DIR, REPORT_FILE
from aqa_framework.files import atomic_file, markdown_table, write_text_atomic
from aqa_framework.metrics import spearman


@dataclass
class ReportInputs:
    """Everything the report shows.

    Attributes:
        title: Run name.
        description: The spec's description.
        spec_source: Path of the spec file, if any.
        components: Component lines (``backbone c3d``, ``head score -> score (weight 1)``).
        dataset: One line about the data (name and split sizes).
        selection: Sentence saying which split and metric selected the epoch.
        final_split: Split of the final metrics.
        result: Final predictions and metrics.
        task_kinds: Task -> ``scores``/``classes``/``captions``.
        history: Per-epoch records (``metrics.jsonl``).
        environment: Device, precision and world size lines.
        parameters: Parameter counts by component.
        wall_time_s: Training wall time.
        samples: How many commentaries to show.
        skipped: Keys of the final split's samples left out (``on_error: skip``).
        averaged: With ``select_on: last_mean``, the last epochs' values and their means
            (:class:`~aqa_framework.engine.last_epochs.EpochMean`): the metrics table shows
            the means and a table the per-epoch values; ``result`` is the last epoch's.
    """

    title: str
    description: str
    spec_source: str | None
    components: list[str]
    dataset: str
    selection: str
    final_split: str
    result: EvalResult
    task_kinds: dict[str, str]
    history: list[dict[str, Any]] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    wall_time_s: float | None = None
    samples: int = 8
    skipped: list[str] = field(default_factory=list)
    averaged: Any = None

    def metric_rows(self) -> list[list[Any]]:
        """``[metric, value]`` rows of the reported metrics, sorted by name."""
        metrics = self.averaged.mean if self.averaged is not None else self.result.metrics
        return [[k, v] for k, v in sorted(metrics.items())]

    def epoch_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Header and rows of the averaged epochs' values (empty without ``last_mean``)."""
        if self.averaged is None:
            return [], []
        names = sorted(self.averaged.values)
        rows = [
            [str(e), *(self.averaged.values[m][i] for m in names)]
            for i, e in enumerate(self.averaged.epochs)
        ]
        return ["epoch", *names], [*rows, ["mean", *(self.averaged.mean[m] for m in names)]]


def _fmt(v: Any) -> str:
    if v is None:  # a NaN read back from strict JSON (a resumed run's history)
        return "nan"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return markdown_table(header, [[_fmt(c) for c in row] for row in rows])


def score_columns(result: EvalResult, task_kinds: dict[str, str]) -> list[tuple[str, str]]:
    """``(task, column)`` pairs holding scores (with references)."""
    return [
        (task, col)
        for task, cols in result.predictions.items()
        if task_kinds.get(task) == "scores"
        for col in cols
        if col in result.references.get(task, {})
    ]


def caption_columns(result: EvalResult, task_kinds: dict[str, str]) -> list[tuple[str, str]]:
    """``(task, column)`` pairs holding generated text."""
    return [
        (task, col)
        for task, cols in result.predictions.items()
        if task_kinds.get(task) == "captions"
        for col in cols
    ]


def scatter_plot(result: EvalResult, task_kinds: dict[str, str], path: Path) -> bool:
    """Plot predicted against judged scores (one panel per score); ``False`` if none.

    Matplotlib is imported here, with the non-interactive Agg backend.
    """
    pairs = score_columns(result, task_kinds)
    if not pairs:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4.5), squeeze=False)
    for ax, (task, col) in zip(axes[0], pairs, strict=True):
        pred = [float(v) for v in result.predictions[task][col]]
        ref = [float(v) for v in result.references[task][col]]
        ax.scatter(ref, pred, s=14, alpha=0.7)
        lo, hi = min(ref + pred), max(ref + pred)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        rho = spearman(pred, ref)
        ax.set_title(f"{task}.{col} (Spearman {rho:.3f})")
        ax.set_xlabel("judged")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    try:
        with atomic_file(path, "wb") as f:
            fig.savefig(f, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return True


def _history_table(history: list[dict[str, Any]]) -> str:
    if not history:
        return "No epochs recorded."
    loss_keys: list[str] = []
    metric_keys: list[tuple[str, str]] = []
    for rec in history:
        for k in rec.get("train", {}):
            if k not in loss_keys:
                loss_keys.append(k)
        for split in ("val", "test"):
            for k in rec.get(split, {}):
                if (split, k) not in metric_keys:
                    metric_keys.append((split, k))
    metric_keys = metric_keys[:6]
    header = [
        "epoch",
        "lr",
        *[f"train {k}" for k in loss_keys],
        *[f"{s} {k}" for s, k in metric_keys],
    ]
    rows = []
    for rec in history:
        row = [rec.get("epoch"), rec.get("lr", float("nan"))]
        row += [rec.get("train", {}).get(k, "") for k in loss_keys]
        row += [rec.get(s, {}).get(k, "") for s, k in metric_keys]
        rows.append(row)
    return _table(header, rows)


def write_report(run_dir: str | Path, inputs: ReportInputs) -> Path:
    """Write ``report.md``, ``report/scatter.png`` and ``report.html`` into a run folder.

    Returns:
        The report file.
    """
    run_dir = Path(run_dir)
    r = inputs.result
    parts = [f"# Run report: {inputs.title}", ""]
    if inputs.description:
        parts += [inputs.description.strip(), ""]
    overview = [
        ["spec", inputs.spec_source or "(none)"],
        ["model", "; ".join(inputs.components)],
        ["data", inputs.dataset],
        ["epoch selection", inputs.selection],
    ]
    if inputs.parameters:
        counts = dict(inputs.parameters)
        total = counts.pop("total", None)
        counts.pop("trainable", None)
        total = sum(counts.values()) if total is None else total
        shown = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        overview.append(["parameters", f"{total:,} ({shown})"])
    overview += [[line.split(": ", 1)[0], line.split(": ", 1)[-1]] for line in inputs.environment]
    if inputs.wall_time_s is not None:
        overview.append(["training time", f"{inputs.wall_time_s:.1f} s"])
    parts += [_table(["", ""], overview), ""]

    parts += [f"## Metrics on the {inputs.final_split} split ({len(r.keys)} samples)", ""]
    parts += [inputs.selection, ""]
    if inputs.skipped:
        shown = ", ".join(inputs.skipped[:20])
        more = f" and {len(inputs.skipped) - 20} more" if len(inputs.skipped) > 20 else ""
        parts += [
            f"{len(inputs.skipped)} sample(s) of the split could not be loaded and were left "
            f"out (`on_error: skip`); the metrics cover the {len(r.keys)} others: "
            f"{shown}{more}.",
            "",
        ]
    parts += [_table(["metric", "value"], inputs.metric_rows()), ""]
    header, rows = inputs.epoch_rows()
    if rows:
        what = f"Per-epoch values on the {inputs.final_split} split:"
        parts += [what, "", _table(header, rows), ""]

    scatter = run_dir / REPORT_DIR / "scatter.png"
    if scatter_plot(r, inputs.task_kinds, scatter):
        parts += ["## Predicted vs judged scores", "", f"![scatter]({REPORT_DIR}/scatter.png)", ""]

    caps = caption_columns(r, inputs.task_kinds)
    if caps:
        parts += ["## Sample commentaries", ""]
        for task, col in caps:
            refs = r.references.get(task, {}).get(col, [""] * len(r.keys))
            rows = [
                [r.keys[i], r.predictions[task][col][i], refs[i]]
                for i in range(min(inputs.samples, len(r.keys)))
            ]
            parts += [f"Task `{task}`:", "", _table(["key", "generated", "reference"], rows), ""]

    parts += ["## Training history", "", _history_table(inputs.history), ""]
    path = run_dir / REPORT_FILE
    write_text_atomic(path, "\n".join(parts))
    from aqa_framework.engine.report_html import write_html_report

    write_html_report(run_dir, inputs, scatter if scatter.is_file() else None)
    return path


def final_metrics(run_dir: str | Path) -> dict[str, float]:
    """The final metrics (``task.metric`` -> value) of a finished run folder.

    Raises:
        CheckpointError: If the run has not finished (no ``results.json``) or the file is
            damaged.
    """
    import json

    from aqa_framework import jsonio
    from aqa_framework.engine.run_folder import RESULTS_FILE
    from aqa_framework.errors import CheckpointError

    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"run folder {run_dir} has no final results ({RESULTS_FILE}); the run has not finished"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): jsonio.number(v) for k, v in doc["metrics"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
