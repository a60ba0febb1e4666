"""Plugin discovery and loading on pluggy.

Built-in components live in the ``aqa_builtin`` package and register through the same hooks
as third-party plugins; only discovery differs: third parties are found through the ``aqa``
entry-point group, enumerated once per :class:`PluginSet`.

Environment variables:

* ``AQA_PLUGINS_STRICT=1``: a plugin that fails to load is fatal (for CI).
* ``AQA_PLUGINS_ALLOW=a,b``: load only these third-party plugins (fnmatch patterns).
* ``AQA_PLUGINS_BLOCK=a,b``: never load these third-party plugins (fnmatch patterns).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from aqa_framework import PROJECT_NAME, hookspecs
from aqa_framework.env import env_flag
from aqa_framework.errors import PluginError

ENTRY_POINT_GROUP = PROJECT_NAME
BUILTIN_PLUGIN = "aqa_builtin"
BUILTIN_NAME = "builtin"


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin.

    Attributes:
        name: Entry-point name (``builtin`` for the built-ins); also the required name prefix
            of the components a third-party plugin registers.
        module: Import path of the plugin module.
        distribution: Name of the distribution that provides it.
        version: Version of that distribution.
        error: Why loading failed, or ``None``.
        builtin: Whether it is the built-in plugin.
    """

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None
    builtin: bool = False
    detail: str = field(default="", repr=False)


def _env_patterns(var: str) -> list[str]:
    return [p.strip() for p in os.environ.get(var, "").split(",") if p.strip()]


def strict_mode() -> bool:
    """Whether ``AQA_PLUGINS_STRICT`` asks for plugin failures to be fatal."""
    return env_flag("AQA_PLUGINS_STRICT")


def _selected(name: str) -> bool:
    allow = _env_patterns("AQA_PLUGINS_ALLOW")
    block = _env_patterns("AQA_PLUGINS_BLOCK")
    if allow and not any(fnmatch.fnmatchcase(name, p) for p in allow):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in block)


def _distribution_of(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.metadata["Name"] or "unknown", dist.version or "unknown"


def builtin_info() -> PluginInfo:
    """Describe the built-in plugin (provided by the ``aqa-framework`` distribution)."""
    try:
        version = metadata.version("aqa-framework")
    except metadata.PackageNotFoundError:
        from aqa_framework import __version__ as version
    return PluginInfo(BUILTIN_NAME, BUILTIN_PLUGIN, "aqa-framework", version, builtin=True)


def iter_entry_points() -> list[Any]:
    """The entry points of the ``aqa`` group, sorted by name."""
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def create_plugin_manager(
    entry_points: Iterable[Any] | None = None,
    *,
    builtins: bool = True,
    extra_plugins: Iterable[tuple[str, ModuleType | object]] = (),
    strict: bool | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Create a plugin manager with the built-ins and the installed third-party plugins.

    Args:
        entry_points: Entry points to load; defaults to the installed ``aqa`` group. Tests
            pass fakes (anything with ``name``, ``value``, ``load()`` and ``dist``).
        builtins: Whether to register the built-in plugin.
        extra_plugins: ``(name, module_or_object)`` pairs registered as third-party plugins
            without an entry point (handy in tests and notebooks).
        strict: Make load failures fatal; defaults to ``AQA_PLUGINS_STRICT``.

    Returns:
        The manager and one :class:`PluginInfo` per plugin considered (failed ones included).

    Raises:
        PluginError: In strict mode, when a plugin fails to load.
    """
    strict = strict_mode() if strict is None else strict
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    if builtins:
        module = importlib.import_module(BUILTIN_PLUGIN)
        pm.register(module, name=BUILTIN_NAME)
        infos.append(builtin_info())
    eps = iter_entry_points() if entry_points is None else list(entry_points)
    for ep in eps:
        if not _selected(ep.name):
            continue
        dist, version = _distribution_of(ep)
        info = PluginInfo(ep.name, ep.value, dist, version)
        try:
            clash = next((i for i in infos if i.name == ep.name and not i.error), None)
            if clash is not None:
                raise PluginError(
                    f"entry point '{ep.name}' is provided twice: by {clash.distribution} "
                    f"{clash.version} ({clash.module}) and by {dist} {version} ({ep.value})"
                )
            plugin = ep.load()
            _register(pm, plugin, ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = f"{type(exc).__name__}: {exc}"
            info.detail = traceback.format_exc()
            if strict:
                raise PluginError(
                    f"plugin '{ep.name}' ({dist} {version}) failed to load: {info.error}"
                ) from exc
            warnings.warn(
                f"plugin '{ep.name}' ({dist} {version}) failed to load and was skipped: "
                f"{info.error}",
                PluginLoadWarning,
                stacklevel=2,
            )
        infos.append(info)
    for name, plugin in extra_plugins:
        info = PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), "(not installed)", "")
        _register(pm, plugin, name)
        infos.append(info)
    return pm, infos


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    if pm.has_plugin(name):
        raise PluginError(f"a plugin named '{name}' is already registered")
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        raise PluginError(f"{exc}; the hooks are: {', '.join(hookspecs.HOOKS.values())}") from exc
