"""Strict JSON for everything a run writes: no bare ``NaN`` or ``Infinity``.

Python's ``json.dumps`` writes NaN and infinity as the bare words ``NaN`` and ``Infinity``,
which are not JSON: ``jq``, JavaScript and most other readers refuse the file. A metric can
legitimately be undefined (the Spearman correlation of constant predictions, the loss of an
epoch whose every step diverged), so :func:`dumps` writes such a number as ``null`` and, in a
mapping at the top level, records where it did so under the key :data:`NONFINITE_KEY`::

    {"metrics": {"score.spearman": null}, "nonfinite": ["metrics.score.spearman"]}

Readers take ``null`` as "not a number" (:func:`number`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["NONFINITE_KEY", "dumps", "finite", "number"]

NONFINITE_KEY = "nonfinite"
"""Key listing the dotted paths of the values written as ``null`` because they were NaN/inf."""


def finite(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """A copy of ``value`` with every NaN or infinite float replaced by ``None``.

    Mappings, lists and tuples are copied (tuples become lists, as JSON writes them); numpy
    and torch scalars count as floats when they convert to one.

    Args:
        value: A JSON-like structure.
        path: Dotted path of ``value``, prefixed to the paths returned.

    Returns:
        The cleaned copy and the dotted paths of the values replaced.
    """
    replaced: list[str] = []

    def clean(v: Any, where: str) -> Any:
        if isinstance(v, bool | int | str) or v is None:
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            replaced.append(where)
            return None
        if isinstance(v, Mapping):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x, f"{where}.{i}" if where else str(i)) for i, x in enumerate(v)]
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalar
            return clean(v.item(), where)
        return v

    return clean(value, path), replaced


def dumps(doc: Any, *, indent: int | None = None, note: bool = True, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or infinity.

    Non-finite floats become ``null``; with ``note`` and a mapping at the top level, their
    dotted paths are listed under :data:`NONFINITE_KEY`.

    Args:
        doc: What to write.
        indent: As for ``json.dumps``.
        note: Record the replaced paths in the document.
        **kwargs: Passed on to ``json.dumps`` (``sort_keys``, ``default``).

    Raises:
        ValueError: Never for a NaN; only for values ``json.dumps`` cannot write.
    """
    cleaned, replaced = finite(doc)
    if note and replaced and isinstance(cleaned, dict):
        cleaned[NONFINITE_KEY] = replaced
    return json.dumps(cleaned, indent=indent, allow_nan=False, **kwargs)


def number(value: Any) -> float:
    """A float read back from JSON: ``null`` (a non-finite value when written) is NaN.

    Raises:
        TypeError: If ``value`` is neither a number nor ``null``.
        ValueError: If it is a string that is not a number.
    """
    return math.nan if value is None else float(value)
