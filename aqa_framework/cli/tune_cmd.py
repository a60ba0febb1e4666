"""``aqa tune``: hyperparameter search over a spec with Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aqa_framework.cli.options import SetOption, SpecArg


def tune(
    spec: SpecArg,
    space: Annotated[
        Path,
        typer.Option("--space", help="Search space (YAML: params, trials, pruner).",
                     dir_okay=False, show_default=False),
    ],
    set_: SetOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder of the trials' runs, the default study "
                     "database and best.yaml (default: runs/tune/<spec name>).",
                     show_default=False),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", min=1, help="Trials this process runs (default: the "
                     "space file's 'trials').", show_default=False),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Study database URL shared by the workers, e.g. "
                     "sqlite:///tune.db or postgresql://host/db (default: "
                     "sqlite:///<out>/study.db).", show_default=False),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name (default: the spec file's stem).",
                     show_default=False),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the TPE sampler (give each worker its own).",
                     show_default=False),
    ] = None,
) -> None:
    """Search hyperparameters with Optuna (TPE); prune poor trials after each epoch.

    Each trial trains the spec with its values set (one run folder per trial) and is judged on
    the selection metric on the validation split. Several processes or machines running this
    command with the same --storage and --study share one study. The best trial's spec is
    written to <out>/best.yaml: train it with `aqa run <out>/best.yaml`.
    """
    from aqa_framework.cli.console import err
    from aqa_framework.cli.console import out as console
    from aqa_framework.experiments.tune import StudyOptions, load_space, require_optuna, run_tune

    require_optuna()
    search = load_space(space)
    folder = out or Path("runs") / "tune" / spec.stem

    def report(number: int, state: str, value: float | None) -> None:
        shown = "" if value is None else f" {value:.4f}"
        err.print(f"[bold]tune[/] trial {number}: {state}{shown}", highlight=False)

    summary = run_tune(
        spec, search, folder, overrides=set_ or [], trials=trials,
        study=StudyOptions(storage=storage, name=study, seed=seed), on_trial=report,
    )
    counts: dict[str, int] = {}
    for _n, state, _v, _p in summary.trials:
        counts[state] = counts.get(state, 0) + 1
    console.print(f"Study '{summary.study}' ({summary.storage}): "
                  + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), highlight=False)
    if summary.best_spec is None:
        err.print("[yellow]warning[/] no trial completed yet; no best spec", highlight=False)
        return
    params = ", ".join(f"{k}={v}" for k, v in summary.best_params.items())
    console.print(f"Best ({summary.direction}): {summary.best_value:.4f} with {params}",
                  highlight=False)
    console.print(f"Best spec: {summary.best_spec} (aqa run {summary.best_spec})",
                  highlight=False)


COMMANDS = {"tune": tune}
"""Command name -> function, registered on the root app by :mod:`aqa_framework.cli.main`."""
