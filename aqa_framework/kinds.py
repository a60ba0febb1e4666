"""The component kinds: one table of their interfaces, hooks and titles, and their rules.

Every place that needs to know the kinds (the registry, the hook specifications, the test-kit,
the documentation generator, the command line) reads :data:`KINDS`; every place that checks
a component class against its contract uses :func:`component_problems`. Torch-free at import:
the interface classes are imported when first asked for.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["KINDS", "NAME_PATTERN", "Kind", "component_label", "component_problems"]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)?$")
"""A registry name: lower case, with at most one dot after a plugin prefix (``skating.tcn``)."""


@dataclass(frozen=True)
class Kind:
    """One component kind.

    Attributes:
        name: The kind, as components declare it in ``kind`` (``"backbone"``).
        interface_path: ``module.Class`` of the interface its components subclass.
        plural: The plural, as in the hook name (``"backbones"``).
        title: Section title of the component catalog (``"Backbones"``).
    """

    name: str
    interface_path: str
    plural: str
    title: str

    @property
    def hook(self) -> str:
        """The hook a plugin registers components of this kind with (``register_backbones``)."""
        return f"register_{self.plural}"

    @property
    def interface_name(self) -> str:
        """The interface's class name (``"Backbone"``), without importing it."""
        return self.interface_path.rpartition(".")[2]

    @property
    def interface(self) -> type:
        """The interface class (imports :mod:`aqa_framework.interfaces`, hence torch)."""
        module, _, attr = self.interface_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            Kind("backbone", "aqa_framework.interfaces.Backbone", "backbones", "Backbones"),
            Kind("aggregator", "aqa_framework.interfaces.Aggregator", "aggregators", "Aggregators"),
            Kind("head", "aqa_framework.interfaces.TaskHead", "heads", "Task heads"),
            Kind("dataset", "aqa_framework.interfaces.VideoDataset", "datasets", "Datasets"),
        )
    }
)
"""Kind name -> :class:`Kind`, in catalog order (iterating gives the names)."""


def component_label(obj: Any) -> str:
    """How messages name a component class or instance: ``kind 'name' (module.Class)``."""
    cls = obj if isinstance(obj, type) else type(obj)
    kind = getattr(cls, "kind", "") or "component"
    name = getattr(cls, "name", "") or cls.__qualname__
    return f"{kind} '{name}' ({cls.__module__}.{cls.__qualname__})"


def component_problems(
    cls: Any, kind: str | None = None, *, documentation: bool = True
) -> list[str]:
    """What a component class breaks of the rules every component follows.

    The rules a plugin's class must follow to be registered: a subclass of its kind's
    interface; a registry ``name`` in lower case (``c3d`` or ``plugin.c3d``); a pydantic
    ``Params`` that forbids unknown keys. With ``documentation``, also the rules its generated
    documentation needs: its own docstring (whose first line is the summary) and a description
    on every parameter. The registry checks the first group, the test-kit and the
    documentation generator both.

    Args:
        cls: The component class (anything, when checking what a plugin registered).
        kind: Its kind; defaults to ``cls.kind``.
        documentation: Also check the documentation rules.

    Returns:
        One sentence per broken rule, without the component's name (see
        :func:`component_label`); empty when it follows them all. Problems that make the
        other rules meaningless (an unknown kind, not a subclass of the interface) come alone.
    """
    kind = kind or getattr(cls, "kind", "")
    if kind not in KINDS:
        return [f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}"]
    iface = KINDS[kind].interface
    if not (isinstance(cls, type) and issubclass(cls, iface)):
        return [f"is not a subclass of {iface.__name__}"]
    problems = []
    name = getattr(cls, "name", "")
    if not (isinstance(name, str) and NAME_PATTERN.match(name)):
        problems.append(
            f"name {name!r} must be a lower-case identifier, e.g. 'c3d' or 'myplugin.c3d'"
        )
    if documentation and not (vars(cls).get("__doc__") or "").strip():
        problems.append("no summary: it needs its own docstring, whose first line is the summary")
    return problems + _params_problems(cls, documentation)


def _params_problems(cls: type, documentation: bool) -> list[str]:
    from pydantic import BaseModel

    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        return ["Params must be a pydantic model with model_config = ConfigDict(extra='forbid')"]
    if params.model_config.get("extra") != "forbid":
        return ["Params must forbid unknown keys: model_config = ConfigDict(extra='forbid')"]
    if not documentation:
        return []
    return [
        f"param '{fname}' has no description: Params.{fname} needs Field(description=...) "
        "(shown in the docs and by `aqa plugins show`)"
        for fname, field in params.model_fields.items()
        if not (field.description or "").strip()
    ]
