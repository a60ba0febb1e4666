"""Hyperparameter search with Optuna: ``aqa tune SPEC --space FILE``.

Each trial is one ``aqa run`` of the spec with the trial's values set as overrides, trained
into ``<out>/trial-<number>``. The objective is the spec's selection metric (``train.
select_metric``) on the validation split at the selected epoch; its direction is the one the
run's selection uses. After each epoch a training callback reports the validation value to
the trial, and the pruner may stop a poor trial there: the callback raises
:class:`TrialPrunedStop`, the run stops after that epoch's checkpoint and the trial is recorded
as pruned; its run folder closes with status ``pruned`` (``status.json``; ``aqa runs list``
shows it), not as a failure. The study lives in a database URL (default
``sqlite:///<out>/study.db``), so several processes or machines running the same command work
on one study. The best trial's spec is written to ``<out>/best.yaml``, ready for ``aqa run``.

The space file (YAML)::

    trials: 20                        # trials this process runs (default; --trials wins)
    pruner: {name: median, startup_trials: 3, warmup_epochs: 1}   # or hyperband, none
    params:
      train.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      data.batch_size: {type: int, low: 2, high: 8, step: 2}
      model.heads.score.params.hidden: {type: categorical, choices: [64, 128, 256]}

Optuna is an optional dependency (``pip install 'aqa-framework[tune]'``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aqa_framework.engine.events import Callback, EpochEnd, RunPruned
from aqa_framework.errors import AQAError, SpecError

__all__ = [
    "ParamSpace",
    "PrunerSpec",
    "SearchSpace",
    "StudyOptions",
    "TrialPrunedStop",
    "TuneSummary",
    "load_space",
    "require_optuna",
    "run_tune",
]


def require_optuna() -> Any:
    """Import Optuna or say which extra installs it."""
    try:
        import optuna
    except ImportError:
        raise AQAError(
            "aqa tune needs Optuna: pip install 'aqa-framework[tune]' (or pip install optuna)"
        ) from None
    return optuna


class ParamSpace(BaseModel):
    """The range of one spec value a trial sets."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"] = Field(
        description="Kind of value: float, int or categorical."
    )
    low: float | None = Field(None, description="Lowest value (float, int).")
    high: float | None = Field(None, description="Highest value, included (float, int).")
    log: bool = Field(False, description="Sample on a log scale (float, int).")
    step: float | None = Field(None, description="Spacing of the values (float, int).")
    choices: list[Any] | None = Field(
        None, description="The values (categorical): numbers, strings, booleans or null."
    )

    def problems(self) -> list[str]:
        """What is wrong with the range (empty when it is usable)."""
        if self.type == "categorical":
            if not self.choices:
                return ["categorical needs a non-empty 'choices' list"]
            bad = [c for c in self.choices if not isinstance(c, (str, int, float, bool))
                   and c is not None]
            return [f"choices must be numbers, strings, booleans or null, not {bad[0]!r}"] \
                if bad else []
        if self.low is None or self.high is None:
            return [f"{self.type} needs 'low' and 'high'"]
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            return [f"expected finite low <= high, got {self.low} and {self.high}"]
        if self.log and self.low <= 0:
            return ["log: true needs low > 0"]
        return []

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask the trial for a value."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class PrunerSpec(BaseModel):
    """Which trials stop early."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["median", "hyperband", "none"] = Field(
        "median", description="median (below the median of earlier trials), hyperband, none."
    )
    startup_trials: int = Field(
        2, ge=0, description="Trials that always finish before any is pruned (median)."
    )
    warmup_epochs: int = Field(
        1, ge=0, description="Epochs a trial always trains before it may be pruned."
    )


class SearchSpace(BaseModel):
    """A space file: what the trials vary, how many run, which are pruned."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamSpace] = Field(
        description="Spec path (as --set takes it) -> the range of its value."
    )
    trials: int = Field(10, ge=1, description="Trials this process runs.")
    pruner: PrunerSpec = Field(default_factory=PrunerSpec, description="Early stopping.")

    def make_pruner(self, optuna: Any) -> Any:
        """The Optuna pruner."""
        p = self.pruner
        if p.name == "none":
            return optuna.pruners.NopPruner()
        if p.name == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=max(1, p.warmup_epochs))
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs
        )


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file.

    Raises:
        SpecError: Naming the file and the entry that is wrong.
    """
    from aqa_framework.spec import load_raw

    raw = load_raw(path)
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as exc:
        from aqa_framework.spec import errors_from_validation

        raise SpecError(errors_from_validation(exc), source=str(path)) from None
    problems = [(f"params.{k}", why) for k, p in space.params.items() for why in p.problems()]
    if not space.params:
        problems.append(("params", "name at least one spec value to search"))
    if problems:
        raise SpecError(problems, source=str(path))
    return space


class TrialPrunedStop(RunPruned):
    """Raised by the tuning callback to stop a trial the pruner judged poor.

    A :class:`~aqa_framework.engine.events.RunPruned`: the trial's run closes as ``pruned``.
    """


class _ReportCallback(Callback):
    """Reports the validation value after each epoch; stops the run if the trial is pruned."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.best: float | None = None

    def on_epoch_end(self, event: EpochEnd) -> None:
        val = event.record.get("val")
        if not isinstance(val, dict):
            raise AQAError(
                "aqa tune needs a validation split to judge trials: set data.val_fraction > 0 "
                "(or use a dataset with a val split)"
            )
        if self.metric not in val:
            raise AQAError(f"no validation metric {self.metric!r}; the heads report: "
                           + ", ".join(sorted(val)))
        value = float(val[self.metric])
        best = event.best or {}
        if best.get("split") == "val" and best.get("value") is not None:
            self.best = float(best["value"])
        if not math.isfinite(value):
            return
        self.trial.report(value, event.epoch)
        if self.trial.should_prune():
            raise TrialPrunedStop(f"trial {self.trial.number} pruned after epoch {event.epoch}")


