"""Relative paths in a spec, made absolute so that a stored run works from any directory.

A spec file's relative paths (``data.params.root: data/mtl-aqa``, ``cache_dir: .aqa-cache/x``)
are relative to the directory ``aqa run`` is started from, as they always were. ``aqa run``
stores them absolute in the run folder (``spec.yaml`` and every checkpoint), so ``aqa evaluate``,
``aqa predict`` and ``aqa run --resume`` read the same files from any directory. Which
parameters are paths is declared by each component (:func:`aqa_framework.component.path_params`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from aqa_framework.component import path_params
from aqa_framework.resolve import ResolvedComponent, ResolvedSpec

__all__ = ["absolute_paths", "absolute_raw_paths"]


def _absolute(value: Any, base: Path) -> Any:
    """``value`` made absolute against ``base`` if it is a relative path string."""
    if not isinstance(value, str | Path) or not str(value):
        return value
    p = Path(os.path.expandvars(os.path.expanduser(str(value))))
    if p.is_absolute():
        return value
    return str(base / p) if isinstance(value, str) else base / p


def _components(resolved: ResolvedSpec) -> list[ResolvedComponent]:
    return [resolved.backbone, resolved.aggregator, *resolved.heads.values(), resolved.dataset]


def _raw_params(raw: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    params = node.get("params") if isinstance(node, dict) else None
    return params if isinstance(params, dict) else None


def absolute_raw_paths(
    raw: dict[str, Any], resolved: ResolvedSpec, base: str | Path | None = None
) -> dict[str, Any]:
    """A copy of a raw spec mapping with its relative path parameters made absolute.

    Args:
        raw: A spec as a mapping (``Spec.model_dump(mode="json")`` or a stored one).
        resolved: The resolved spec of the same components (says which params are paths).
        base: Folder relative paths are relative to (default: the current directory).

    Returns:
        The changed copy; ``raw`` is left as it is.
    """
    base = Path(base) if base is not None else Path.cwd()
    out = copy.deepcopy(raw)
    for comp in _components(resolved):
        params = _raw_params(out, comp.path)
        if params is None:
            continue
        for name in path_params(type(comp.params)):
            if name in params:
                params[name] = _absolute(params[name], base)
    return out


def absolute_paths(resolved: ResolvedSpec, base: str | Path | None = None) -> ResolvedSpec:
    """The resolved spec with every relative path parameter made absolute.

    Both the spec (what the run folder stores) and the components' validated parameters
    change; paths that are absolute, unset or not declared as paths stay as they are.

    Args:
        resolved: A resolved spec.
        base: Folder relative paths are relative to (default: the current directory).
    """
    from dataclasses import replace

    from aqa_framework.spec import Spec

    base = Path(base) if base is not None else Path.cwd()
    raw = resolved.spec.model_dump(mode="json")
    new_raw = absolute_raw_paths(raw, resolved, base)
    if new_raw == raw:
        return resolved
    comps = {}
    for comp in _components(resolved):
        names = path_params(type(comp.params))
        update = {n: _absolute(getattr(comp.params, n), base) for n in names}
        update = {n: v for n, v in update.items() if v != getattr(comp.params, n)}
        params = comp.params.model_copy(update=update) if update else comp.params
        comps[id(comp)] = replace(comp, params=params)
    return replace(
        resolved,
        spec=Spec.model_validate(new_raw),
        backbone=comps[id(resolved.backbone)],
        aggregator=comps[id(resolved.aggregator)],
        heads={t: comps[id(h)] for t, h in resolved.heads.items()},
        dataset=comps[id(resolved.dataset)],
    )
