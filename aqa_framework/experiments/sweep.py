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
Results are averaged over the *replicate* axis (``seed`` by default): every other axis
combination is one row of the table, with the mean and the sample standard deviation of each
metric.

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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aqa_framework import jsonio
from aqa_framework.errors import AQAError, SpecError
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

OverrideSet = dict[str, Any] | list[str]
Scalar = str | int | float | bool | None


class SweepFile(BaseModel):
    """The contents of a sweep file (validated; every error names its path)."""

    model_config = ConfigDict(extra="forbid")

    base: Path = Field(description="The base run spec, relative to the sweep file.")
    name: str | None = Field(None, description="Sweep name; defaults to the file name.")
    description: str = Field("", description="Free text, copied to the results table.")
    axes: dict[str, dict[str, OverrideSet] | list[Scalar]] = Field(
        min_length=1,
        description="Axis name -> {label: override set} or a list of values of the spec path "
        "the axis is named after (e.g. seed: [0, 1, 2]).",
    )
    replicate: str = Field(
        "seed",
        description="Axis averaged over in the results table (mean and std per row). If no "
        "axis has this name, every run is its own row.",
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["score.spearman"],
        min_length=1,
        description="Metrics (task.metric) shown in the results table.",
    )
    set: list[str] = Field(
        default_factory=list, description="Overrides (a.b.c=value, ~a.b.c) applied to every run."
    )
    output: Path | None = Field(
        None, description="Sweep folder; defaults to runs/sweeps/<name>."
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

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: list[str]) -> list[str]:
        bad = [m for m in metrics if not _METRIC_RE.match(m)]
        if bad:
            raise ValueError(f"metrics must be task.metric (e.g. score.spearman), got {bad}")
        return metrics


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


