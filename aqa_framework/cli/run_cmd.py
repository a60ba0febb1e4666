"""``aqa run``: validate a spec, assemble the model, train and evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aqa_framework.cli.options import SetOption, SpecArg


def run(
    spec: SpecArg,
    set_: SetOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted run from its run folder (or a checkpoint in it).",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Write the run folder here instead of output.dir/NAME."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and build, then stop before training.")
    ] = False,
) -> None:
    """Train and evaluate the multitask model a spec describes; writes a run folder."""
    from aqa_framework.cli.console import out
    from aqa_framework.resolve import load

    resolved = load(spec, set_ or [])
    if dry_run:
        from aqa_framework.builder import check_spec

        out.print(f"[green]OK[/] {spec}: {check_spec(resolved)}", highlight=False)
        return
    from aqa_framework.engine.runner import run_training

    folder = run_training(resolved, run_dir=run_dir, resume=resume)
    out.print(f"Run folder: {folder}", highlight=False)


COMMANDS = {"run": run}
"""Command name -> function, registered on the root app by :mod:`aqa_framework.cli.main`."""
