"""Sweeps: one base spec, a grid of overrides, one run per grid point, one results table.

A sweep file names a base spec and a set of *axes*. Each axis is either a mapping
``label -> override set`` or a list of values for the spec path the axis is named after::

    base: ../quickstart.yaml            # relative to this file
    axes:
      tasks:                            # label -> override set
        aqa:          {model.heads.cls: null, model.heads.caption: null}
        aqa+cls:      {model.heads.caption: null}
        aqa+caps:     {model.heads.cls: null}
        aqa+cls+caps: {}
      seed: [0, 1, 2]                   # values of the spec path "seed"
    metrics: [score.spearman]
    set: [train.epochs=20]              # applied to every run

An override set maps dotted spec paths to values, or is a list of ``--set`` strings
(``a.b=1``, ``~a.b`` to remove); both forms mean exactly what ``--set`` means. ``null`` sets
a value to ``null`` as in a spec file, except that a head set to ``null`` is dropped (so
``model.heads.caption: null`` drops the caption head); ``~a.b: null`` removes any key. The
sweep's ``set`` and the command line's ``--set`` change the base spec; the runs are the
Cartesian product of the axes, in the order written.
A list axis sets the spec path it is named after, or the one ``paths`` gives for it, so that
the axis, the run folders and the table keep a short name::

    axes:
      task: [Suturing, Knot_Tying, Needle_Passing]
      fold: [0, 1, 2, 3]
    paths: {task: data.params.task, fold: data.params.fold}   # run ids: task-Suturing__fold-0

Results are averaged over the *replicate* axis (``seed`` by default; ``replicate: fold`` for
cross-validation): every other axis combination is one row of the table, with the mean and the
sample standard deviation of each metric over the replicates (each run's values are in
``runs.csv``). A NaN among a row's values makes the row's mean NaN (and is reported).

A *summary* combines the rows across another axis, as the AQA literature reports JIGSAWS
(per task the mean over the four folds, then the Fisher-z average across the three tasks) and
AQA-7 (one model per action, the Fisher-z average of the per-action correlations)::

    replicate: fold
    summary:
      across: task                  # the axis whose rows are combined
      correlation: fisher_z         # or mean
      correlations: [score.spearman]   # default: metrics whose name ends in spearman/pearson

For every combination of the remaining row axes the table gets a summary row: correlation
metrics are combined by :func:`aqa_framework.metrics.fisher_z_mean` of the row means
(``tanh(mean(artanh(r)))``, ``r`` clipped to +-0.9999) or by their arithmetic mean, every other
metric by the arithmetic mean of the row means; each summary cell names its method. A NaN row
mean makes the summary NaN (reported, never dropped); a row without a result leaves the summary
cell empty.

Every metric comes from a run's final evaluation (``results.json``): the table shows the split
it was computed on and how the run chose its epoch (the last one, on the validation split, or
on the evaluated split itself, which is marked optimistic), or that the run reports the mean of
its last epochs' test metrics (``train.select_on: last_mean``, marked as a paper protocol). The
sweep never picks epochs.

The sweep folder holds ``sweep.yaml`` (a copy of the file), ``plan.json`` (every run's full
spec), ``runs/<run id>/`` (the run folders), ``results/<run id>.json`` (a finished run's final
metrics) and the tables ``results.md``, ``results.csv`` and ``runs.csv``. Running the same sweep
again skips finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from aqa_framework import jsonio
from aqa_framework.errors import AQAError, SpecError
from aqa_framework.experiments.launchers import LauncherSpec, PointJob, launch_points
from aqa_framework.files import markdown_table, write_json_atomic, write_text_atomic
from aqa_framework.spec import (
    apply_override,
    errors_from_validation,
    load_raw,
    override_entry,
    parse_override,
)

_METRIC_RE = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-.]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]+")
_PATH_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")

OverrideSet = dict[str, Any] | list[str]
Scalar = str | int | float | bool | None


CORRELATION_SUFFIXES: tuple[str, ...] = ("spearman", "pearson")
"""Metrics whose name ends in one of these are correlations (summarised by Fisher z)."""


class SweepSummary(BaseModel):
    """How the rows of a sweep are combined across one axis (``summary`` in a sweep file)."""

    model_config = ConfigDict(extra="forbid")

    across: str = Field(
        description="Axis whose rows are combined into one summary row (e.g. task, action); "
        "neither the replicate axis nor a missing one."
    )
    correlation: Literal["fisher_z", "mean"] = Field(
        "fisher_z",
        description="How correlation metrics are combined: 'fisher_z' (tanh of the mean of "
        "artanh of the row means, as for AQA-7 actions and JIGSAWS tasks) or 'mean'.",
    )
    correlations: list[str] | None = Field(
        None,
        description="Metrics combined as correlations; default: the metrics whose name ends "
        "in spearman or pearson. Every other metric is combined by its arithmetic mean.",
    )

    def is_correlation(self, metric: str) -> bool:
        """Whether ``metric`` is combined as a correlation."""
        if self.correlations is not None:
            return metric in self.correlations
        return metric.endswith(CORRELATION_SUFFIXES)

    def method(self, metric: str) -> str:
        """``"fisher_z"`` or ``"mean"``: how the summary combines ``metric``."""
        return self.correlation if self.is_correlation(metric) else "mean"


def _axes_text(axes: Mapping[str, Any]) -> str:
    return ", ".join(axes) or "none"


class SweepFile(BaseModel):
    """The contents of a sweep file (validated; every error names its path)."""

    model_config = ConfigDict(extra="forbid")

    base: Path = Field(description="The base run spec, relative to the sweep file.")
    name: str | None = Field(None, description="Sweep name; defaults to the file name.")
    description: str = Field("", description="Free text, copied to the results table.")
    axes: dict[str, dict[str, OverrideSet] | list[Scalar]] = Field(
        min_length=1,
        description="Axis name -> {label: override set} or a list of values of the spec path "
        "the axis is named after (e.g. seed: [0, 1, 2]) or that paths gives for it.",
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="List axis name -> the spec path its values set (e.g. fold: "
        "data.params.fold); default: the axis name itself.",
    )
    replicate: str = Field(
        "seed",
        description="Axis averaged over in the results table (mean and std per row), e.g. "
        "seed or fold. The default 'seed' may be absent (then every run is its own row); a "
        "name given explicitly must be an axis.",
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["score.spearman"],
        min_length=1,
        description="Metrics (task.metric) shown in the results table.",
    )
    summary: SweepSummary | None = Field(
        None,
        description="Combine the rows across one axis into a summary row (Fisher z for "
        "correlations, arithmetic mean otherwise), e.g. {across: task}.",
    )
    set: list[str] = Field(
        default_factory=list, description="Overrides (a.b.c=value, ~a.b.c) applied to every run."
    )
    output: Path | None = Field(
        None, description="Sweep folder; defaults to runs/sweeps/<name>."
    )
    launcher: LauncherSpec = Field(
        default_factory=LauncherSpec,
        description="Where the points train: local, ray or slurm, with CPUs, GPUs, partition "
        "and time per point (aqa sweep --launcher and its flags override it).",
    )

    @field_validator("axes")
    @classmethod
    def _axes_not_empty(cls, axes: dict) -> dict:
        for name, values in axes.items():
            if not name.strip():
                raise ValueError("axis names must not be empty")
            if len(values) == 0:
                raise ValueError(f"axis {name!r} has no values")
            if isinstance(values, list):
                labels = [_label(v) for v in values]
                dup = sorted({x for x in labels if labels.count(x) > 1})
                if dup:
                    raise ValueError(f"axis {name!r} repeats values: {', '.join(dup)}")
        return axes

    @field_validator("paths")
    @classmethod
    def _paths_of_list_axes(cls, paths: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        axes = info.data.get("axes")
        if axes is None:  # the axes themselves failed; that error is reported
            return paths
        for name, path in paths.items():
            if name not in axes:
                raise ValueError(f"{name!r} is not an axis (axes: {_axes_text(axes)})")
            if not isinstance(axes[name], list):
                raise ValueError(
                    f"axis {name!r} maps labels to override sets, which name their own spec "
                    "paths; paths only applies to an axis given as a list of values"
                )
            if not _PATH_RE.match(path):
                raise ValueError(f"{name}: {path!r} is not a dotted spec path (a.b.c)")
        return paths

    @field_validator("replicate")
    @classmethod
    def _replicate_is_an_axis(cls, replicate: str, info: ValidationInfo) -> str:
        axes = info.data.get("axes")
        if axes is not None and replicate not in axes:
            raise ValueError(
                f"{replicate!r} is not an axis of this sweep (axes: {_axes_text(axes)}); name "
                "the axis whose runs are averaged in each row"
            )
        return replicate

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: list[str]) -> list[str]:
        bad = [m for m in metrics if not _METRIC_RE.match(m)]
        if bad:
            raise ValueError(f"metrics must be task.metric (e.g. score.spearman), got {bad}")
        return metrics

    @field_validator("summary")
    @classmethod
    def _summary_axis(cls, summary: SweepSummary | None, info: ValidationInfo):
        axes, replicate = info.data.get("axes"), info.data.get("replicate", "seed")
        if summary is None or axes is None:
            return summary
        if summary.across not in axes:
            raise ValueError(
                f"summary.across: {summary.across!r} is not an axis of this sweep "
                f"(axes: {_axes_text(axes)})"
            )
        if summary.across == replicate:
            raise ValueError(
                f"summary.across: {summary.across!r} is the replicate axis, which is averaged "
                "within each row; summarise across another axis (e.g. task) or set replicate"
            )
        metrics = info.data.get("metrics")
        unknown = [m for m in summary.correlations or [] if metrics and m not in metrics]
        if unknown:
            raise ValueError(
                f"summary.correlations: {', '.join(unknown)} not among the metrics "
                f"({', '.join(metrics or [])})"
            )
        return summary


@dataclass
class SweepRun:
    """One point of the grid.

    Attributes:
        id: Folder name of the run (``tasks-aqa+cls__seed-0``).
        labels: Axis name -> label of this run's value on that axis.
        raw: The full raw spec of the run (base + overrides).
    """

    id: str
    labels: dict[str, str]
    raw: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        """A fingerprint of the run's spec (detects a sweep file edited between resumes)."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Sweep:
    """A loaded sweep file.

    Attributes:
        file: The validated contents.
        source: Path of the sweep file.
        text: The file's text (copied into the sweep folder).
    """

    file: SweepFile
    source: Path
    text: str = ""

    @property
    def name(self) -> str:
        """The sweep's name (``name`` in the file, else the file name without suffix)."""
        return self.file.name or self.source.stem

    @property
    def base_path(self) -> Path:
        """The base spec, resolved relative to the sweep file."""
        base = self.file.base.expanduser()
        return base if base.is_absolute() else self.source.parent / base

    @property
    def group_axes(self) -> list[str]:
        """Axes that make the rows of the results table (all but the replicate axis)."""
        return [a for a in self.file.axes if a != self.file.replicate]

    def default_folder(self) -> Path:
        """``output`` from the file, else ``runs/sweeps/<name>``."""
        return self.file.output or Path("runs") / "sweeps" / self.name


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file.

    Raises:
        SpecError: If the file is missing, not YAML, or does not fit :class:`SweepFile`.
    """
    p = Path(path)
    raw = load_raw(p)
    try:
        file = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(errors_from_validation(exc), source=str(p)) from None
    return Sweep(file, p, p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# expansion


def _label(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "_"


def apply_override_set(raw: dict[str, Any], overrides: OverrideSet, where: str) -> None:
    """Apply one override set to a raw spec (in place).

    Args:
        raw: The raw spec mapping.
        overrides: ``{dotted.path: value}`` (``{~dotted.path: null}`` removes the key) or
            ``--set`` strings; both mean what ``--set`` means (:func:`.spec.apply_override`).
        where: Path of the override set in the sweep file, for messages.

    Raises:
        SpecError: Naming ``where`` if an override does not apply.
    """
    try:
        if isinstance(overrides, list):
            parsed = [parse_override(item) for item in overrides]
        else:
            parsed = [override_entry(k, copy.deepcopy(v)) for k, v in overrides.items()]
        for path, value, remove in parsed:
            apply_override(raw, path, value, remove)
    except SpecError as exc:
        problems = [(f"{where}: {p}" if p else where, m) for p, m in exc.problems]
        raise SpecError(problems) from None


def _axis_points(
    name: str, values: Mapping[str, OverrideSet] | Sequence[Scalar], path: str | None = None
) -> list:
    """(label, override set) pairs of one axis; a list axis sets ``path`` (default ``name``)."""
    if isinstance(values, Mapping):
        return [(str(label), ov) for label, ov in values.items()]
    return [(_label(v), {path or name: v}) for v in values]


def expand(sweep: Sweep, overrides: Iterable[str] = ()) -> list[SweepRun]:
    """Expand a sweep into its runs: base spec, sweep ``set``, ``overrides``, then the axes.

    ``set`` and ``overrides`` change the base spec that every run starts from; the axes come
    last, so an axis that removes a head removes it even if an override configured it.

    Args:
        sweep: The loaded sweep.
        overrides: ``--set`` strings given on the command line (applied to the base spec).

    Returns:
        The runs in grid order (the first axis varies slowest).

    Raises:
        SpecError: If the base spec cannot be read or an override does not apply.
    """
    base = load_raw(sweep.base_path)
    apply_override_set(base, list(sweep.file.set), "set")
    apply_override_set(base, list(overrides), "--set")
    paths = sweep.file.paths
    axes = [
        (name, _axis_points(name, values, paths.get(name)))
        for name, values in sweep.file.axes.items()
    ]
    runs: list[SweepRun] = []
    for combo in product(*(points for _, points in axes)):
        raw = copy.deepcopy(base)
        labels: dict[str, str] = {}
        for (axis, _), (label, ov) in zip(axes, combo, strict=True):
            apply_override_set(raw, ov, f"axes.{axis}.{label}")
            labels[axis] = label
        run_id = "__".join(f"{_safe(a)}-{_safe(lab)}" for a, lab in labels.items())
        runs.append(SweepRun(run_id, labels, raw))
    ids = [r.id for r in runs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SpecError([("axes", f"labels give clashing run folder names: {', '.join(dup)}")])
    return runs


# ---------------------------------------------------------------------------------------------
# running


TrainFn = Callable[..., Path]
"""``train(resolved, run_dir=Path, resume=Path | None) -> Path`` (the engine's run_training)."""


@dataclass
class RunStatus:
    """Where one run of a sweep stands.

    Attributes:
        run: The run.
        state: ``"done"``, ``"partial"`` (folder exists, no result yet) or ``"pending"``.
        metrics: Final metrics of a finished run (``task.metric`` -> value).
        source: Where the metrics come from (:func:`read_run_source`); empty if unknown.
    """

    run: SweepRun
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)


