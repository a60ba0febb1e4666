"""Sub-commands that plugins add to ``aqa`` (hook ``register_commands``), loaded lazily.

The root command group asks the plugins for their commands only when it must: to list the
commands (``aqa --help``) or to run a name that is not a built-in. Even then only the plugin
modules are imported (never the built-in components, never torch): a command given as an
import path (``"my_plugin.cli:app"``) is imported when it runs. A plugin's command names are
its entry-point name or start with it (``gymnastics``, ``gymnastics-medals``); a built-in
command always wins.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click
from typer.core import TyperGroup

PANEL = "Plugin commands"


@dataclass
class PluginCommand:
    """One command a plugin registered.

    Attributes:
        name: The command's name.
        target: A typer app, a function, or the ``module:attribute`` import path of one.
        help: Its one-line help (default: from the target's docstring).
        plugin: The plugin's entry-point name.
        distribution: The distribution that provides it.
    """

    name: str
    target: Any
    help: str
    plugin: str
    distribution: str

    @property
    def label(self) -> str:
        """``plugin gymnastics, aqa-gymnastics``: how ``aqa --help`` names the plugin."""
        return f"plugin {self.plugin}, {self.distribution}"

    def placeholder(self) -> click.Command:
        """A command that only shows the help line (nothing is imported)."""
        text = f"{self.help} ({self.label})"
        cmd = click.Command(self.name, help=text, short_help=text)
        cmd.rich_help_panel = PANEL  # type: ignore[attr-defined]
        return cmd

    def load(self) -> click.Command:
        """The real command (imports the target).

        Raises:
            PluginError: If the target cannot be imported or is no typer app or function.
        """
        import typer

        from aqa_framework.errors import PluginError

        target = self.target
        try:
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                target = getattr(importlib.import_module(module), attr)
        except Exception as exc:
            raise PluginError(
                f"command '{self.name}' of {self.label} cannot be loaded from {self.target!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(target, typer.Typer):
            command: click.Command = typer.main.get_group(target)
        elif isinstance(target, click.Command):
            command = target
        elif callable(target):
            app = typer.Typer()
            app.command(self.name, help=self.help or None)(target)
            command = typer.main.get_command(app)
        else:
            raise PluginError(
                f"command '{self.name}' of {self.label}: {self.target!r} is no typer app or "
                "function"
            )
        command.name = self.name
        return command


def _summary(target: Any) -> str:
    doc = getattr(target, "__doc__", None) if not isinstance(target, str) else None
    info = getattr(target, "info", None)  # a typer app's help
    text = getattr(info, "help", None) if info is not None else None
    text = text if isinstance(text, str) else doc
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def plugin_commands(entry_points: Any = None) -> dict[str, PluginCommand]:
    """The commands of the installed plugins, by name (the built-ins are not loaded).

    Args:
        entry_points: Entry points to load instead of the installed ones (tests).

    Raises:
        PluginError: When a plugin registers a badly named or duplicate command.
    """
    import warnings

    from aqa_framework.plugins import PluginLoadWarning, create_plugin_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)  # `aqa plugins list` names them
        pm, infos = create_plugin_manager(entry_points, builtins=False)
    return commands_of(pm, infos)


def commands_of(pm: Any, infos: list[Any]) -> dict[str, PluginCommand]:
    """The commands the loaded third-party plugins of a plugin manager register, by name.

    Only the plugin modules run: a target given as an import path is not imported.

    Args:
        pm: The pluggy plugin manager.
        infos: Its :class:`~aqa_framework.plugins.PluginInfo` list (failed and built-in
            plugins are left out).

    Raises:
        PluginError: When a plugin registers a badly named or duplicate command.
    """
    from aqa_framework.errors import PluginError

    by_name = {p.name: p for p in infos if not p.error and not p.builtin}
    found: dict[str, PluginCommand] = {}
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        info = by_name.get(impl.plugin_name)
        if info is None:
            continue

        def register(name: str, target: Any, help: str | None = None, _info: Any = info) -> None:
            if not (name == _info.name or name.startswith(f"{_info.name}-")):
                raise PluginError(
                    f"plugin '{_info.name}' ({_info.distribution}): command '{name}' must be "
                    f"named '{_info.name}' or start with '{_info.name}-'"
                )
            if name in found:
                raise PluginError(f"command '{name}' is registered twice")
            found[name] = PluginCommand(
                name, target, help or _summary(target), _info.name, _info.distribution
            )

        impl.function(register=register)
    return found


class PluginCommandsGroup(TyperGroup):
    """The root group of ``aqa``: the built-in commands, then the plugins' (loaded lazily)."""

    _plugins: dict[str, PluginCommand] | None = None

    def plugins(self) -> dict[str, PluginCommand]:
        """The plugins' commands (asked once)."""
        if self._plugins is None:
            self._plugins = plugin_commands()
        return self._plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in commands, then the plugins' in name order."""
        names = super().list_commands(ctx)
        return names + sorted(n for n in self.plugins() if n not in names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, or a plugin command's help-only placeholder."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        found = self.plugins().get(cmd_name)
        return found.placeholder() if found is not None else None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command to run: a plugin's is imported now."""
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and super().get_command(ctx, name) is None:
            found = self.plugins().get(name)
            if found is not None:
                command = found.load()
        return name, command, rest
