"""The ``csv`` tracker: ``metrics.csv`` in the run folder, one row per epoch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.engine.events import EpochEnd, RunStart
from aqa_framework.tracking import Tracker, epoch_scalars

METRICS_CSV = "metrics.csv"


def metrics_csv(history: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    """The CSV text of per-epoch records: ``epoch``, ``lr``, ``train/loss``, ``val/...``."""
    from aqa_framework.engine.run_folder import predictions_csv

    rows = [{"epoch": r.get("epoch"), **epoch_scalars(r)} for r in history]
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    columns = {n: [row.get(n, "") for row in rows] for n in names} if names else {"epoch": []}
    return predictions_csv(columns)


class CsvTracker(Tracker):
    """Per-epoch losses and metrics as metrics.csv in the run folder (one row per epoch)."""

    name = "csv"

    class Params(BaseModel):
        """Parameters of the csv tracker."""

        model_config = ConfigDict(extra="forbid")
        file: str = Field(METRICS_CSV, description="File name in the run folder.")

    def on_run_start(self, event: RunStart) -> None:
        """Write the history so far (a resumed run's)."""
        self._write(event.run.folder, event.history)

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Rewrite the file with the new epoch."""
        self._write(event.run.folder, event.history)

    def _write(self, folder: Any, history: Any) -> None:
        from aqa_framework.files import write_text_atomic

        write_text_atomic(folder / self.params.file, metrics_csv(history))
