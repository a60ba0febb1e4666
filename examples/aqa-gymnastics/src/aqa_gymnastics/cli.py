"""The ``aqa gymnastics`` command: the podium of a finished run (imported only when it runs)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Gymnastics tools: the podium of a finished run.", no_args_is_help=True)


@app.command("podium")
def podium(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    top: Annotated[int, typer.Option("--top", help="How many places.")] = 3,
    column: Annotated[
        str, typer.Option("--column", help="Predicted score column.")
    ] = "vault.final_score",
) -> None:
    """Print the samples with the highest predicted score of a finished run."""
    path = run / "predictions.csv"
    if not path.is_file():
        raise typer.BadParameter(f"{run} has no predictions.csv; is the run finished?")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and column not in rows[0]:
        raise typer.BadParameter(f"no column {column!r} in {path}; columns: {', '.join(rows[0])}")
    ranked = sorted(rows, key=lambda r: -float(r[column]))[:top]
    for place, row in enumerate(ranked, 1):
        ref = row.get(f"{column}.ref", "")
        typer.echo(f"{place}. {row['key']} {float(row[column]):.3f} (judged {ref})")
