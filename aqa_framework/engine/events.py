"""Training events: what a run tells its callbacks, in which order, with which payload.

A run emits one fixed sequence of events; each is a method of :class:`Callback` that receives
one frozen dataclass::

    run_start                       RunStart     the run folder is claimed, the model built
    resume                          Resume       only when the run continues from a checkpoint
    for each remaining epoch:
        epoch_start                 EpochStart
        step_end       (each step)  StepEnd      the step's losses, the epoch's running means
        evaluate       (each split) Evaluate     metrics of val (and test) after the epoch
        checkpoint     (if written) CheckpointSaved
        epoch_end                   EpochEnd     the epoch's metrics.jsonl record
    evaluate                        Evaluate     ``final=True``: the selected epoch on eval.split
    run_end                         RunEnd       the run's results (written by then)
    interrupt                       Interrupt    instead of the rest, on SIGINT/SIGTERM
    close                           Close        always last: finished, interrupted, pruned
                                                 or failed

The engine's own outputs are callbacks on these events (:mod:`.builtin_callbacks`): the
progress display, ``metrics.jsonl`` and the final results and report run first, then the
trackers a spec selects (``track:``), then the callbacks plugins register (hook
``register_callbacks``) that the spec names in ``callbacks:`` (or that declare ``always =
True``), in plugin order. Installing a plugin thus never changes a run that does not ask for
its callbacks.

Callbacks run on rank 0 only under torchrun; a callback class with ``all_ranks = True`` runs
on every process. A callback that raises stops the run: :class:`CallbackError` names the
plugin and the callback, the run folder keeps its last complete checkpoint (resume it with
``aqa run SPEC --resume RUN``), and every callback still gets :meth:`Callback.on_close`. A
callback that ends a run early on purpose (a hyperparameter search pruning a poor trial) raises
:class:`RunPruned` instead: the run closes with status ``pruned``, not as a failure.

This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aqa_framework.errors import AQAError, PluginError

EVENTS: tuple[str, ...] = (
    "run_start",
    "resume",
    "epoch_start",
    "step_end",
    "evaluate",
    "checkpoint",
    "epoch_end",
    "run_end",
    "interrupt",
    "close",
)
"""Every event, in the order a run emits them (:class:`Callback` has ``on_<event>``)."""


@dataclass(frozen=True)
class RunInfo:
    """What every event carries about the run.

    Attributes:
        folder: The run folder.
        name: The run's name (the folder's name).
        spec: The resolved spec, as stored in ``spec.yaml`` (a plain mapping).
        source: The spec file, if any.
        epochs: ``train.epochs``.
        world_size: Number of processes.
        rank: This process's rank.
        log: Prints a line through the run's console (rank 0).
    """

    folder: Path
    name: str
    spec: dict[str, Any]
    source: str | None
    epochs: int
    world_size: int = 1
    rank: int = 0
    log: Callable[[str], None] = field(default=print, repr=False, compare=False)


@dataclass(frozen=True)
class Event:
    """Base of every event payload.

    Attributes:
        run: The run that emits it.
    """

    run: RunInfo


@dataclass(frozen=True)
class RunStart(Event):
    """The run starts (fresh or resumed): spec and environment are written, the model built.

    Attributes:
        start_epoch: Epochs already completed (0 for a fresh run).
        history: Records of those epochs (``metrics.jsonl``).
        sizes: Samples per split.
    """

    start_epoch: int = 0
    history: tuple[dict[str, Any], ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Resume(Event):
    """The run continues from a checkpoint (right after :class:`RunStart`).

    Attributes:
        after_epoch: The checkpoint's epoch.
        checkpoint: The checkpoint folder it continues from.
    """

    after_epoch: int = 0
    checkpoint: Path | None = None


@dataclass(frozen=True)
class EpochStart(Event):
    """A training epoch starts.

    Attributes:
        epoch: The epoch, from 1.
        steps: Training steps it will take.
        lr: Its learning rate.
    """

    epoch: int = 0
    steps: int = 0
    lr: float = 0.0


@dataclass(frozen=True)
class StepEnd(Event):
    """A training step ended.

    Attributes:
        epoch: The epoch, from 1.
        step: The step, from 1.
        steps: Steps of the epoch.
        losses: This step's losses (``loss``, then one per task); empty if the step had no
            sample to train on.
        updated: Whether the step updated the weights (``False`` for a non-finite or empty
            step).
        mean_losses: The epoch's mean losses so far (over the steps that updated).
        samples_per_s: Training throughput so far (all processes).
    """

    epoch: int = 0
    step: int = 0
    steps: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    updated: bool = True
    mean_losses: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0


@dataclass(frozen=True)
class Evaluate(Event):
    """A split was evaluated.

    Attributes:
        epoch: The epoch evaluated (for the final evaluation, the selected one).
        split: ``val`` or the final split.
        metrics: ``{"task.metric": value}``.
        final: Whether it is the final evaluation of the selected epoch.
        result: The predictions and references
            (:class:`~aqa_framework.engine.loop.EvalResult`).
    """

    epoch: int = 0
    split: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    final: bool = False
    result: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class CheckpointSaved(Event):
    """A resumable checkpoint was written (at the end of an epoch).

    Attributes:
        epoch: Its epoch.
        path: The checkpoint folder (``checkpoints/last``).
        best: Whether it is also the ``best`` checkpoint.
        history: The records it holds (every epoch so far).
    """

    epoch: int = 0
    path: Path | None = None
    best: bool = False
    history: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class EpochEnd(Event):
    """An epoch ended: its record is final.

    Attributes:
        epoch: The epoch, from 1.
        record: Its ``metrics.jsonl`` record (``epoch``, ``lr``, ``train``, ``val``, ...).
        history: Every record so far, this one last.
        best: The selected epoch so far (``epoch``, ``split``, ``metric``, ``value``).
        is_best: Whether this epoch became the best.
        summary: The one-line summary the progress display prints.
    """

    epoch: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    best: dict[str, Any] | None = None
    is_best: bool = False
    summary: str = ""


@dataclass(frozen=True)
class RunEnd(Event):
    """The run finished.

    Attributes:
        metrics: The final metrics (``results.json``).
        epoch: The selected epoch.
        history: Every epoch's record.
        results: Everything the results writer needs
            (:class:`~aqa_framework.engine.results.RunResults`).
        resolved: The resolved spec (:class:`~aqa_framework.resolve.ResolvedSpec`).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    epoch: int = 0
    history: tuple[dict[str, Any], ...] = ()
    results: Any = field(default=None, repr=False)
    resolved: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Interrupt(Event):
    """The run was stopped by a signal; no later epoch event comes.

    Attributes:
        signal: ``SIGINT`` or ``SIGTERM``.
        epoch: The epoch that was running.
        saved_epoch: The epoch of the checkpoint kept (0: none).
        message: What the run prints (how to resume).
    """

    signal: str = ""
    epoch: int = 0
    saved_epoch: int = 0
    message: str = ""


