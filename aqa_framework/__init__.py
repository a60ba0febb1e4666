"""aqa-framework: a plugin-based framework for Action Quality Assessment.

Plugins mark their hook implementations with :data:`hookimpl`::

    from aqa_framework import hookimpl

    @hookimpl
    def register_heads(register):
        register(MyHead)

Importing this package is cheap: it pulls in neither torch nor any plugin.
"""

from __future__ import annotations

import pluggy

from aqa_framework._version import __version__

PROJECT_NAME = "aqa"
"""The pluggy project name and the entry-point group third-party plugins use."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin hook implementations (the one marker plugins import)."""

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