@dataclass(frozen=True)
class StudyOptions:
    """Where the study lives and how this process samples.

    Attributes:
        storage: Database URL (default ``sqlite:///<out>/study.db``); several processes or
            machines given the same URL and name work on one study.
        name: The study's name (default: the spec file's stem).
        seed: Seed of the TPE sampler (give each worker its own, or none).
    """

    storage: str | None = None
    name: str | None = None
    seed: int | None = None


@dataclass
class TuneSummary:
    """What a tuning process did and the study's best trial.

    Attributes:
        study: The study's name.
        storage: Its database URL.
        trials: ``(number, state, value, params)`` of every trial of the study.
        best_value: The best objective value, ``None`` when no trial completed.
        best_params: The best trial's values.
        best_spec: Where the best trial's spec was written (``None`` without a best trial).
        direction: ``maximize`` or ``minimize``.
    """

    study: str
    storage: str
    trials: list[tuple[int, str, float | None, dict[str, Any]]]
    best_value: float | None
    best_params: dict[str, Any]
    best_spec: Path | None
    direction: str


def _override(path: str, value: Any) -> str:
    return f"{path}={json.dumps(value)}"


def _pruned(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RunPruned):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _direction(spec_path: Path, overrides: Sequence[str]) -> tuple[str, str]:
    """The selection metric and ``maximize``/``minimize`` as the runs would select."""
    from aqa_framework.engine.selection import resolve_selection
    from aqa_framework.resolve import load

    resolved = load(spec_path, list(overrides))
    heads = {task: head.cls for task, head in resolved.heads.items()}
    selection = resolve_selection(resolved.spec, has_val=True, heads=heads)
    return selection.metric, "maximize" if selection.mode == "max" else "minimize"