class SweepFolder:
    """The on-disk state of a sweep: run folders, results and the plan.

    Args:
        root: The sweep folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, run: SweepRun) -> Path:
        """The run folder of ``run``."""
        return self.root / "runs" / run.id

    def result_path(self, run: SweepRun) -> Path:
        """Where a finished run's metrics are stored."""
        return self.root / "results" / f"{run.id}.json"

    def status(self, run: SweepRun) -> RunStatus:
        """Finished, interrupted or not started.

        Raises:
            SpecError: If the run was made from a different spec than ``run`` now describes.
        """
        result = self.result_path(run)
        if result.is_file():
            data = json.loads(result.read_text(encoding="utf-8"))
            self._check_hash(run, data.get("spec_hash"))
            metrics = {k: jsonio.number(v) for k, v in data["metrics"].items()}
            return RunStatus(run, "done", metrics, dict(data.get("source") or {}))
        if self.run_dir(run).exists():
            self._check_hash(run, self._planned_hash(run))
            return RunStatus(run, "partial")
        return RunStatus(run, "pending")

    def _planned_hash(self, run: SweepRun) -> str | None:
        plan = self.root / "plan.json"
        if not plan.is_file():
            return None
        entries = json.loads(plan.read_text(encoding="utf-8")).get("runs", {})
        return entries.get(run.id, {}).get("spec_hash")

    def _check_hash(self, run: SweepRun, stored: str | None) -> None:
        if stored is not None and stored != run.spec_hash:
            raise SpecError(
                [
                    (
                        "",
                        f"run {run.id} in {self.root} was made from a different spec than the "
                        "sweep now describes (the sweep file, its base spec or --set changed). "
                        f"Use another --output folder, or delete {self.run_dir(run)} and "
                        f"{self.result_path(run)} to redo it.",
                    )
                ]
            )

    def write_plan(self, sweep: Sweep, runs: Sequence[SweepRun]) -> None:
        """Write ``sweep.yaml`` and ``plan.json`` (keeping entries of runs no longer planned)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / "sweep.yaml", sweep.text)
        plan_path = self.root / "plan.json"
        old = json.loads(plan_path.read_text("utf-8")) if plan_path.is_file() else {}
        entries = dict(old.get("runs", {}))
        for run in runs:
            entries[run.id] = {"labels": run.labels, "spec_hash": run.spec_hash, "spec": run.raw}
        plan = {"name": sweep.name, "base": str(sweep.base_path), "runs": entries}
        write_json_atomic(plan_path, plan, default=str)

    def write_result(
        self,
        run: SweepRun,
        metrics: Mapping[str, float],
        run_dir: Path,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a finished run's final metrics and where they come from."""
        data = {
            "id": run.id,
            "labels": run.labels,
            "spec_hash": run.spec_hash,
            "run_dir": str(run_dir),
            "metrics": dict(metrics),
            "source": dict(source or {}),
        }
        path = self.result_path(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, data)


