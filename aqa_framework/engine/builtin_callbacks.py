"""The engine's own outputs as training callbacks: progress display, ``metrics.jsonl``, results.

They receive the same events as plugin callbacks (:mod:`aqa_framework.engine.events`) and run
before them, so that a plugin sees files already written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aqa_framework.engine.events import (
    Callback,
    CheckpointSaved,
    Close,
    EpochEnd,
    EpochStart,
    Interrupt,
    RunEnd,
    RunStart,
    StepEnd,
)
from aqa_framework.engine.progress import TrainingProgress
from aqa_framework.engine.run_folder import RunFolder

if TYPE_CHECKING:
    from rich.console import Console


def format_losses(losses: dict[str, float]) -> str:
    """``loss 0.5 score 0.3``: losses as the progress display shows them."""
    return " ".join(f"{k} {v:.4g}" for k, v in losses.items())


class ProgressCallback(Callback):
    """The progress bars (on a terminal) and one summary line per epoch.

    Args:
        console: Where to draw.

    Attributes:
        progress: The display while the run trains (``None`` before and after); evaluations
            draw their bars on it.
    """

    name = "progress"

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: TrainingProgress | None = None

    def on_run_start(self, event: RunStart) -> None:
        """Open the display, the epoch bar at the epochs already completed."""
        self.progress = TrainingProgress(self.console, event.run.epochs).__enter__()
        self.progress.set_completed_epochs(event.start_epoch)

    def on_epoch_start(self, event: EpochStart) -> None:
        """Start the batch bar."""
        if self.progress is not None:
            self.progress.start_bar(f"epoch {event.epoch}/{event.run.epochs}", event.steps)

    def on_step_end(self, event: StepEnd) -> None:
        """Advance the batch bar with the running losses and the throughput."""
        if self.progress is None:
            return
        if event.updated and self.progress.bars:
            self.progress.step(
                f"{format_losses(event.mean_losses)} | {event.samples_per_s:.1f} samples/s"
            )
        else:
            self.progress.step()

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Advance the epoch bar and print the epoch's summary."""
        if self.progress is not None:
            self.progress.end_bar()
            self.progress.end_epoch(event.summary)

    def on_run_end(self, event: RunEnd) -> None:
        """Close the display."""
        self._stop()

    def on_interrupt(self, event: Interrupt) -> None:
        """Close the display (the run prints how to resume)."""
        self._stop()

    def on_close(self, event: Close) -> None:
        """Close the display if still open."""
        self._stop()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


class MetricsFileCallback(Callback):
    """``metrics.jsonl``: rewritten from the history at the start, each checkpoint, each epoch."""

    name = "metrics-file"

    def on_run_start(self, event: RunStart) -> None:
        """Write the history (empty, or a resumed run's)."""
        RunFolder(event.run.folder).write_metrics(event.history)

    def on_checkpoint(self, event: CheckpointSaved) -> None:
        """Write the history the checkpoint holds."""
        RunFolder(event.run.folder).write_metrics(event.history)

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Write the history with the epoch's record."""
        RunFolder(event.run.folder).write_metrics(event.history)


class ResultsCallback(Callback):
    """``predictions.csv``, ``results.json``, ``report.md`` and ``report.html`` at the run's end."""

    name = "results"

    def on_run_end(self, event: RunEnd) -> None:
        """Write the results and print the final metrics line."""
        from aqa_framework.engine.results import write_results

        line = write_results(RunFolder(event.run.folder), event.resolved, event.results)
        event.run.log(line)


class StatusFileCallback(Callback):
    """``status.json``: how the run ended (finished, interrupted, pruned, failed) and when.

    Removed when the run (re)starts, so that it never describes an earlier attempt of a run
    that is training or was killed.
    """

    name = "status-file"

    def __init__(self) -> None:
        self.epoch = 0

    def on_run_start(self, event: RunStart) -> None:
        """Forget how an earlier attempt ended."""
        self.epoch = event.start_epoch
        RunFolder(event.run.folder).clear_status()

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Count the completed epochs."""
        self.epoch = event.epoch

    def on_close(self, event: Close) -> None:
        """Write the status with the last completed epoch and why the run stopped."""
        import time

        doc = {"status": event.status, "epoch": self.epoch, "epochs": event.run.epochs,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if event.error is not None:
            doc["error"] = event.error
        if event.reason is not None:
            doc["reason"] = event.reason
        RunFolder(event.run.folder).write_status(doc)