def _axis_points(name: str, values: Mapping[str, OverrideSet] | Sequence[Scalar]) -> list:
    """(label, override set) pairs of one axis."""
    if isinstance(values, Mapping):
        return [(str(label), ov) for label, ov in values.items()]
    return [(_label(v), {name: v}) for v in values]


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
    axes = [(name, _axis_points(name, values)) for name, values in sweep.file.axes.items()]
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
    """

    run: SweepRun
    state: str
    metrics: dict[str, float] = field(default_factory=dict)


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
            return RunStatus(run, "done", metrics)
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

    def write_result(self, run: SweepRun, metrics: Mapping[str, float], run_dir: Path) -> None:
        """Record a finished run's final metrics."""
        data = {
            "id": run.id,
            "labels": run.labels,
            "spec_hash": run.spec_hash,
            "run_dir": str(run_dir),
            "metrics": dict(metrics),
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
    resolve_fn: Callable[[SweepRun, str | None], Any] | None = None,
    on_event: Callable[[str, RunStatus], None] | None = None,
) -> list[RunStatus]:
    """Run every unfinished run of a sweep, one after the other.

    Every run's spec is validated before the first one starts. Finished runs are skipped; an
    interrupted run (folder but no result) is resumed from its run folder.

    Args:
        sweep: The loaded sweep.
        folder: The sweep folder; defaults to :meth:`Sweep.default_folder`.
        overrides: ``--set`` strings applied to every run.
        train: The training function; defaults to the engine's ``run_training``.
        read_metrics: Reads final metrics from a run folder; defaults to
            :func:`read_run_metrics`.
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
    notify = on_event or (lambda _event, _status: None)
    out: list[RunStatus] = []
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
                root.write_result(run, metrics, run_dir)
                done = RunStatus(run, "done", metrics)
                notify("skip", done)
                out.append(done)
                continue
        # A partial run without a checkpoint is started afresh in its folder: the runner
        # clears what that run wrote (under the folder's lock) and keeps any other file.
        resume = run_dir if status.state == "partial" and _resumable(run_dir) else None
        notify("resume" if resume else "start", status)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        made = Path(train(resolved[run.id], run_dir=run_dir, resume=resume))
        metrics = read_metrics(made)
        root.write_result(run, metrics, made)
        done = RunStatus(run, "done", metrics)
        notify("done", done)
        out.append(done)
    return out


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


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class ResultRow:
    """One row of the results table: one combination of the non-replicate axes.

    Attributes:
        labels: Axis name -> label.
        values: Metric -> the values of the finished replicates.
        expected: Number of replicates planned for the row.
    """

    labels: dict[str, str]
    values: dict[str, list[float]]
    expected: int

    @property
    def n(self) -> int:
        """Number of finished replicates."""
        return max((len(v) for v in self.values.values()), default=0)

    def mean(self, metric: str) -> float:
        """Mean over finished replicates (NaN if none)."""
        vals = [v for v in self.values.get(metric, []) if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else math.nan

    def std(self, metric: str) -> float:
        """Sample standard deviation over replicates (NaN with fewer than two)."""
        vals = [v for v in self.values.get(metric, []) if not math.isnan(v)]
        if len(vals) < 2:
            return math.nan
        m = sum(vals) / len(vals)
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


@dataclass
class SweepTable:
    """Results of a sweep, one row per combination of the non-replicate axes.

    Attributes:
        axes: Row axes, in order.
        metrics: Metric columns.
        rows: The rows, in grid order.
        runs: Every run's status (for ``runs.csv``).
        title: Table title.
    """

    axes: list[str]
    metrics: list[str]
    rows: list[ResultRow]
    runs: list[RunStatus]
    title: str = ""

    def cell(self, row: ResultRow, metric: str, digits: int = 4) -> str:
        """``mean ± std`` (or ``mean`` for one replicate, ``-`` when nothing finished)."""
        mean, std = row.mean(metric), row.std(metric)
        if math.isnan(mean):
            return "-"
        return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    def to_markdown(self) -> str:
        """The table as GitHub markdown."""
        head = [*self.axes, "n", *self.metrics]
        lines = [f"# {self.title}", ""] if self.title else []
        align = ["left"] * len(self.axes) + ["right"] * (1 + len(self.metrics))
        rows = [
            [
                *(row.labels[a] for a in self.axes),
                f"{row.n}/{row.expected}",
                *(self.cell(row, m) for m in self.metrics),
            ]
            for row in self.rows
        ]
        lines.append(markdown_table(head, rows, align=align))
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The table as CSV: axis labels, n, then ``<metric>_mean`` and ``<metric>_std``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            [*self.axes, "n", *(f"{m}_{s}" for m in self.metrics for s in ("mean", "std"))]
        )
        for row in self.rows:
            stats = [_num(f(m)) for m in self.metrics for f in (row.mean, row.std)]
            writer.writerow([*(row.labels[a] for a in self.axes), row.n, *stats])
        return buf.getvalue()

    def runs_csv(self) -> str:
        """Every run: id, axis labels, state and every metric it reported."""
        names = sorted({k for s in self.runs for k in s.metrics})
        axes = list(self.runs[0].run.labels) if self.runs else []
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["run", *axes, "state", *names])
        for s in self.runs:
            row = [s.run.id, *(s.run.labels[a] for a in axes), s.state]
            writer.writerow(row + [_num(s.metrics.get(k, math.nan)) for k in names])
        return buf.getvalue()

    def rich_table(self):
        """The table for the terminal (a :class:`rich.table.Table`)."""
        from rich.table import Table

        table = Table(title=self.title or None)
        for a in self.axes:
            table.add_column(a)
        table.add_column("n", justify="right")
        for m in self.metrics:
            table.add_column(m, justify="right")
        for row in self.rows:
            table.add_row(
                *(row.labels[a] for a in self.axes),
                f"{row.n}/{row.expected}",
                *(self.cell(row, m) for m in self.metrics),
            )
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
    return "" if math.isnan(value) else f"{value:.6g}"


def tabulate(sweep: Sweep, statuses: Sequence[RunStatus]) -> SweepTable:
    """Group run results into rows (non-replicate axes) with per-metric replicate values."""
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
            for m in sweep.file.metrics:
                if m in status.metrics:
                    row.values[m].append(status.metrics[m])
    title = sweep.name + (f": {sweep.file.description}" if sweep.file.description else "")
    return SweepTable(axes, list(sweep.file.metrics), list(rows.values()), list(statuses), title)