def run_label(run: SweepRun, source: str | None = None) -> str:
    """How messages name a run of a sweep: ``sweep.yaml [run-id]``."""
    return f"{source} [{run.id}]" if source else run.id


def _resolve_run(run: SweepRun, source: str | None = None) -> Any:
    from aqa_framework.resolve import load

    return load(run.raw, label=run_label(run, source))


def resolve_run(run: SweepRun, source: str | None = None):
    """Validate a run's spec (both passes) and return the resolved spec.

    Deprecated: use ``aqa_framework.resolve.load(run.raw, label=run_label(run, source))``.

    Raises:
        SpecError: Naming the run, with every problem's path.
    """
    import warnings

    warnings.warn(
        "aqa_framework.experiments.sweep.resolve_run is deprecated; use "
        "aqa_framework.resolve.load(run.raw, label=run_label(run, source))",
        DeprecationWarning,
        stacklevel=2,
    )
    return _resolve_run(run, source)


def run_sweep(
    sweep: Sweep,
    folder: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    train: TrainFn | None = None,
    read_metrics: Callable[[Path], dict[str, float]] | None = None,
    read_source: Callable[[Path], dict[str, Any]] | None = None,
    resolve_fn: Callable[[SweepRun, str | None], Any] | None = None,
    on_event: Callable[[str, RunStatus], None] | None = None,
) -> list[RunStatus]:
    """Run every unfinished run of a sweep, one after the other or on Ray or SLURM.

    Every run's spec is validated before the first one starts. Finished runs are skipped; an
    interrupted run (folder but no result) is resumed from its run folder. The sweep file's
    ``launcher`` says where the points train (:mod:`~aqa_framework.experiments.launchers`):
    ``local`` here, one after the other, with ``train``; ``ray`` or ``slurm`` on those engines.

    Args:
        sweep: The loaded sweep.
        folder: The sweep folder; defaults to :meth:`Sweep.default_folder`.
        overrides: ``--set`` strings applied to every run.
        train: The training function; defaults to the engine's ``run_training``.
        read_metrics: Reads final metrics from a run folder; defaults to
            :func:`read_run_metrics`.
        read_source: Reads where a run folder's metrics come from; defaults to
            :func:`read_run_source`.
        resolve_fn: Validates a run's spec; defaults to :func:`aqa_framework.resolve.load`
            of the run's raw spec, named by :func:`run_label`.
        on_event: Called with ``("skip" | "start" | "resume" | "done", status)``.

    Returns:
        The status of every run after the sweep.
    """
    runs = expand(sweep, overrides)
    resolve_fn = resolve_fn or _resolve_run
    resolved = {run.id: resolve_fn(run, str(sweep.source)) for run in runs}
    root = SweepFolder(folder or sweep.default_folder())
    statuses = [root.status(run) for run in runs]  # fails early on edited sweeps
    root.write_plan(sweep, runs)
    if train is None:
        from aqa_framework.engine.runner import run_training as train
    read_metrics = read_metrics or read_run_metrics
    read_source = read_source or read_run_source
    notify = on_event or (lambda _event, _status: None)
    out: list[RunStatus] = []
    queued: list[tuple[RunStatus, Path, Path | None]] = []
    for status in statuses:
        run = status.run
        if status.state == "done":
            notify("skip", status)
            out.append(status)
            continue
        run_dir = root.run_dir(run)
        if status.state == "partial":  # maybe finished but stopped before it was recorded
            try:
                metrics = read_metrics(run_dir)
            except (AQAError, OSError):
                pass
            else:
                source = read_source(run_dir)
                root.write_result(run, metrics, run_dir, source)
                done = RunStatus(run, "done", metrics, source)
                notify("skip", done)
                out.append(done)
                continue
        # A partial run without a checkpoint is started afresh in its folder: the runner
        # clears what that run wrote (under the folder's lock) and keeps any other file.
        resume = run_dir if status.state == "partial" and _resumable(run_dir) else None
        queued.append((status, run_dir, resume))

    def record(status: RunStatus, made: Path) -> None:
        metrics, source = read_metrics(made), read_source(made)
        root.write_result(status.run, metrics, made, source)
        done = RunStatus(status.run, "done", metrics, source)
        notify("done", done)
        out.append(done)

    launcher = sweep.file.launcher
    if launcher.name != "local":
        by_id = {s.run.id: s for s, _d, _r in queued}
        for status, _d, resume in queued:
            notify("resume" if resume else "start", status)
        jobs = [PointJob(s.run.id, _portable_raw(s.run.raw, resolved[s.run.id]),
                         run_label(s.run, str(sweep.source)), str(d.absolute()), r is not None)
                for s, d, r in queued]
        launch_points(launcher, jobs, root.root / "launcher-logs",
                      lambda job, made: record(by_id[job.id], made))
    else:
        for status, run_dir, resume in queued:
            notify("resume" if resume else "start", status)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            record(status, Path(train(resolved[status.run.id], run_dir=run_dir,
                                      resume=resume)))
    return out


