"""Deprecated module paths: one old import path bound to the module that replaced it."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias_moved_module(old: str, new: str) -> None:
    """Bind ``old`` to the module ``new`` in ``sys.modules``, with a ``DeprecationWarning``.

    Called from the old module's body: importing the old path then gives the very same module
    object, so every name (private ones included) and monkeypatching keep working.

    Args:
        old: The old dotted path (the calling module's ``__name__``).
        new: The dotted path of the module that replaced it.
    """
    module = importlib.import_module(new)
    warnings.warn(f"{old} moved to {new}", DeprecationWarning, stacklevel=3)
    sys.modules[old] = module