@dataclass(frozen=True)
class Close(Event):
    """Always the last event: release files, writers, connections.

    Attributes:
        status: ``finished``, ``interrupted``, ``pruned`` (a callback raised
            :class:`RunPruned`) or ``failed``.
        error: The error's message when failed.
        reason: Why the run was pruned (the :class:`RunPruned` message), else ``None``.
    """

    status: str = "finished"
    error: str | None = None
    reason: str | None = None


class Callback:
    """Base of training callbacks: override the ``on_<event>`` methods you need.

    A plugin registers the class (hook ``register_callbacks``); a run creates one instance
    with no arguments. Every method does nothing by default.

    Attributes:
        name: Name shown in messages; a plugin's names carry its prefix
            (``gymnastics.podium``).
        all_ranks: Run on every process under torchrun (default: rank 0 only).
        always: Run in every run, without being named in the spec's ``callbacks`` (default:
            only when named). Installing a plugin must not change other people's runs: keep
            it ``False`` unless the callback only observes (a lab-wide run registry).
    """

    name: ClassVar[str] = ""
    all_ranks: ClassVar[bool] = False
    always: ClassVar[bool] = False

    def on_run_start(self, event: RunStart) -> None:
        """The run starts (fresh or resumed)."""

    def on_resume(self, event: Resume) -> None:
        """The run continues from a checkpoint."""

    def on_epoch_start(self, event: EpochStart) -> None:
        """A training epoch starts."""

    def on_step_end(self, event: StepEnd) -> None:
        """A training step ended."""

    def on_evaluate(self, event: Evaluate) -> None:
        """A split was evaluated."""

    def on_checkpoint(self, event: CheckpointSaved) -> None:
        """A checkpoint was written."""

    def on_epoch_end(self, event: EpochEnd) -> None:
        """An epoch ended."""

    def on_run_end(self, event: RunEnd) -> None:
        """The run finished; its results are written."""

    def on_interrupt(self, event: Interrupt) -> None:
        """The run was stopped by a signal."""

    def on_close(self, event: Close) -> None:
        """Last event, whatever happened."""


