"""Run folders side by side: what ``aqa runs list`` and ``aqa runs compare`` show.

Reads only the files a run writes (``spec.yaml``, ``metrics.jsonl``, ``results.json``,
``status.json``); imports no torch (matplotlib only to draw the curves).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqa_framework.errors import CheckpointError
from aqa_framework.tracking import flatten

IGNORED = ("output.",)
"""Spec paths left out of the differences (every run has its own folder)."""


@dataclass
class RunSummary:
    """What one run folder holds.

    Attributes:
        folder: The run folder.
        spec: The resolved spec (``spec.yaml``).
        history: The per-epoch records (``metrics.jsonl``).
        results: ``results.json`` (``None`` while the run has not finished).
        ended: ``status.json``: how the run last ended (``None`` while it runs, if it was
            killed, or for runs of versions that did not write it).
    """

    folder: Path
    spec: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.folder.name

    @property
    def epochs(self) -> int:
        """``train.epochs`` of the spec."""
        return int(self.spec.get("train", {}).get("epochs", 0) or 0)

    @property
    def state(self) -> str:
        """How the run stands, in one word.

        ``finished``, ``pruned``, ``interrupted``, ``failed``, ``stopped`` (no status recorded:
        running, killed, or written by an older version) or ``not started``. ``pruned`` is no
        failure: a search (``aqa tune``) stopped the run early on purpose.
        """
        if self.results is not None:
            return "finished"
        recorded = (self.ended or {}).get("status")
        if recorded in ("pruned", "interrupted", "failed"):
            return str(recorded)
        return "stopped" if self.history else "not started"

    @property
    def status(self) -> str:
        """What the tables show: the :attr:`state` and the last completed epoch.

        ``finished``, ``pruned after epoch N``, ``interrupted after epoch N``, ``failed after
        epoch N``, ``stopped after epoch N`` (``... in its first epoch`` before any epoch ended)
        or ``not started``.
        """
        state = self.state
        if state in ("finished", "not started"):
            return state
        done = self.history[-1].get("epoch", len(self.history)) if self.history else 0
        return f"{state} after epoch {done}" if done else f"{state} in its first epoch"

    @property
    def metrics(self) -> dict[str, float]:
        """The final metrics (empty while not finished)."""
        raw = (self.results or {}).get("metrics", {})
        return {k: (math.nan if v is None else float(v)) for k, v in raw.items()}

    @property
    def evaluated_on(self) -> str:
        """Where the final metrics come from, as sweep tables say it.

        ``test, epoch chosen on val``, ``test, epoch chosen on test (optimistic)``,
        ``test, last epoch``, ``test, mean of last 10 epochs (paper protocol)``; ``-`` while
        the run has not finished, ``unknown`` if its ``results.json`` does not say.
        """
        from aqa_framework.experiments.sweep import describe_source, source_of_results

        if self.results is None:
            return "-"
        try:
            return describe_source(source_of_results(self.results))
        except (KeyError, TypeError, ValueError):
            return "unknown"

    @property
    def selection_metric(self) -> str | None:
        """The metric the run selected its epoch on, if it did."""
        return ((self.results or {}).get("selection") or {}).get("metric")

    def curve(self, metric: str) -> tuple[str, list[tuple[int, float]]]:
        """The validation curve of ``metric``.

        Returns:
            The split (``val``, else the final split) and ``(epoch, value)`` points.
        """
        for split in ("val", self.spec.get("eval", {}).get("split", "test")):
            points = [
                (int(r["epoch"]), math.nan if r[split][metric] is None else r[split][metric])
                for r in self.history
                if isinstance(r.get(split), dict) and metric in r[split]
            ]
            if points:
                return split, points
        return "", []


def read_run(folder: str | Path) -> RunSummary:
    """Read a run folder.

    Raises:
        CheckpointError: If the folder holds no run (no ``spec.yaml``) or a file is damaged.
    """
    from aqa_framework.yamlio import load_yaml

    folder = Path(folder)
    spec_file = folder / "spec.yaml"
    if not spec_file.is_file():
        raise CheckpointError(f"{folder} is not a run folder (no spec.yaml)")
    try:
        spec = load_yaml(spec_file.read_text(encoding="utf-8")) or {}
        metrics = folder / "metrics.jsonl"
        history = (
            [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line]
            if metrics.is_file()
            else []
        )
        results_file = folder / "results.json"
        results = (
            json.loads(results_file.read_text(encoding="utf-8")) if results_file.is_file() else None
        )
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"run folder {folder} is damaged: {exc}") from None
    return RunSummary(folder, spec if isinstance(spec, dict) else {}, history, results,
                      _read_status(folder))


def _read_status(folder: Path) -> dict[str, Any] | None:
    """``status.json`` (as ``RunFolder.read_status``, without importing the engine's torch)."""
    try:
        doc = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("status"), str) else None


def find_runs(parent: str | Path) -> list[RunSummary]:
    """The run folders directly inside ``parent`` (or ``parent`` itself), by name.

    Raises:
        CheckpointError: If ``parent`` does not exist.
    """
    parent = Path(parent)
    if not parent.is_dir():
        raise CheckpointError(f"{parent} is not a folder of runs")
    if (parent / "spec.yaml").is_file():
        return [read_run(parent)]
    return [
        read_run(p) for p in sorted(parent.iterdir()) if p.is_dir() and (p / "spec.yaml").is_file()
    ]


def spec_differences(runs: list[RunSummary]) -> dict[str, list[Any]]:
    """Spec paths whose values differ between runs -> the value of each run (``None``: unset)."""
    flats = [flatten(r.spec) for r in runs]
    paths = sorted({p for f in flats for p in f})
    out: dict[str, list[Any]] = {}
    for path in paths:
        if path.startswith(IGNORED):
            continue
        values = [f.get(path) for f in flats]
        if any(v != values[0] for v in values[1:]):
            out[path] = values
    return out


def metric_names(runs: list[RunSummary]) -> list[str]:
    """Every final metric of the runs, in first-seen order."""
    names: list[str] = []
    for r in runs:
        names += [k for k in r.metrics if k not in names]
    return names


def default_curve_metric(runs: list[RunSummary]) -> str | None:
    """The metric to plot: the first run's selection metric, else its first validation one."""
    for r in runs:
        if r.selection_metric:
            return r.selection_metric
    for r in runs:
        for rec in r.history:
            for split in ("val", "test"):
                if isinstance(rec.get(split), dict) and rec[split]:
                    return next(iter(rec[split]))
    return None


def plot_curves(runs: list[RunSummary], metric: str, path: str | Path) -> int:
    """Draw every run's validation curve of ``metric`` into one figure (format from suffix).

    Returns:
        The number of runs that have a curve.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from aqa_framework.files import atomic_file

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for run in runs:
        split, points = run.curve(metric)
        if not points:
            continue
        ax.plot(
            [e for e, _ in points],
            [v for _, v in points],
            marker="o",
            ms=3,
            label=f"{run.name} ({split})",
        )
        drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch")
    if drawn:
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
    finally:
        plt.close(fig)
    return drawn