def _portable_raw(raw: dict[str, Any], resolved: Any) -> dict[str, Any]:
    """``raw`` with relative path params made absolute, for workers in another directory."""
    from aqa_framework.resolve import ResolvedSpec
    from aqa_framework.spec_paths import absolute_raw_paths

    return absolute_raw_paths(raw, resolved) if isinstance(resolved, ResolvedSpec) else raw


def sweep_status(
    sweep: Sweep, folder: str | Path | None = None, overrides: Iterable[str] = ()
) -> list[RunStatus]:
    """The state of every run without running anything."""
    root = SweepFolder(folder or sweep.default_folder())
    return [root.status(run) for run in expand(sweep, overrides)]


def _resumable(run_dir: Path) -> bool:
    """Whether an interrupted run folder holds a checkpoint to resume from."""
    from aqa_framework.engine.checkpoint import find_checkpoint
    from aqa_framework.errors import CheckpointError

    try:
        find_checkpoint(run_dir, prefer=("last",))
    except CheckpointError:
        return False
    return True


def read_run_metrics(run_dir: Path) -> dict[str, float]:
    """Final metrics of a finished run folder (``task.metric`` -> value, from results.json).

    Raises:
        aqa_framework.errors.CheckpointError: If the folder holds no final results.
    """
    from aqa_framework.engine.run_folder import RESULTS_FILE
    from aqa_framework.errors import CheckpointError

    path = Path(run_dir) / RESULTS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"no final metrics in {path}: {exc}") from None
    return {  # null: a metric that was NaN (strict JSON)
        k: jsonio.number(v)
        for k, v in metrics.items()
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
    }