class CallbackError(PluginError):
    """A training callback raised; the run stopped.

    Attributes:
        origin: Who registered the callback (``plugin 'x' (dist 1.0)`` or ``aqa-framework``).
        callback: The callback's name.
        event: The event it failed on.
    """

    def __init__(self, message: str, origin: str, callback: str, event: str) -> None:
        self.origin = origin
        self.callback = callback
        self.event = event
        super().__init__(message)


class RunPruned(AQAError):
    """Raised by a training callback to end a run early on purpose: a search pruned it.

    Not a failure: the event bus passes it on unwrapped, the run stops there (keeping the
    checkpoints written so far, that of the epoch just ended included when raised in
    ``on_epoch_end``), closes with status ``pruned`` (written to the run folder's
    ``status.json``; ``aqa runs list`` shows it) and ``run_training`` raises it again for the
    caller. ``aqa tune``'s pruning callback raises a subclass.
    """


@dataclass
class Registered:
    """A callback of a run and who registered it.

    Attributes:
        callback: The instance.
        origin: ``plugin 'gymnastics' (aqa-gymnastics 0.1.0)``, ``tracker`` or ``aqa-framework``.
    """

    callback: Callback
    origin: str

    @property
    def label(self) -> str:
        """How messages name it."""
        cb = self.callback
        name = getattr(cb, "name", "") or type(cb).__qualname__
        return f"callback '{name}' ({type(cb).__module__}.{type(cb).__qualname__})"


class EventBus:
    """Sends each event to the run's callbacks, in order.

    Args:
        callbacks: The callbacks with their origins.
        is_main: Whether this process is rank 0 (others only call ``all_ranks`` callbacks).

    Attributes:
        started: Whether ``run_start`` was emitted (only then does ``close`` reach anyone).
    """

    def __init__(self, callbacks: Iterable[Registered], is_main: bool = True) -> None:
        self.callbacks = [
            r for r in callbacks if is_main or getattr(r.callback, "all_ranks", False)
        ]
        self.started = False
        self.closed = False

    def emit(self, event_name: str, event: Event) -> None:
        """Call ``on_<event_name>`` of every callback.

        Raises:
            CallbackError: When a callback raises (the others are not called).
        """
        method = f"on_{event_name}"
        if event_name == "run_start":
            self.started = True
        for registered in self.callbacks:
            fn = getattr(registered.callback, method, None)
            if fn is None:
                continue
            try:
                fn(event)
            except (CallbackError, RunPruned):
                raise
            except Exception as exc:
                raise _failure(registered, event_name, exc) from exc

    def close(self, event: Close) -> list[str]:
        """Send :class:`Close` to every callback; failures are collected, not raised.

        Returns:
            One message per callback whose ``on_close`` raised.
        """
        if self.closed or not self.started:
            return []
        self.closed = True
        problems = []
        for registered in self.callbacks:
            try:
                registered.callback.on_close(event)
            except Exception as exc:
                problems.append(str(_failure(registered, "close", exc)))
        return problems


