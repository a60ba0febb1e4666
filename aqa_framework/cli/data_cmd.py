"""``aqa data``: prepare datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Prepare datasets (synthetic data, frame caches).", no_args_is_help=True)
