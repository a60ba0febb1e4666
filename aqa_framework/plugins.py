"""Plugin discovery and loading on pluggy.

Built-in components live in the ``aqa_builtin`` package and register through the same hooks
as third-party plugins; only discovery differs: third parties are found through the ``aqa``
entry-point group, enumerated once per :class:`PluginSet`.

Environment variables:

* ``AQA_PLUGINS_STRICT=1``: a plugin that fails to load is fatal (for CI).
* ``AQA_PLUGINS_ALLOW=a,b``: load only these third-party plugins (fnmatch patterns).
* ``AQA_PLUGINS_BLOCK=a,b``: never load these third-party plugins (fnmatch patterns).

A plugin is broken when importing it or calling its hooks raises anything, ``SystemExit``
and ``KeyboardInterrupt`` included (a ``sys.exit()`` at import would otherwise end every
command without a word): it is named, skipped, and fatal only in strict mode. A Ctrl-C that
the user actually presses while plugins load is not a plugin's fault and still interrupts
the command: SIGINT is watched while plugin code runs, and a ``KeyboardInterrupt`` that
follows a real SIGINT is re-raised.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import signal
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def watch_interrupts() -> Iterator[Callable[[], bool]]:
    """Tell a Ctrl-C the user pressed from a ``KeyboardInterrupt`` that plugin code raised.

    While the block runs, SIGINT is recorded and then handled as before (the previous handler
    runs, so a Ctrl-C still interrupts). Outside the main thread no signal can arrive, so
    every ``KeyboardInterrupt`` there was raised by code.

    Yields:
        A function that says whether a SIGINT arrived since the block started.
    """
    received: list[int] = []
    previous = None
    installed = False
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)

        def _record(signum: int, frame: Any) -> None:
            received.append(signum)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt

        if previous is not None:
            signal.signal(signal.SIGINT, _record)
            installed = True
    try:
        yield lambda: bool(received)
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]


def is_plugin_failure(exc: BaseException, interrupted: Callable[[], bool]) -> bool:
    """Whether an exception out of plugin code makes the plugin broken (else re-raise it).

    Everything a plugin raises counts, ``SystemExit`` and ``KeyboardInterrupt`` included,
    except a ``KeyboardInterrupt`` caused by a Ctrl-C the user pressed (``interrupted()``,
    from :func:`watch_interrupts`).
    """
    return not (isinstance(exc, KeyboardInterrupt) and interrupted())


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` of an exception, with what ``sys.exit()`` was called with."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    with watch_interrupts() as interrupted:
        for ep in eps:
            if _selected(ep.name):
                infos.append(_load_entry_point(pm, ep, infos, strict, interrupted))
    for name, plugin in extra_plugins:
        info = PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), "(not installed)", "")
        _register(pm, plugin, name)
        infos.append(info)
    return pm, infos


def _load_entry_point(
    pm: pluggy.PluginManager,
    ep: Any,
    infos: list[PluginInfo],
    strict: bool,
    interrupted: Callable[[], bool],
) -> PluginInfo:
    """Import and register one entry point; a failure is recorded in the returned info.

    Raises:
        PluginError: In strict mode, when the plugin fails to load.
        KeyboardInterrupt: When the user pressed Ctrl-C meanwhile.
    """
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
    except BaseException as exc:  # a broken plugin must not take the others (or aqa) down
        if not is_plugin_failure(exc, interrupted):
            raise
        info.error = describe_exception(exc)
        info.detail = traceback.format_exc()
        if strict:
            raise PluginError(
                f"plugin '{ep.name}' ({dist} {version}) failed to load: {info.error}"
            ) from exc
        warnings.warn(
            f"plugin '{ep.name}' ({dist} {version}) failed to load and was skipped: "
            f"{info.error}",
            PluginLoadWarning,
            stacklevel=4,
        )
    return info


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    if pm.has_plugin(name):
        raise PluginError(f"a plugin named '{name}' is already registered")
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        raise PluginError(f"{exc}; the hooks are: {', '.join(hookspecs.ALL_HOOKS)}") from exc
