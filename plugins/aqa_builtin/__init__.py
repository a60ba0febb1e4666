"""The built-in plugin: registers every component that ships with aqa-framework.

It uses the same hooks as any third-party plugin; component modules are imported inside the
hooks so that importing this package stays cheap.
"""

from __future__ import annotations

from aqa_framework import hookimpl
from aqa_framework.hookspecs import Register


@hookimpl
def register_backbones(register: Register) -> None:
    """Register the built-in backbones."""


@hookimpl
def register_aggregators(register: Register) -> None:
    """Register the built-in aggregators."""


@hookimpl
def register_heads(register: Register) -> None:
    """Register the built-in heads."""


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the built-in datasets."""
