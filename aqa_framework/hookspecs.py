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


HOOKS: dict[str, str] = {kind.name: kind.hook for kind in KINDS.values()}
"""Component kind -> the hook that registers it (from :data:`aqa_framework.kinds.KINDS`)."""
