"""``aqa sweep``: run a grid of specs (STL/MTL, backbones, training-set sizes, seeds, folds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aqa_framework.cli.options import SetOption


def sweep(
    sweep_file: Annotated[
        Path,
        typer.Argument(
            help="Sweep file (YAML: base, axes, metrics; replicate, summary).", dir_okay=False
        ),
    ],
    set_: SetOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Sweep folder (default: the file's output, else "
            "runs/sweeps/NAME). Rerunning with the same folder resumes the sweep.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate every run's spec and list the runs; train none."),
    ] = False,
    collect: Annotated[
        bool,
        typer.Option("--collect", help="Only gather the results of finished runs into tables."),
    ] = False,
    launcher: Annotated[
        str | None,
        typer.Option("--launcher", help="Where the points train: local (default), ray or slurm "
                     "(overrides the file's launcher.name).", show_default=False),
    ] = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="CPUs per point (ray, slurm).",
                                               show_default=False)] = None,
    gpus: Annotated[float | None, typer.Option("--gpus", help="GPUs per point (ray, slurm).",
                                               show_default=False)] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address "
                                                "('auto' after `ray start`).",
                                                show_default=False)] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="SLURM partition.",
                                                  show_default=False)] = None,
    time_min: Annotated[int | None, typer.Option("--time", help="SLURM time limit per point "
                                                 "(minutes).", show_default=False)] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="submitit executor: slurm, "
                                                "local or debug.", show_default=False)] = None,
) -> None:
    """Run every point of a sweep (skipping finished ones) and tabulate mean ± std per row.

    Rows average over the replicate axis (seeds, or folds with 'replicate: fold'); with a
    'summary' the table adds rows combining them across one axis (Fisher z for correlations).
    With --launcher ray each point is a Ray task, with --launcher slurm a SLURM job (submitit);
    results land in the same sweep folder and table. Interrupting such a sweep (Ctrl-C,
    SIGTERM) cancels the tasks or jobs that have not finished and keeps the finished ones.
    """
    from aqa_framework.cli.console import err, out
    from aqa_framework.experiments.sweep import (
        load_sweep,
        run_label,
        run_sweep,
        sweep_status,
        tabulate,
    )
    from aqa_framework.resolve import load

    sw = load_sweep(sweep_file)
    flags = {"name": launcher, "cpus": cpus, "gpus": gpus, "address": address,
             "partition": partition, "time_min": time_min, "cluster": cluster}
    chosen = {k: v for k, v in flags.items() if v is not None}
    if chosen:
        from aqa_framework.experiments.launchers import LauncherSpec

        merged = {**sw.file.launcher.model_dump(), **chosen}
        sw.file = sw.file.model_copy(update={"launcher": LauncherSpec.model_validate(merged)})
    folder = output or sw.default_folder()
    overrides = set_ or []
    if dry_run:
        statuses = sweep_status(sw, folder, overrides)
        for s in statuses:
            load(s.run.raw, label=run_label(s.run, str(sweep_file)))
            out.print(f"{s.state:8} {s.run.id}", highlight=False)
        out.print(f"[green]OK[/] {len(statuses)} runs, every spec is valid", highlight=False)
        return

    def event(kind: str, status) -> None:
        verb = {"skip": "finished before", "start": "starting", "resume": "resuming"}.get(kind)
        if verb:
            err.print(f"[bold]sweep[/] {status.run.id}: {verb}", highlight=False)
        elif kind == "done":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(status.metrics.items()))
            err.print(f"[bold]sweep[/] {status.run.id}: finished ({shown})", highlight=False)

    if collect:
        statuses = sweep_status(sw, folder, overrides)
    else:
        try:
            statuses = run_sweep(sw, folder, overrides, on_event=event)
        except BaseException as exc:
            from aqa_framework.experiments.launchers import LaunchInterrupted

            if isinstance(exc, LaunchInterrupted):  # how many Ray tasks / SLURM jobs stopped
                err.print(f"[bold]sweep[/] {exc}", highlight=False)
            if Path(folder).is_dir():  # keep the table of what finished; rerun to resume
                tabulate(sw, sweep_status(sw, folder, overrides)).write(folder)
                err.print(
                    f"[bold]sweep[/] stopped; run the same command again to resume ({folder})",
                    highlight=False,
                )
            raise
    table = tabulate(sw, statuses)
    paths = table.write(folder)
    out.print(table.rich_table())
    for note in table.notes():
        err.print(f"[yellow]warning[/] {note}", highlight=False)
    out.print(f"Sweep folder: {folder} ({', '.join(p.name for p in paths)})", highlight=False)


COMMANDS = {"sweep": sweep}
"""Command name -> function, registered on the root app by :mod:`aqa_framework.cli.main`."""