def read_run_source(run_dir: Path) -> dict[str, Any]:
    """Where a finished run's final metrics come from (from its ``results.json``).

    Returns:
        ``{"split": evaluated split, "selected_on": split that chose the epoch or None for
        the last epoch, "epoch": reported epoch}``, plus ``"last_epochs"`` (the number of
        averaged epochs) for a run with ``train.select_on: last_mean``; empty if the folder
        does not say (a run written by another training function).
    """
    from aqa_framework.engine.run_folder import RESULTS_FILE

    try:
        data = json.loads((Path(run_dir) / RESULTS_FILE).read_text(encoding="utf-8"))
        return source_of_results(data)
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def source_of_results(data: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`read_run_source` of a ``results.json`` already read.

    Raises:
        KeyError: If it does not say which split it evaluated and how.
    """
    source = {
        "split": str(data["split"]),
        "selected_on": data["selection"]["split"],
        "epoch": data.get("epoch"),
    }
    if data["selection"].get("protocol") == "last_mean":
        source["last_epochs"] = int(data["selection"]["last_epochs"])
    return source


def describe_source(source: Mapping[str, Any]) -> str:
    """``test, last epoch`` / ``test, epoch chosen on val`` / ``... (optimistic)``.

    A run with ``train.select_on: last_mean``: ``test, mean of last 10 epochs (paper
    protocol)``.
    """
    split = source.get("split")
    if not split:
        return "unknown"
    if source.get("last_epochs"):
        return f"{split}, mean of last {source['last_epochs']} epochs (paper protocol)"
    on = source.get("selected_on")
    if on is None:
        return f"{split}, last epoch"
    if on == split:
        return f"{split}, epoch chosen on {split} (optimistic)"
    return f"{split}, epoch chosen on {on}"


# ---------------------------------------------------------------------------------------------
# results


SUMMARY_LABEL = "summary"
"""What a summary row shows in the column of the axis it combines."""

_METHOD_NAMES = {"fisher_z": "Fisher z", "mean": "mean"}


@dataclass
class ResultRow:
    """One row of the results table: one combination of the non-replicate axes.

    Attributes:
        labels: Axis name -> label.
        values: Metric -> the values of the finished replicates.
        expected: Number of replicates planned for the row.
        runs: The finished runs of the row.
    """

    labels: dict[str, str]
    values: dict[str, list[float]]
    expected: int
    runs: list[RunStatus] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of finished replicates."""
        return max((len(v) for v in self.values.values()), default=0)

    def has_nan(self, metric: str) -> bool:
        """Whether a finished replicate reported ``metric`` as NaN."""
        return any(math.isnan(v) for v in self.values.get(metric, []))

    def nan_runs(self, metric: str) -> list[str]:
        """Ids of the runs that reported ``metric`` as NaN."""
        return [s.run.id for s in self.runs if math.isnan(s.metrics.get(metric, 0.0))]

    def mean(self, metric: str) -> float:
        """Mean over finished replicates (NaN if none, or if one of them is NaN)."""
        vals = self.values.get(metric, [])
        return sum(vals) / len(vals) if vals else math.nan

    def std(self, metric: str) -> float:
        """Sample standard deviation over replicates (NaN with fewer than two, or a NaN)."""
        vals = self.values.get(metric, [])
        if len(vals) < 2:
            return math.nan
        m = sum(vals) / len(vals)
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))

    @property
    def evaluated_on(self) -> str:
        """Where the row's metrics come from (:func:`describe_source`; several joined by ``;``)."""
        return _sources(self.runs)


