"""The ``tensorboard`` tracker: TensorBoard event files in the run folder."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.engine.events import Close, EpochEnd, Evaluate, RunStart
from aqa_framework.tracking import Tracker, epoch_scalars

TENSORBOARD_DIR = "tensorboard"


class TensorBoardTracker(Tracker):
    """Per-epoch losses, learning rate and metrics as TensorBoard event files in the run folder."""

    name = "tensorboard"
    requires = ("tensorboard",)
    extra = "tensorboard"

    class Params(BaseModel):
        """Parameters of the tensorboard tracker."""

        model_config = ConfigDict(extra="forbid")
        dir: str = Field(
            TENSORBOARD_DIR, description="Folder of the event files, relative to the run folder."
        )

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.writer: Any = None

    def on_run_start(self, event: RunStart) -> None:
        """Open the writer; a resumed run drops what was logged after its checkpoint."""
        from torch.utils.tensorboard import SummaryWriter

        log_dir = event.run.folder / self.params.dir
        purge = event.start_epoch + 1 if event.start_epoch else None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)
        if not event.start_epoch:
            spec = "\n".join(f"    {line}" for line in _spec_lines(event.run.spec))
            self.writer.add_text("spec", spec, 0)

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Log the epoch's scalars at step = epoch."""
        for tag, value in epoch_scalars(event.record).items():
            self.writer.add_scalar(tag, value, event.epoch)
        self.writer.flush()

    def on_evaluate(self, event: Evaluate) -> None:
        """Log the final metrics under ``final/``."""
        if event.final:
            for name, value in event.metrics.items():
                self.writer.add_scalar(f"final/{name}", _finite(value), event.epoch)
            self.writer.flush()

    def on_close(self, event: Close) -> None:
        """Close the writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _finite(value: Any) -> float:
    v = float("nan") if value is None else float(value)
    return v if not math.isinf(v) else float("nan")


def _spec_lines(spec: dict[str, Any]) -> list[str]:
    from aqa_framework.tracking import flatten

    return [f"{k}: {v}" for k, v in flatten(spec).items()]
