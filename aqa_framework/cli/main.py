"""Entry point of the ``aqa`` command and its single error boundary."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from aqa_framework import __version__
from aqa_framework.cli import (
    data_cmd,
    eval_cmd,
    features_cmd,
    plugins_cmd,
    probe_cmd,
    run_cmd,
    runs_cmd,
    spec_cmd,
    sweep_cmd,
    tune_cmd,
)
from aqa_framework.cli.commands import PluginCommandsGroup

app = typer.Typer(
    name="aqa",
    cls=PluginCommandsGroup,
    help="Action Quality Assessment: train, evaluate and apply multitask video models "
    "assembled from a YAML spec.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aqa-framework {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Action Quality Assessment: train, evaluate and apply multitask video models."""


app.add_typer(plugins_cmd.app, name="plugins")
app.add_typer(spec_cmd.app, name="spec")
app.add_typer(data_cmd.app, name="data")
app.add_typer(features_cmd.app, name="features")
app.command("validate")(spec_cmd.validate)
for _name, _fn in {**run_cmd.COMMANDS, **eval_cmd.COMMANDS}.items():
    app.command(_name)(_fn)
for _name, _fn in {**sweep_cmd.COMMANDS, **tune_cmd.COMMANDS, **probe_cmd.COMMANDS}.items():
    app.command(_name)(_fn)
app.add_typer(probe_cmd.baseline_app, name="baseline")
app.add_typer(runs_cmd.app, name="runs")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: one clear message and exit 1 on any error (``AQA_DEBUG=1`` for tracebacks).

    Ctrl-C exits with status 130 and no traceback: the first one interrupts the command (or
    asks a training run to stop after its step), a second one, wherever it arrives (cleanup,
    worker shutdown, the interpreter's exit), prints ``stopping now`` and ends the process at
    once (:func:`aqa_framework.engine.signals.cli_interrupts`).

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``; without them the process is the ``aqa``
            program and keeps the Ctrl-C handling until it ends).
    """
    from aqa_framework.engine.signals import EXIT_INTERRUPTED, cli_interrupts
    from aqa_framework.env import env_flag

    debug = env_flag("AQA_DEBUG")
    with cli_interrupts(program=argv is None):
        try:
            _main(argv, debug)
        except KeyboardInterrupt:  # raised anywhere, even while an error is being reported
            if debug:
                raise
            sys.exit(EXIT_INTERRUPTED)


def _main(argv: list[str] | None, debug: bool) -> None:
    """The error boundary: each exception becomes one message and an exit status."""
    from aqa_framework.engine.signals import EXIT_INTERRUPTED
    from aqa_framework.errors import AQAError, user_message

    try:
        app(args=argv, prog_name="aqa", standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        _report("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except AQAError as exc:
        if debug:
            raise
        _report(user_message(exc))
        sys.exit(1)
    except Exception as exc:  # the boundary: never a traceback unless asked for
        if debug:
            raise
        _report(
            f"{type(exc).__name__}: {user_message(exc)}\n(set AQA_DEBUG=1 to see the traceback)"
        )
        sys.exit(1)


def _report(message: str) -> None:
    from rich.markup import escape

    from aqa_framework.cli.console import err

    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main()