def _open_study(optuna: Any, attempts: int = 8, **kwargs: Any) -> Any:
    """Create or join a study.

    Workers starting together on a new database may collide while it creates its tables (the
    driver then raises an integrity or locking error): such an attempt is retried after a short
    random wait. Wrong arguments (``ValueError``) are not retried.
    """
    import random
    import time

    for attempt in range(attempts):
        try:
            return optuna.create_study(**kwargs)
        except ValueError:
            raise
        except Exception as exc:  # the database driver's errors
            if attempt == attempts - 1:
                raise AQAError(
                    f"cannot open study {kwargs.get('study_name')!r} in "
                    f"{kwargs.get('storage')}: {exc}"
                ) from exc
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def run_tune(
    spec_path: str | Path,
    space: SearchSpace,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    study: StudyOptions | None = None,
    on_trial: Callable[[int, str, float | None], None] | None = None,
) -> TuneSummary:
    """Run trials of a study (created or joined) and write the best trial's spec.

    Args:
        spec_path: The spec to tune.
        space: What the trials vary.
        out: Folder of the trials' runs, the default database and ``best.yaml``.
        overrides: ``--set`` overrides applied to every trial (before the trial's values).
        trials: Trials this process runs (default: the space file's).
        study: The study's database, name and sampler seed.
        on_trial: Called as ``on_trial(number, state, value)`` after each trial.

    Returns:
        The study's trials and its best one.

    Raises:
        AQAError: If Optuna is missing or a trial's spec is invalid.
    """
    optuna = require_optuna()
    from aqa_framework.engine.runner import run_training
    from aqa_framework.resolve import load

    spec_path, folder = Path(spec_path), Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    options = study or StudyOptions()
    storage = options.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    metric, direction = _direction(spec_path, overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = _open_study(
        optuna,
        study_name=options.name or spec_path.stem, storage=storage, load_if_exists=True,
        direction=direction, sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=space.make_pruner(optuna),
    )

    def objective(trial: Any) -> float:
        values = {path: p.suggest(trial, path) for path, p in space.params.items()}
        resolved = load(spec_path, [*overrides, *(_override(k, v) for k, v in values.items())])
        callback = _ReportCallback(trial, metric)
        trial.set_user_attr("run_dir", str(folder / f"trial-{trial.number}"))
        try:
            run_training(resolved, run_dir=folder / f"trial-{trial.number}",
                         callbacks=[callback])
        except AQAError as exc:
            if _pruned(exc):
                raise optuna.TrialPruned(str(exc)) from None
            raise
        if callback.best is None or not math.isfinite(callback.best):
            raise AQAError(f"trial {trial.number}: no finite validation {metric}")
        return callback.best

    def after(study_: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(trial.number, trial.state.name.lower(), trial.value)

    opened.optimize(objective, n_trials=trials or space.trials, callbacks=[after])
    return _summarise(opened, storage, spec_path, folder, overrides, direction)


def _summarise(
    study: Any, storage: str, spec_path: Path, folder: Path, overrides: Sequence[str],
    direction: str,
) -> TuneSummary:
    """The study's trials; the best one's spec written to ``best.yaml``."""
    import yaml

    from aqa_framework.files import write_text_atomic
    from aqa_framework.spec import apply_overrides, load_raw

    rows = [(t.number, t.state.name.lower(), t.value, dict(t.params)) for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return TuneSummary(study.study_name, storage, rows, None, {}, None, direction)
    best = study.best_trial
    raw = apply_overrides(load_raw(spec_path),
                          [*overrides, *(_override(k, v) for k, v in best.params.items())])
    path = folder / "best.yaml"
    header = (f"# best trial {best.number} of study '{study.study_name}' ({storage}): "
              f"{direction} -> {best.value}\n# run it with: aqa run {path}\n")
    write_text_atomic(path, header + yaml.safe_dump(raw, sort_keys=False))
    return TuneSummary(study.study_name, storage, rows, float(best.value), dict(best.params),
                       path, direction)
