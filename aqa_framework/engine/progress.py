"""Rich progress bars for training: epochs, batches, loss per task, throughput and ETA.

Bars are drawn only on a terminal and only by rank 0; elsewhere (CI logs, files) a run prints
one summary line per epoch instead.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console


class TrainingProgress:
    """Epoch and batch bars plus per-epoch log lines.

    Args:
        console: Where to draw (stderr console of the CLI).
        total_epochs: Number of epochs of the run.
        enabled: Whether anything is shown at all (rank 0).
    """

    def __init__(self, console: Console, total_epochs: int, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.bars = enabled and console.is_terminal
        self.total_epochs = total_epochs
        self._progress = None
        self._epoch_task = None
        self._batch_task = None

    def __enter__(self) -> TrainingProgress:
        if self.bars:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._epoch_task = self._progress.add_task("epochs", total=self.total_epochs, info="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def set_completed_epochs(self, n: int) -> None:
        """Move the epoch bar (after a resume)."""
        if self._progress is not None:
            self._progress.update(self._epoch_task, completed=n)

    def start_bar(self, description: str, steps: int) -> None:
        """Start a batch bar (training or evaluation of one split)."""
        if self._progress is None:
            return
        if self._batch_task is not None:
            self._progress.remove_task(self._batch_task)
        self._batch_task = self._progress.add_task(description, total=steps, info="")

    def step(self, info: str = "") -> None:
        """Advance the batch bar by one step and show ``info`` (losses, throughput)."""
        if self._progress is not None and self._batch_task is not None:
            self._progress.update(self._batch_task, advance=1, info=info)

    def end_bar(self) -> None:
        """Remove the batch bar."""
        if self._progress is not None and self._batch_task is not None:
            self._progress.remove_task(self._batch_task)
            self._batch_task = None

    def end_epoch(self, summary: str) -> None:
        """Advance the epoch bar and print a summary line."""
        if self._progress is not None:
            self._progress.update(self._epoch_task, advance=1, info=summary.split(" | ")[0])
        self.log(summary)

    def log(self, message: str) -> None:
        """Print a line (above the bars on a terminal)."""
        if self.enabled:
            self.console.print(message, highlight=False, markup=False)
