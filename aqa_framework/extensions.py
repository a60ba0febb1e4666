"""What plugins add besides components: training callbacks, trackers and ``aqa`` commands.

The component kinds are in :data:`aqa_framework.kinds.KINDS`; the other three hooks
(:data:`aqa_framework.hookspecs.EXTENSION_HOOKS`) register:

* ``callback``: a training callback (hook ``register_callbacks``), run in every run when its
  class sets ``always = True``, else only when a spec names it in ``callbacks:``;
* ``tracker``: an experiment tracker (hook ``register_trackers``) a spec selects with
  ``track:``;
* ``command``: a sub-command of ``aqa`` (hook ``register_commands``).

:func:`list_extensions` gathers them with the plugin that provides each, as ``aqa plugins
list`` and ``aqa plugins show`` print them. A command registered as an import path is not
imported, and listing only commands (:func:`load_plugins`) runs no component hook: neither
lists import torch. Importing this module imports no torch.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aqa_framework.errors import PluginError

__all__ = [
    "EXTENSION_KINDS",
    "ExtensionEntry",
    "ExtensionListing",
    "LoadedPlugins",
    "list_extensions",
    "load_plugins",
    "provider_label",
]

EXTENSION_KINDS: dict[str, str] = {
    "callback": "callbacks",
    "tracker": "trackers",
    "command": "commands",
}
"""Extension kind -> its plural (as in the hook: ``register_callbacks``), in listing order."""


def provider_label(info: Any) -> str:
    """``aqa-gymnastics 0.1.0``, or ``aqa-framework 0.1.0 (built-in)`` for the built-ins.

    Args:
        info: A :class:`~aqa_framework.plugins.PluginInfo`.
    """
    version = f" {info.version}" if getattr(info, "version", "") else ""
    marker = " (built-in)" if getattr(info, "builtin", False) else ""
    return f"{info.distribution}{version}{marker}"


def _first_line(text: str | None) -> str:
    text = (text or "").strip()
    return text.splitlines()[0].strip() if text else ""


def _target_label(target: Any) -> str:
    """``module:attribute`` of a class, function or import path (nothing is imported)."""
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if module and qualname and (inspect.isclass(target) or inspect.isfunction(target)):
        return f"{module}:{qualname}"
    kind = type(target)
    return f"{kind.__module__}.{kind.__qualname__} object"


@dataclass(frozen=True)
class ExtensionEntry:
    """One callback, tracker or command and the plugin that registered it.

    Attributes:
        kind: ``callback``, ``tracker`` or ``command``.
        name: What a spec (``callbacks:``, ``track:``) or the command line (``aqa NAME``)
            calls it.
        summary: First line of its docstring (a command: its help line).
        plugin: The :class:`~aqa_framework.plugins.PluginInfo` of the plugin that registered it.
        target: ``module:Class`` of a callback or tracker; a command's import path or
            ``module:function`` (an import path is never imported here).
        obj: The class, or the command's target as registered.
        always: A callback that runs in every run (``always = True``).
        all_ranks: A callback that runs on every process under torchrun.
        requires: A tracker's optional import names.
        missing: Those of ``requires`` that are not installed.
        extra: The pip extra or package that installs them.
    """

    kind: str
    name: str
    summary: str
    plugin: Any
    target: str
    obj: Any = field(default=None, repr=False, compare=False)
    always: bool = False
    all_ranks: bool = False
    requires: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: str = ""

    @property
    def provider(self) -> str:
        """Distribution and version, with built-ins marked (:func:`provider_label`)."""
        return provider_label(self.plugin)

    @property
    def install(self) -> str:
        """The ``pip install`` that adds a tracker's missing packages (empty if none)."""
        if not self.missing:
            return ""
        extra = self.extra or self.missing[0]
        if getattr(self.plugin, "builtin", False):
            return f"pip install aqa-framework[{extra}]"
        return f"pip install {extra}"

    @property
    def usage(self) -> str:
        """How a run or a user gets it: ``every run (always)``, ``opt-in: callbacks:``, ..."""
        if self.kind == "callback":
            return "every run (always)" if self.always else "opt-in (spec callbacks:)"
        if self.kind == "tracker":
            text = "opt-in (spec track:)"
            return f"{text}; needs {self.install}" if self.missing else text
        return f"aqa {self.name}"

    @property
    def events(self) -> tuple[str, ...]:
        """The events a callback or tracker handles (the ``on_<event>`` it overrides)."""
        if not inspect.isclass(self.obj):
            return ()
        from aqa_framework.engine.events import EVENTS, Callback

        return tuple(
            e for e in EVENTS
            if getattr(self.obj, f"on_{e}", None) is not getattr(Callback, f"on_{e}", None)
        )


