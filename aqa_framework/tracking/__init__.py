"""Experiment trackers: callbacks a spec selects with ``track:``, each working offline.

::

    track: [tensorboard, mlflow, csv]
    # or with parameters
    track:
      - name: mlflow
        params: {uri: file:///srv/mlruns, experiment: diving}

The built-in trackers (registered by the built-in plugin through the ``register_trackers``
hook, as a plugin registers its own):

* ``tensorboard``: TensorBoard event files in ``RUN/tensorboard`` (extra ``tensorboard``);
* ``mlflow``: an MLflow run in a local file store (``RUN/mlruns``, or ``params.uri``): params =
  the resolved spec flattened, metrics per epoch, the report and scatter plot as artifacts
  (extra ``mlflow``);
* ``csv``: ``RUN/metrics.csv``, one row per epoch.

``metrics.jsonl`` is always written. A tracker is a :class:`Tracker`: a
:class:`~aqa_framework.engine.events.Callback` with a registry ``name``, a pydantic ``Params``
and the pip extra it needs. Importing this package imports no torch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from aqa_framework.engine.events import Callback, Registered, origin_of
from aqa_framework.errors import PluginError, SpecError
from aqa_framework.spec import flat_paths

__all__ = ["Tracker", "TrackerEntry", "flatten", "resolve_trackers", "tracker_entries"]


class Tracker(Callback):
    """Base of experiment trackers.

    Subclasses set ``name`` (a plugin's carry its prefix: ``myplugin.wandb``), ``Params``
    and, when they need optional packages, ``requires`` (import names) and ``extra`` (the
    pip extra or package to install).

    Args:
        params: The validated parameters.
    """

    kind: ClassVar[str] = "tracker"
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""

    class Params(BaseModel):
        """No parameters."""

        model_config = ConfigDict(extra="forbid")

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def missing(cls) -> list[str]:
        """The packages in ``requires`` that are not installed."""
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class TrackerEntry:
    """A registered tracker.

    Attributes:
        name: Its name in ``track:``.
        cls: The tracker class.
        plugin: The plugin that registered it.
    """

    name: str
    cls: type
    plugin: Any


def tracker_entries(registry: Any) -> dict[str, TrackerEntry]:
    """Every tracker the plugins register (hook ``register_trackers``), by name.

    Raises:
        PluginError: When a plugin registers something that is not a :class:`Tracker`, a name
            without its prefix, or a name registered twice.
    """
    from aqa_framework.engine.events import _call, _impls
    from aqa_framework.kinds import NAME_PATTERN

    entries: dict[str, TrackerEntry] = {}
    for impl, info in _impls(registry, "register_trackers"):

        def register(cls: type, _info: Any = info) -> None:
            who = origin_of(_info)
            if not (isinstance(cls, type) and issubclass(cls, Tracker)):
                raise PluginError(
                    f"{who}: register_trackers got {cls!r}; register subclasses of "
                    "aqa_framework.tracking.Tracker"
                )
            name = getattr(cls, "name", "")
            if not (isinstance(name, str) and NAME_PATTERN.match(name)):
                raise PluginError(f"{who}: tracker name {name!r} must be a lower-case identifier")
            if not _info.builtin and not name.startswith(f"{_info.name}."):
                raise PluginError(
                    f"{who}: tracker '{name}' must carry the plugin prefix '{_info.name}.'"
                )
            if name in entries:
                raise PluginError(
                    f"tracker '{name}' is registered twice: by "
                    f"{origin_of(entries[name].plugin)} and by {who}"
                )
            entries[name] = TrackerEntry(name, cls, _info)

        _call(impl, info, register, "register_trackers")
    return entries


def resolve_trackers(
    track: list[Any], registry: Any, source: str | None = None
) -> list[Registered]:
    """The trackers a spec's ``track:`` selects, created and checked.

    Args:
        track: The spec's ``track`` list: names or ``{name, params}`` entries.
        registry: The registry whose plugins provide the trackers.
        source: The spec file (for messages).

    Raises:
        SpecError: For an unknown tracker (naming the installed ones), a tracker given twice,
            bad parameters, or a tracker whose optional dependency is missing (naming the
            ``pip install`` that adds it).
    """
    entries = tracker_entries(registry)
    out: list[Registered] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(track):
        name = item if isinstance(item, str) else item.name
        params = {} if isinstance(item, str) else dict(item.params)
        path = f"track[{i}]"
        entry = entries.get(name)
        if entry is None:
            installed = ", ".join(sorted(entries)) or "none"
            problems.append((path, f"unknown tracker '{name}'; installed trackers: {installed}"))
            continue
        if name in seen:
            problems.append((path, f"tracker '{name}' is given twice"))
            continue
        seen.add(name)
        missing = entry.cls.missing()
        if missing:
            extra = entry.cls.extra or missing[0]
            install = f"pip install {extra}"
            if entry.plugin.builtin:
                install = f"pip install aqa-framework[{extra}]"
            problems.append(
                (path, f"tracker '{name}' needs {', '.join(missing)}, not installed: {install}")
            )
            continue
        try:
            validated = entry.cls.Params(**params)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append((f"{path}.params.{where}", err["msg"]))
            continue
        out.append(Registered(entry.cls(validated), origin_of(entry.plugin)))
    if problems:
        raise SpecError(problems, source=source)
    return out


flatten = flat_paths
"""A nested mapping as ``{"a.b.c": value}`` (:func:`aqa_framework.spec.flat_paths`)."""


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a ``metrics.jsonl`` record as ``{"train/loss": ..., "val/x.y": ...}``.

    ``None`` (a NaN read back from strict JSON) becomes NaN.
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "epoch":
            continue
        if isinstance(value, dict):
            for name, v in value.items():
                if isinstance(v, (int, float)) or v is None:
                    out[f"{key}/{name}"] = float("nan") if v is None else float(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out
