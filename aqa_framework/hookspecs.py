"""Hook specifications: the contract every plugin, built-in or third-party, implements.

Each hook receives a ``register`` callable. Call it once per component class::

    @hookimpl
    def register_backbones(register):
        register(C3DBackbone)

Third-party plugins are found through the ``aqa`` entry-point group::

    [project.entry-points.aqa]
    skating = "aqa_skating.plugin"

and the names they register carry their entry-point name as prefix (``skating.tcn``), so a
future built-in can never clash with them.

Besides the component kinds, three hooks extend what a run and the command line do:
``register_callbacks`` (training events, :mod:`aqa_framework.engine.events`),
``register_trackers`` (experiment trackers a spec selects with ``track:``,
:mod:`aqa_framework.tracking`) and ``register_commands`` (sub-commands of ``aqa``).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from aqa_framework import PROJECT_NAME
from aqa_framework.kinds import KINDS

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

Register = Callable[[type], None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register :class:`~aqa_framework.interfaces.Backbone` subclasses.

    Args:
        register: Call with each backbone class.
    """


@hookspec
def register_aggregators(register: Register) -> None:
    """Register :class:`~aqa_framework.interfaces.Aggregator` subclasses.

    Args:
        register: Call with each aggregator class.
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register :class:`~aqa_framework.interfaces.TaskHead` subclasses.

    Args:
        register: Call with each head class.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`~aqa_framework.interfaces.VideoDataset` subclasses.

    Args:
        register: Call with each dataset class.
    """


@hookspec
def register_callbacks(register: Register) -> None:
    """Register training callbacks: subclasses of :class:`~aqa_framework.engine.events.Callback`.

    Every run creates one instance of each (no arguments) and calls its ``on_<event>``
    methods in the documented order (see :mod:`aqa_framework.engine.events`), on rank 0 only
    unless the class sets ``all_ranks = True``. A callback that raises stops the run with a
    message naming the plugin and the callback; the last checkpoint is kept.

    Args:
        register: Call with each callback class.
    """


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment trackers: subclasses of :class:`~aqa_framework.tracking.Tracker`.

    A spec selects trackers by name (``track: [myplugin.wandb]``); a tracker is a callback with
    a ``name`` (carrying the plugin prefix), a pydantic ``Params`` and the packages it needs.

    Args:
        register: Call with each tracker class.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Register sub-commands of ``aqa`` (typer apps or functions), loaded when used.

    Call ``register(name, target, help=...)``: ``target`` is a typer app (a command group), a
    function (a command) or, to keep ``aqa --help`` fast, the import path of one
    (``"my_plugin.cli:app"``, imported only when the command runs; then give ``help``).
    ``aqa --help`` lists the command with its plugin named. The plugin module is imported
    by ``aqa --help``: keep it light (no torch at its top).

    Args:
        register: Call once per command.
    """


HOOKS: dict[str, str] = {kind.name: kind.hook for kind in KINDS.values()}
"""Component kind -> the hook that registers it (from :data:`aqa_framework.kinds.KINDS`)."""

EXTENSION_HOOKS: dict[str, str] = {
    "callbacks": "register_callbacks",
    "trackers": "register_trackers",
    "commands": "register_commands",
}
"""What else a plugin can add -> its hook (training callbacks, trackers, commands)."""

ALL_HOOKS: tuple[str, ...] = (*HOOKS.values(), *EXTENSION_HOOKS.values())
"""Every hook specification, component kinds first."""
