"""The run folder: everything a run leaves behind, in one place.

::

    runs/quickstart-20250101-120000/
      spec.yaml          the resolved spec, every default filled in
      environment.json   versions, device, git commit, command line
      metrics.jsonl      one JSON line per epoch: train losses per task, eval metrics
      predictions.csv    key, then each task's prediction and reference columns
      results.json       final metrics and how the epoch was selected
      status.json        how the run last ended: finished, interrupted, pruned or failed
      report.md          the final report (metrics table, scatter plot, sample commentaries)
      report.html        the same report as one self-contained page (with training curves)
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
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aqa_framework import jsonio
from aqa_framework.engine.checkpoint import CHECKPOINTS_DIR, find_checkpoint
from aqa_framework.engine.run_lock import LOCK_FILE
from aqa_framework.errors import CheckpointError
from aqa_framework.files import is_temporary, write_json_atomic, write_text_atomic

SPEC_FILE = "spec.yaml"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.jsonl"
PREDICTIONS_FILE = "predictions.csv"
RESULTS_FILE = "results.json"
STATUS_FILE = "status.json"
REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
REPORT_DIR = "report"
TRACKER_FILES = ("metrics.csv", "tensorboard", "mlruns", "mlflow.json")
"""What the built-in trackers write at the top of a run folder."""

RUN_FILES = frozenset(
    {
        SPEC_FILE,
        ENVIRONMENT_FILE,
        METRICS_FILE,
        PREDICTIONS_FILE,
        RESULTS_FILE,
        STATUS_FILE,
        REPORT_FILE,
        REPORT_HTML_FILE,
        REPORT_DIR,
        CHECKPOINTS_DIR,
        LOCK_FILE,
        *TRACKER_FILES,
    }
)
"""Every name a run writes at the top of its folder."""


def write_atomic(path: Path, text: str) -> None:
    """Write a text file atomically.

    Kept for callers of earlier versions; the framework writes through
    :mod:`aqa_framework.files` (:func:`~aqa_framework.files.write_text_atomic`).
    """
    write_text_atomic(path, text)


def default_run_name(spec_source: str | None, now: float | None = None) -> str:
    """``<spec file stem>-<YYYYmmdd-HHMMSS>`` (:func:`create_run_folder` makes it unique)."""
    stem = Path(spec_source).stem if spec_source else "run"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def create_run_folder(parent: str | Path, name: str) -> RunFolder:
    """Create a new, empty run folder ``parent/name``, or ``name-2``, ``name-3``, ... if taken.

    The folder is created with ``mkdir`` (which fails if it exists), so two processes that
    pick the same default name in the same second still get different folders.

    Args:
        parent: The folder of run folders (``output.dir``).
        name: The wanted name (:func:`default_run_name`).

    Returns:
        The new run folder; it is empty and nobody else created it.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return RunFolder(path)
    raise CheckpointError(f"cannot find a free run folder name like {parent / name}")


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
        """Whether any checkpoint was written (complete or damaged; temporaries do not count)."""
        return self.checkpoints.is_dir() and any(
            not is_temporary(p.name) for p in self.checkpoints.iterdir()
        )

    def has_resumable_checkpoint(self) -> bool:
        """Whether a complete ``last`` checkpoint (or its ``last.prev``) exists."""
        try:
            find_checkpoint(self.path, prefer=("last",))
        except CheckpointError:
            return False
        return True

    def is_unstarted_run(self) -> bool:
        """A run folder whose run stopped before its first checkpoint (nothing to keep)."""
        return (
            self.is_run_folder()
            and not self.has_checkpoints()
            and not (self.path / RESULTS_FILE).exists()
        )

    def create(self) -> None:
        """Make the folder ready for a fresh run (call it while holding the folder's lock).

        The folder may be missing, empty, or hold a run that stopped before its first
        checkpoint (its files are replaced; anything else in the folder is kept).

        Raises:
            CheckpointError: If the folder already holds a run (resume it instead), is a file,
                or holds files that are not a run's.
        """
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} is a file; give a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        if self.is_unstarted_run():
            self.clear_unstarted()
            return
        if self.has_checkpoints() or self.is_run_folder():
            raise CheckpointError(
                f"run folder {self.path} already holds a run; resume it with --resume "
                f"{self.path}, or choose another --run-dir / output.name"
            )
        foreign = sorted(
            p.name for p in self.path.iterdir() if p.name != LOCK_FILE and not is_temporary(p.name)
        )
        if foreign:
            more = f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else ""
            shown = ", ".join(foreign[:5]) + more
            raise CheckpointError(
                f"run folder {self.path} is not empty and holds no run ({shown}); give a new "
                "or empty folder as --run-dir so that nothing in it is overwritten"
            )

    def clear_unstarted(self) -> None:
        """Remove what a run that stopped before its first checkpoint wrote (not other files)."""
        for p in self.path.iterdir():
            if p.name == LOCK_FILE or not (p.name in RUN_FILES or is_temporary(p.name)):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def write_spec(self, text: str) -> None:
        """Store the resolved spec."""
        write_text_atomic(self.path / SPEC_FILE, text)

    def write_json(self, name: str, doc: Any) -> None:
        """Store a JSON document (strict JSON: NaN and infinity as null, see :mod:`.jsonio`)."""
        write_json_atomic(self.path / name, doc)

    def write_metrics(self, history: Iterable[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the per-epoch records (strict JSON: NaN is null)."""
        lines = "".join(jsonio.dumps(r) + "\n" for r in history)
        write_text_atomic(self.path / METRICS_FILE, lines)

    def write_status(self, doc: dict[str, Any]) -> None:
        """Record how the run ended (``status.json``, see :meth:`read_status`)."""
        write_json_atomic(self.path / STATUS_FILE, doc)

    def read_status(self) -> dict[str, Any] | None:
        """How the run last ended, ``None`` while it runs (or if it was killed).

        ``status`` is ``finished``, ``interrupted``, ``pruned`` (stopped early by a search,
        see :class:`~aqa_framework.engine.events.RunPruned`) or ``failed``; ``epoch`` the last
        completed epoch; ``error`` (failed) or ``reason`` (pruned) say why. A damaged or
        foreign file reads as ``None``: it only informs, nothing depends on it.
        """
        f = self.path / STATUS_FILE
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("status"), str) else None

    def clear_status(self) -> None:
        """Forget how the run last ended (it runs again)."""
        (self.path / STATUS_FILE).unlink(missing_ok=True)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records (empty if none yet)."""
        f = self.path / METRICS_FILE
        if not f.is_file():
            return []
        return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]

    def write_predictions(self, columns: dict[str, list[Any]]) -> None:
        """Write ``predictions.csv`` from equally long columns (``key`` first)."""
        write_text_atomic(self.path / PREDICTIONS_FILE, predictions_csv(columns))


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
