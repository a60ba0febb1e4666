"""``aqa validate`` and ``aqa spec``: check specs and export their schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aqa_framework.cli.options import SetOption, SpecArg

app = typer.Typer(help="Work with spec files.", no_args_is_help=True)


def load_and_resolve(spec_path: Path, overrides: list[str] | None):
    """Pass one and pass two of validation; returns the resolved spec.

    Deprecated: use :func:`aqa_framework.resolve.load`.
    """
    import warnings

    from aqa_framework.resolve import load

    warnings.warn(
        "aqa_framework.cli.spec_cmd.load_and_resolve is deprecated; use "
        "aqa_framework.resolve.load(spec_path, overrides)",
        DeprecationWarning,
        stacklevel=2,
    )
    return load(spec_path, overrides or [])


def validate(
    spec: SpecArg,
    set_: SetOption = None,
    build: Annotated[
        bool,
        typer.Option(
            "--build/--no-build",
            help="Also make the checks aqa run makes before training: device, splits, "
            "dataset/head fit, shapes, pretrained file, optimizer and schedule.",
        ),
    ] = True,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples/--no-samples",
            help="With --build, also open every video (header only) to check each sample's "
            "window (end_frame) and crop; --no-samples where the videos are not at hand.",
        ),
    ] = True,
) -> None:
    """Validate a spec: envelope, component names and params, then what aqa run checks.

    Fails with the message aqa run would give, without training or loading weights.
    """
    from aqa_framework.cli.console import out
    from aqa_framework.resolve import load

    resolved = load(spec, set_ or [])
    if build:
        from aqa_framework.builder import check_spec

        report = check_spec(resolved, samples=samples)
        out.print(f"[green]OK[/] {spec}: {report}", highlight=False)
    else:
        out.print(f"[green]OK[/] {spec}: components and params are valid", highlight=False)


@app.command("schema")
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of spec files (for editor completion and validation)."""
    from aqa_framework.spec import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@app.command("show")
def show(spec: SpecArg, set_: SetOption = None) -> None:
    """Print a spec with every default filled in (after --set overrides)."""
    from aqa_framework.spec import dump_spec, load_spec

    typer.echo(dump_spec(load_spec(spec, set_ or [])), nl=False)