@dataclass
class ExtensionListing:
    """What :func:`list_extensions` found.

    Attributes:
        entries: The entries, by kind (:data:`EXTENSION_KINDS` order), then name.
        problems: One message per kind that a plugin registered wrongly (no entry of that
            kind is listed then).
    """

    entries: list[ExtensionEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class LoadedPlugins:
    """A plugin manager and its plugins, as a :class:`~aqa_framework.registry.Registry` has.

    Attributes:
        pm: The pluggy plugin manager.
        plugins: One :class:`~aqa_framework.plugins.PluginInfo` per plugin considered.
    """

    pm: Any
    plugins: list[Any]

    @property
    def failed(self) -> list[Any]:
        """Plugins that failed to load."""
        return [p for p in self.plugins if p.error]


def load_plugins(entry_points: Iterable[Any] | None = None) -> LoadedPlugins:
    """The installed third-party plugins, loaded without running any component hook.

    Enough to list commands (as ``aqa --help`` does): no component module, hence no torch,
    is imported. Load failures are recorded in the infos, not warned about.

    Args:
        entry_points: Entry points to load instead of the installed ones (tests).
    """
    import warnings

    from aqa_framework.plugins import PluginLoadWarning, create_plugin_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        pm, infos = create_plugin_manager(entry_points, builtins=False)
    return LoadedPlugins(pm, infos)


def _callbacks(source: Any) -> list[ExtensionEntry]:
    from aqa_framework.engine.events import plugin_callback_classes

    return [
        ExtensionEntry(
            "callback",
            getattr(cls, "name", "") or cls.__qualname__,
            _first_line(cls.__doc__),
            info,
            _target_label(cls),
            cls,
            always=bool(getattr(cls, "always", False)),
            all_ranks=bool(getattr(cls, "all_ranks", False)),
        )
        for cls, info in plugin_callback_classes(source)
    ]


def _trackers(source: Any) -> list[ExtensionEntry]:
    from aqa_framework.tracking import tracker_entries

    return [
        ExtensionEntry(
            "tracker",
            entry.name,
            entry.cls.summary(),
            entry.plugin,
            _target_label(entry.cls),
            entry.cls,
            always=bool(getattr(entry.cls, "always", False)),
            all_ranks=bool(getattr(entry.cls, "all_ranks", False)),
            requires=tuple(entry.cls.requires),
            missing=tuple(entry.cls.missing()),
            extra=entry.cls.extra,
        )
        for entry in tracker_entries(source).values()
    ]


def _commands(source: Any) -> list[ExtensionEntry]:
    from aqa_framework.cli.commands import commands_of

    infos = {p.name: p for p in source.plugins}
    return [
        ExtensionEntry(
            "command", c.name, c.help, infos[c.plugin], _target_label(c.target), c.target
        )
        for c in commands_of(source.pm, source.plugins).values()
    ]


_GATHER = {"callback": _callbacks, "tracker": _trackers, "command": _commands}


def list_extensions(
    source: Any, kinds: Sequence[str] | None = None, pattern: str = "*"
) -> ExtensionListing:
    """The callbacks, trackers and commands a set of plugins registers.

    Args:
        source: A :class:`~aqa_framework.registry.Registry` or :class:`LoadedPlugins`
            (anything with ``pm`` and ``plugins``); commands alone need no more than
            :func:`load_plugins`.
        kinds: Extension kinds to list (default: all, :data:`EXTENSION_KINDS`).
        pattern: Shell-style pattern on the name, e.g. ``"gymnastics*"``.

    Returns:
        The entries sorted by kind then name, and the registration problems.

    Raises:
        ValueError: For a kind that is not an extension kind.
    """
    wanted = list(EXTENSION_KINDS) if kinds is None else list(kinds)
    unknown = [k for k in wanted if k not in EXTENSION_KINDS]
    if unknown:
        raise ValueError(
            f"unknown extension kind(s) {', '.join(unknown)}; kinds: {', '.join(EXTENSION_KINDS)}"
        )
    listing = ExtensionListing()
    for kind in EXTENSION_KINDS:
        if kind not in wanted:
            continue
        try:
            found = _GATHER[kind](source)
        except PluginError as exc:
            listing.problems.append(f"{EXTENSION_KINDS[kind]}: {exc}")
            continue
        except Exception as exc:  # a plugin's hook may fail in any way; name it, list the rest
            listing.problems.append(f"{EXTENSION_KINDS[kind]}: {type(exc).__name__}: {exc}")
            continue
        listing.entries += sorted(
            (e for e in found if fnmatch.fnmatchcase(e.name, pattern)), key=lambda e: e.name
        )
    return listing
