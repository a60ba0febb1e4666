"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[
    Path, typer.Argument(help="YAML spec file.", show_default=False, dir_okay=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a spec value, e.g. --set train.epochs=5 (repeatable).",
        show_default=False,
    ),
]