def _failure(registered: Registered, event_name: str, exc: BaseException) -> CallbackError:
    text = str(exc)
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return CallbackError(
        f"{registered.label} of {registered.origin} raised in on_{event_name}: {what}",
        registered.origin,
        registered.label,
        event_name,
    )


def origin_of(info: Any) -> str:
    """How messages name a plugin (:class:`~aqa_framework.plugins.PluginInfo`)."""
    if getattr(info, "builtin", False):
        return "aqa-framework"
    version = f" {info.version}" if getattr(info, "version", "") else ""
    return f"plugin '{info.name}' ({info.distribution}{version})"


def plugin_callback_classes(registry: Any) -> list[tuple[type, Any]]:
    """The callback classes plugins register (hook ``register_callbacks``), in plugin order.

    Args:
        registry: The :class:`~aqa_framework.registry.Registry` whose plugins are asked.

    Returns:
        ``(class, plugin info)`` pairs.

    Raises:
        PluginError: When a plugin registers something that is not a :class:`Callback`
            subclass, or its hook raises.
    """
    found: list[tuple[type, Any]] = []
    for impl, info in _impls(registry, "register_callbacks"):

        def register(cls: type, _info: Any = info) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Callback)):
                raise PluginError(
                    f"{origin_of(_info)}: register_callbacks got {cls!r}; register subclasses "
                    "of aqa_framework.engine.events.Callback"
                )
            found.append((cls, _info))

        _call(impl, info, register, "register_callbacks")
    return found


def select_callbacks(
    classes: Sequence[tuple[type, Any]], names: Sequence[str], source: str | None = None
) -> list[tuple[type, Any]]:
    """The plugin callbacks a run uses: those the spec's ``callbacks`` names, and ``always`` ones.

    Args:
        classes: ``(class, plugin info)`` pairs from :func:`plugin_callback_classes`.
        names: The spec's ``callbacks``.
        source: The spec file, for messages.

    Raises:
        SpecError: Naming an unknown or repeated callback, with the registered names.
    """
    from aqa_framework.errors import SpecError

    by_name = {getattr(cls, "name", "") or cls.__qualname__: cls for cls, _ in classes}
    known = ", ".join(sorted(by_name)) or "none (no installed plugin registers one)"
    problems = [
        (f"callbacks[{i}]", f"unknown callback '{name}'; registered callbacks: {known}")
        for i, name in enumerate(names)
        if name not in by_name
    ]
    problems += [
        (f"callbacks[{i}]", f"callback '{name}' is named twice")
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    if problems:
        raise SpecError(problems, source=source)
    wanted = set(names)
    return [
        (cls, info)
        for cls, info in classes
        if getattr(cls, "always", False) or (getattr(cls, "name", "") or cls.__qualname__) in wanted
    ]


def _impls(registry: Any, hook_name: str) -> list[tuple[Any, Any]]:
    """Hook implementations of the plugins that loaded, in registration order."""
    by_name = {p.name: p for p in registry.plugins if not p.error}
    hook = getattr(registry.pm.hook, hook_name, None)
    if hook is None:
        return []
    return [
        (impl, by_name[impl.plugin_name])
        for impl in reversed(hook.get_hookimpls())
        if impl.plugin_name in by_name
    ]


def _call(impl: Any, info: Any, register: Callable[..., None], hook_name: str) -> None:
    try:
        impl.function(register=register)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{origin_of(info)}: {hook_name} raised {type(exc).__name__}: {exc}"
        ) from exc


def instantiate(classes: Sequence[tuple[type, Any]]) -> list[Registered]:
    """One instance of each callback class, with its origin.

    Raises:
        PluginError: When a class cannot be created without arguments.
    """
    out = []
    for cls, info in classes:
        try:
            out.append(Registered(cls(), origin_of(info)))
        except Exception as exc:
            raise PluginError(
                f"{origin_of(info)}: callback {cls.__module__}.{cls.__qualname__} could not be "
                f"created: {type(exc).__name__}: {exc}"
            ) from exc
    return out