def _sources(runs: Iterable[RunStatus]) -> str:
    seen = dict.fromkeys(describe_source(s.source) for s in runs)
    return "; ".join(seen) or "-"


@dataclass
class SummaryRow:
    """A summary row: the rows of one combination of the other axes, combined across one axis.

    Attributes:
        labels: Axis name -> label; the combined axis shows :data:`SUMMARY_LABEL`.
        rows: The rows combined.
        values: Metric -> combined value (NaN if a row mean is NaN); absent when a row has no
            value for the metric.
        methods: Metric -> ``"fisher_z"`` or ``"mean"``.
    """

    labels: dict[str, str]
    rows: list[ResultRow]
    values: dict[str, float]
    methods: dict[str, str]

    @property
    def n(self) -> int:
        """Finished runs of the combined rows."""
        return sum(r.n for r in self.rows)

    @property
    def expected(self) -> int:
        """Planned runs of the combined rows."""
        return sum(r.expected for r in self.rows)

    @property
    def evaluated_on(self) -> str:
        """Where the combined metrics come from."""
        return _sources(s for r in self.rows for s in r.runs)

    def cell(self, metric: str, digits: int = 4) -> str:
        """``value (Fisher z)`` / ``value (mean)``, ``nan (...)`` or ``-`` (no value)."""
        if metric not in self.values:
            return "-"
        value = self.values[metric]
        shown = "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return f"{shown} ({_METHOD_NAMES[self.methods[metric]]})"


def combine_rows(rows: Sequence[ResultRow], metric: str, method: str) -> float | None:
    """Combine the row means of ``metric``: Fisher z (of correlations) or arithmetic mean.

    Args:
        rows: The rows to combine.
        metric: The metric.
        method: ``"fisher_z"`` (:func:`aqa_framework.metrics.fisher_z_mean`, which clips
            correlations of +-1 so they stay finite) or ``"mean"``.

    Returns:
        The combined value; NaN if any row mean is NaN; ``None`` if a row has no value.
    """
    from aqa_framework.metrics import fisher_z_mean

    if not rows or any(not r.values.get(metric) for r in rows):
        return None
    means = [r.mean(metric) for r in rows]
    if any(math.isnan(m) for m in means):
        return math.nan
    if method == "fisher_z":
        return fisher_z_mean(means)
    return sum(means) / len(means)


