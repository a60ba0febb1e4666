"""``aqa runs``: list run folders and compare runs (spec differences, final metrics, curves)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="List run folders and compare runs.", no_args_is_help=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if value is None:
        return "-"
    return str(value)


@app.command("list")
def list_runs(
    folder: Annotated[
        Path, typer.Argument(help="Folder of run folders (output.dir), or one run folder.")
    ] = Path("runs"),
) -> None:
    """List the runs in a folder: status, epochs and final metrics.

    The status is finished, pruned (stopped early by aqa tune), interrupted, failed, stopped
    (no status recorded: still running or killed) or not started.
    """
    from rich.table import Table

    from aqa_framework.cli.console import out
    from aqa_framework.tracking.compare import find_runs

    runs = find_runs(folder)
    if not runs:
        out.print(f"No run folders in {folder}", highlight=False)
        return
    metrics = [m for m in _shown_metrics(runs)]
    table = Table(title=f"Runs in {folder}")
    for col in ("run", "status", "epochs", *metrics):
        table.add_column(col, overflow="fold")
    for r in runs:  # the state in one word (pruned is no failure); the epochs column says when
        done = len(r.history)
        table.add_row(
            r.name, r.state, f"{done}/{r.epochs}", *[_fmt(r.metrics.get(m)) for m in metrics]
        )
    out.print(table)


def _shown_metrics(runs: list[Any], limit: int = 4) -> list[str]:
    from aqa_framework.tracking.compare import metric_names

    names = metric_names(runs)
    selected = [r.selection_metric for r in runs if r.selection_metric]
    first = [m for m in dict.fromkeys(selected) if m in names]
    return (first + [m for m in names if m not in first])[:limit]


@app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to compare.")],
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write the validation curves to this file (.png, .svg, .pdf)."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", "-m", help="Metric of the curves (default: the selection one)."),
    ] = None,
) -> None:
    """Compare runs: a table of their specs' differences and final metrics, and their curves."""
    from rich.table import Table

    from aqa_framework.cli.console import out
    from aqa_framework.tracking.compare import (
        default_curve_metric,
        metric_names,
        plot_curves,
        read_run,
        spec_differences,
    )

    summaries = [read_run(r) for r in runs]
    table = Table(title="Spec differences and final metrics")
    table.add_column("", style="bold", overflow="fold")
    for r in summaries:
        table.add_column(r.name, overflow="fold")
    table.add_row("status", *[r.status for r in summaries])
    table.add_row("evaluated on", *[r.evaluated_on for r in summaries])
    differences = spec_differences(summaries)
    for path, values in differences.items():
        table.add_row(path, *[_fmt(v) for v in values])
    if not differences:
        table.add_row("spec", *["(same)" for _ in summaries])
    table.add_section()
    for name in metric_names(summaries):
        table.add_row(name, *[_fmt(r.metrics.get(name)) for r in summaries])
    out.print(table)
    if plot is not None:
        chosen = metric or default_curve_metric(summaries)
        if chosen is None:
            from aqa_framework.errors import CheckpointError

            raise CheckpointError("no run has evaluated epochs yet: no curve to plot")
        drawn = plot_curves(summaries, chosen, plot)
        out.print(f"Curves of {chosen} ({drawn} run(s)): {plot}", highlight=False)
