"""The run folder: everything a run leaves behind, in one place.

::

    runs/quickstart-20250101-120000/
      spec.yaml          the resolved spec, every default filled in
      environment.json   versions, device, git commit, command line
      metrics.jsonl      one JSON line per epoch: train losses per task, eval metrics
      predictions.csv    key, then each task's prediction and reference columns
      results.json       final metrics and how the epoch was selected
      report.md          the final report (metrics table, scatter plot, sample commentaries)
      report/scatter.png predicted vs judged scores
      checkpoints/last/  resumable checkpoint of the last completed epoch
      checkpoints/best/  the selected epoch's checkpoint

Every file is written through a temporary file and ``os.replace`` so that a crash never leaves
a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aqa_framework.engine.checkpoint import CHECKPOINTS_DIR
from aqa_framework.errors import CheckpointError

SPEC_FILE = "spec.yaml"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.jsonl"
PREDICTIONS_FILE = "predictions.csv"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
REPORT_DIR = "report"


def write_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def default_run_name(spec_source: str | None, now: float | None = None) -> str:
    """``<spec file stem>-<YYYYmmdd-HHMMSS>``."""
    stem = Path(spec_source).stem if spec_source else "run"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


class RunFolder:
    """Paths and writers of one run folder.

    Args:
        path: The folder (created on :meth:`create`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        """The ``checkpoints`` folder."""
        return self.path / CHECKPOINTS_DIR

    def file(self, name: str) -> Path:
        """Path of a file in the run folder."""
        return self.path / name

    def is_run_folder(self) -> bool:
        """Whether the folder looks like a run folder (has its spec)."""
        return (self.path / SPEC_FILE).is_file()

    def has_checkpoints(self) -> bool:
        """Whether any checkpoint was written."""
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def create(self) -> None:
        """Create a fresh run folder.

        Raises:
            CheckpointError: If the folder already holds a run (resume it instead).
        """
        if self.is_run_folder() or self.has_checkpoints():
            raise CheckpointError(
                f"run folder {self.path} already holds a run; resume it with --resume "
                f"{self.path}, or choose another --run-dir / output.name"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def write_spec(self, text: str) -> None:
        """Store the resolved spec."""
        write_atomic(self.path / SPEC_FILE, text)

    def write_json(self, name: str, doc: Any) -> None:
        """Store a JSON document."""
        write_atomic(self.path / name, json.dumps(doc, indent=2) + "\n")

    def write_metrics(self, history: Iterable[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the per-epoch records."""
        write_atomic(self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in history))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records (empty if none yet)."""
        f = self.path / METRICS_FILE
        if not f.is_file():
            return []
        return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]

    def write_predictions(self, columns: dict[str, list[Any]]) -> None:
        """Write ``predictions.csv`` from equally long columns (``key`` first)."""
        write_atomic(self.path / PREDICTIONS_FILE, predictions_csv(columns))


def predictions_csv(columns: dict[str, list[Any]]) -> str:
    """Render equally long columns as CSV text."""
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for i in range(n):
        w.writerow([_cell(columns[c][i]) for c in names])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
