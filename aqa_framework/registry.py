"""The component registry: every backbone, aggregator, head and dataset by name.

Lookups in the style of timm and torchvision::

    from aqa_framework import registry

    registry.list_components("backbone", "*3d*")   # ['c3d']
    cls = registry.get("backbone", "c3d")

Plugins are loaded on the first use of the registry, never at import time.
"""

from __future__ import annotations

import difflib
import fnmatch
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aqa_framework.errors import PluginError, UnknownComponentError
from aqa_framework.kinds import KINDS, component_problems
from aqa_framework.plugins import (
    PluginInfo,
    PluginLoadWarning,
    create_plugin_manager,
    describe_exception,
    is_plugin_failure,
    watch_interrupts,
)

_MAX_LISTED = 20


@dataclass(frozen=True)
class RegistryEntry:
    """One registered component.

    Attributes:
        kind: Component kind.
        name: Registry name.
        cls: The component class.
        plugin: The plugin that registered it.
    """

    kind: str
    name: str
    cls: type
    plugin: PluginInfo

    @property
    def summary(self) -> str:
        """First docstring line of the class."""
        return self.cls.summary()

    @property
    def qualname(self) -> str:
        """``module:Class`` where the component is defined."""
        return f"{self.cls.__module__}:{self.cls.__qualname__}"


class Registry:
    """Components registered by a set of plugins.

    Args:
        entry_points: Entry points to load instead of the installed ones (tests).
        builtins: Whether to include the built-in plugin.
        extra_plugins: ``(name, plugin)`` pairs registered as third-party plugins.
        strict: Make plugin failures fatal (defaults to ``AQA_PLUGINS_STRICT``).
    """

    def __init__(
        self,
        entry_points: Iterable[Any] | None = None,
        *,
        builtins: bool = True,
        extra_plugins: Iterable[tuple[str, object]] = (),
        strict: bool | None = None,
    ) -> None:
        from aqa_framework.plugins import strict_mode

        self.strict = strict_mode() if strict is None else strict
        self.pm, self.plugins = create_plugin_manager(
            entry_points, builtins=builtins, extra_plugins=extra_plugins, strict=self.strict
        )
        self._entries: dict[str, dict[str, RegistryEntry]] = {k: {} for k in KINDS}
        by_name = {p.name: p for p in self.plugins if not p.error}
        with watch_interrupts() as interrupted:
            for kind, spec in KINDS.items():
                hook_name = spec.hook
                hook = getattr(self.pm.hook, hook_name)
                for impl in reversed(hook.get_hookimpls()):  # registration order
                    info = by_name.get(impl.plugin_name)
                    if info is None or info.error:
                        continue
                    try:
                        impl.function(register=self._registrar(kind, info))
                    except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                        if not is_plugin_failure(exc, interrupted):
                            raise
                        self._fail(info, f"{hook_name} raised {describe_exception(exc)}", exc)

    @property
    def failed(self) -> list[PluginInfo]:
        """Plugins that failed to load or to register."""
        return [p for p in self.plugins if p.error]

    def _fail(
        self, info: PluginInfo, message: str, exc: BaseException | None = None
    ) -> None:
        info.error = message if not info.error else f"{info.error}; {message}"
        if self.strict:
            raise PluginError(f"plugin '{info.name}' ({info.distribution}): {message}") from exc
        warnings.warn(
            f"plugin '{info.name}' ({info.distribution}): {message}",
            PluginLoadWarning,
            stacklevel=3,
        )

    def _registrar(self, kind: str, info: PluginInfo):
        def register(cls: type) -> None:
            problem = self._check(kind, cls, info)
            if problem:
                self._fail(info, problem)
                return
            self._entries[kind][cls.name] = RegistryEntry(kind, cls.name, cls, info)

        return register

    def _check(self, kind: str, cls: Any, info: PluginInfo) -> str | None:
        problems = component_problems(cls, kind, documentation=False)
        if problems:
            what = f"{cls.__module__}:{cls.__qualname__}" if isinstance(cls, type) else repr(cls)
            return f"{KINDS[kind].hook} got {what}: {problems[0]}"
        name = cls.name
        if not info.builtin and not name.startswith(f"{info.name}."):
            return (
                f"{kind} '{name}' must carry the plugin prefix '{info.name}.' "
                f"(e.g. '{info.name}.{name.split('.')[-1]}')"
            )
        existing = self._entries[kind].get(name)
        if existing is not None:
            return (
                f"{kind} '{name}' is registered twice: by plugin '{existing.plugin.name}' "
                f"({existing.qualname}) and by plugin '{info.name}' "
                f"({cls.__module__}:{cls.__qualname__})"
            )
        return None

    def names(self, kind: str) -> list[str]:
        """Sorted names of one kind."""
        return sorted(self._entries[_check_kind(kind)])

    def list_components(self, kind: str | None = None, pattern: str = "*") -> list[RegistryEntry]:
        """Entries matching a kind and an fnmatch pattern, sorted by kind then name.

        Args:
            kind: One kind, or ``None`` for all.
            pattern: Shell-style pattern on the name, e.g. ``"*3d*"``.
        """
        kinds = [_check_kind(kind)] if kind else list(KINDS)
        return [
            self._entries[k][n]
            for k in kinds
            for n in sorted(self._entries[k])
            if fnmatch.fnmatchcase(n, pattern)
        ]

    def entry(self, kind: str, name: str) -> RegistryEntry:
        """The entry of a registered component.

        Raises:
            UnknownComponentError: With close matches, the available names and any plugin
                that failed to load.
        """
        kind = _check_kind(kind)
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(kind, name)) from None

    def get(self, kind: str, name: str) -> type:
        """The class of a registered component (see :meth:`entry`)."""
        return self.entry(kind, name).cls

    def find(self, name: str) -> list[RegistryEntry]:
        """Entries of any kind with this name."""
        return [self._entries[k][name] for k in KINDS if name in self._entries[k]]

    def unknown_message(self, kind: str, name: str) -> str:
        """The message for an unknown component name."""
        available = self.names(kind)
        msg = f"Unknown {kind} '{name}'."
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        if close:
            msg += " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        shown = available[:_MAX_LISTED]
        more = f" (and {len(available) - len(shown)} more)" if len(available) > len(shown) else ""
        msg += f" Available: {', '.join(shown) or 'none'}{more}."
        if self.failed:
            msg += " Plugins that failed to load: " + ", ".join(
                f"{p.name} ({p.error})" for p in self.failed
            )
        return msg


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownComponentError(
            f"Unknown component kind '{kind}'. Kinds: {', '.join(KINDS)}."
        )
    return kind


_default: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, created (and plugins loaded) on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, with ``None``) the process-wide registry; for tests."""
    global _default
    with _lock:
        _default = registry


def get(kind: str, name: str) -> type:
    """Class of a registered component from the process-wide registry."""
    return get_registry().get(kind, name)


def list_components(kind: str | None = None, pattern: str = "*") -> list[RegistryEntry]:
    """Entries from the process-wide registry (see :meth:`Registry.list_components`)."""
    return get_registry().list_components(kind, pattern)