def summarise(
    rows: Sequence[ResultRow], axes: Sequence[str], metrics: Sequence[str], summary: SweepSummary
) -> list[SummaryRow]:
    """One summary row per combination of the row axes other than ``summary.across``.

    Args:
        rows: The table's rows.
        axes: The row axes (``summary.across`` among them).
        metrics: The metrics to combine.
        summary: How to combine them.

    Returns:
        The summary rows, in the order their first row appears.
    """
    others = [a for a in axes if a != summary.across]
    groups: dict[tuple[str, ...], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(tuple(row.labels[a] for a in others), []).append(row)
    out = []
    for members in groups.values():
        labels = {a: SUMMARY_LABEL if a == summary.across else members[0].labels[a] for a in axes}
        methods = {m: summary.method(m) for m in metrics}
        values = {}
        for m in metrics:
            value = combine_rows(members, m, methods[m])
            if value is not None:
                values[m] = value
        out.append(SummaryRow(labels, members, values, methods))
    return out


def _row_name(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{a}={lab}" for a, lab in labels.items()) or "the table"


@dataclass
class SweepTable:
    """Results of a sweep, one row per combination of the non-replicate axes.

    Attributes:
        axes: Row axes, in order.
        metrics: Metric columns.
        rows: The rows, in grid order.
        runs: Every run's status (for ``runs.csv``).
        title: Table title.
        replicate: The axis averaged within each row (``None`` if the sweep has none).
        replicates: Number of values of the replicate axis.
        summary: How rows are combined across an axis (``None``: no summary rows).
        summary_rows: The summary rows (:func:`summarise`).
    """

    axes: list[str]
    metrics: list[str]
    rows: list[ResultRow]
    runs: list[RunStatus]
    title: str = ""
    replicate: str | None = None
    replicates: int = 1
    summary: SweepSummary | None = None
    summary_rows: list[SummaryRow] = field(default_factory=list)

    def cell(self, row: ResultRow, metric: str, digits: int = 4) -> str:
        """``mean ± std`` (or ``mean`` for one replicate, ``-`` when nothing finished)."""
        mean, std = row.mean(metric), row.std(metric)
        if not row.values.get(metric):
            return "-"
        if math.isnan(mean):
            return "nan"
        return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    def _display(self) -> list[list[str]]:
        """Cells of every row, then of every summary row (same columns as :meth:`header`)."""
        out = [
            [
                *(row.labels[a] for a in self.axes),
                f"{row.n}/{row.expected}",
                *(self.cell(row, m) for m in self.metrics),
                row.evaluated_on,
            ]
            for row in self.rows
        ]
        out += [
            [
                *(s.labels[a] for a in self.axes),
                f"{s.n}/{s.expected}",
                *(s.cell(m) for m in self.metrics),
                s.evaluated_on,
            ]
            for s in self.summary_rows
        ]
        return out

    def header(self) -> list[str]:
        """Column titles of the markdown and terminal tables."""
        return [*self.axes, "n", *self.metrics, "evaluated on"]

    def legend(self) -> list[str]:
        """Sentences saying what the rows and the summary rows hold."""
        if self.replicate:
            lines = [
                f"Each row: mean ± sample standard deviation over the {self.replicates} values "
                f"of `{self.replicate}` (n: finished/planned; every run's values are in "
                "runs.csv)."
            ]
        else:
            lines = ["Each row is one run."]
        if self.summary is not None:
            how = "; ".join(f"{m}: {_METHOD_NAMES[self.summary.method(m)]}" for m in self.metrics)
            lines.append(
                f"Rows with `{self.summary.across}` = {SUMMARY_LABEL} combine the row means "
                f"across `{self.summary.across}` ({how}). Fisher z: tanh of the mean of artanh "
                "of the correlations, each clipped to ±0.9999; mean: arithmetic mean."
            )
        lines.append(
            "Every metric is a run's final evaluation; 'evaluated on' names the split and how "
            "the run chose its epoch (the sweep picks no epoch)."
        )
        return lines

    def notes(self) -> list[str]:
        """Warnings: NaN values, summaries over unfinished rows, epochs chosen on test."""
        notes = []
        for row in self.rows:
            for m in self.metrics:
                if row.has_nan(m):
                    what = "the row mean and the summary are" if self.summary else "the row mean is"
                    notes.append(
                        f"{m} is NaN in {_row_name(row.labels)} (runs: "
                        f"{', '.join(row.nan_runs(m))}): {what} NaN."
                    )
        if self.summary is not None:
            short = [r for r in self.rows if r.n < r.expected]
            if short:
                shown = "; ".join(f"{_row_name(r.labels)} {r.n}/{r.expected}" for r in short)
                notes.append(f"Summary over unfinished rows: {shown}.")
        optimistic = [
            s.run.id
            for s in self.runs
            if s.source.get("split") and s.source.get("selected_on") == s.source.get("split")
        ]
        if optimistic:
            notes.append(
                f"{len(optimistic)} run(s) chose their epoch on the split they report "
                f"({', '.join(optimistic)}): those metrics are optimistic."
            )
        averaged = [s.run.id for s in self.runs if s.source.get("last_epochs")]
        if averaged:
            notes.append(
                f"{len(averaged)} run(s) report the mean of the test metrics of their last "
                f"epochs (train.select_on: last_mean, a paper protocol without validation "
                f"split; {', '.join(averaged)})."
            )
        return notes

    def to_markdown(self) -> str:
        """The table as GitHub markdown, with its legend and warnings."""
        lines = [f"# {self.title}", ""] if self.title else []
        align = ["left"] * len(self.axes) + ["right"] * (1 + len(self.metrics)) + ["left"]
        lines.append(markdown_table(self.header(), self._display(), align=align))
        lines += ["", *self.legend()]
        notes = self.notes()
        if notes:
            lines += ["", "**Warnings**", "", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The table as CSV.

        Columns: axis labels, n, ``<metric>_mean`` and ``<metric>_std`` (a summary row puts its
        value under ``_mean``), with a summary ``<metric>_method`` (``fisher_z`` or ``mean``,
        filled in summary rows), then ``evaluated_on``. An empty cell is a missing value,
        ``nan`` a NaN.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        stats = ["mean", "std", "method"] if self.summary is not None else ["mean", "std"]
        writer.writerow(
            [*self.axes, "n", *(f"{m}_{s}" for m in self.metrics for s in stats), "evaluated_on"]
        )
        for row in self.rows:
            cells = []
            for m in self.metrics:
                vals = row.values.get(m, [])
                cells += [_num(row.mean(m)) if vals else "", _num(row.std(m)) if vals[1:] else ""]
                cells += [""] * (len(stats) - 2)
            labels = [row.labels[a] for a in self.axes]
            writer.writerow([*labels, row.n, *cells, row.evaluated_on])
        for s in self.summary_rows:
            cells = []
            for m in self.metrics:
                value = _num(s.values[m]) if m in s.values else ""
                cells += [value, "", s.methods[m]]
            labels = [s.labels[a] for a in self.axes]
            writer.writerow([*labels, s.n, *cells, s.evaluated_on])
        return buf.getvalue()

    def runs_csv(self) -> str:
        """Every run: id, axis labels, state, source, epoch and every metric it reported."""
        names = sorted({k for s in self.runs for k in s.metrics})
        axes = list(self.runs[0].run.labels) if self.runs else []
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["run", *axes, "state", "evaluated_on", "epoch", *names])
        for s in self.runs:
            source = describe_source(s.source) if s.state == "done" else ""
            epoch = s.source.get("epoch")
            row = [s.run.id, *(s.run.labels[a] for a in axes), s.state, source]
            row.append("" if epoch is None else epoch)
            writer.writerow(row + [_num(s.metrics[k]) if k in s.metrics else "" for k in names])
        return buf.getvalue()

    def rich_table(self):
        """The table for the terminal (a :class:`rich.table.Table`)."""
        from rich.table import Table

        cells = self._display()
        sources = {row[-1] for row in cells}
        one_source = len(sources) == 1  # then a caption line says it instead of a column
        caption = [f"evaluated on: {next(iter(sources))}"] if one_source else []
        if self.replicate:
            caption.append(f"rows: mean ± std over {self.replicates} x {self.replicate}")
        if self.summary is not None:
            how = ", ".join(f"{m} {_METHOD_NAMES[self.summary.method(m)]}" for m in self.metrics)
            caption.append(f"{SUMMARY_LABEL} across {self.summary.across}: {how}")
        table = Table(title=self.title or None, caption="\n".join(caption) or None)
        for a in self.axes:
            table.add_column(a)
        table.add_column("n", justify="right")
        for m in self.metrics:
            table.add_column(m, justify="right")
        if one_source:
            cells = [row[:-1] for row in cells]
        else:
            table.add_column("evaluated on")
        for i, row in enumerate(cells):
            last_plain = i == len(self.rows) - 1 and bool(self.summary_rows)
            style = "bold" if i >= len(self.rows) else None
            table.add_row(*row, style=style, end_section=last_plain)
        return table

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``results.md``, ``results.csv`` and ``runs.csv`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "results.md": self.to_markdown(),
            "results.csv": self.to_csv(),
            "runs.csv": self.runs_csv(),
        }
        for name, text in files.items():
            write_text_atomic(folder / name, text)
        return [folder / n for n in files]


def _num(value: float) -> str:
    """A CSV number: ``nan`` for NaN (a missing value is written as an empty cell instead)."""
    return "nan" if math.isnan(value) else f"{value:.6g}"


def tabulate(sweep: Sweep, statuses: Sequence[RunStatus]) -> SweepTable:
    """Group run results into rows (non-replicate axes) with per-metric replicate values.

    With a ``summary`` in the sweep file, the table also gets the summary rows
    (:func:`summarise`).
    """
    axes = sweep.group_axes
    rows: dict[tuple[str, ...], ResultRow] = {}
    for status in statuses:
        key = tuple(status.run.labels[a] for a in axes)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ResultRow(
                dict(zip(axes, key, strict=True)), {m: [] for m in sweep.file.metrics}, 0
            )
        row.expected += 1
        if status.state == "done":
            row.runs.append(status)
            for m in sweep.file.metrics:
                if m in status.metrics:
                    row.values[m].append(status.metrics[m])
    file = sweep.file
    title = sweep.name + (f": {file.description}" if file.description else "")
    replicate = file.replicate if file.replicate in file.axes else None
    table = SweepTable(
        axes,
        list(file.metrics),
        list(rows.values()),
        list(statuses),
        title,
        replicate=replicate,
        replicates=len(file.axes[replicate]) if replicate else 1,
        summary=file.summary,
    )
    if file.summary is not None:
        table.summary_rows = summarise(table.rows, axes, table.metrics, file.summary)
    return table
