"""What happens at the end of a training epoch: evaluation, selection, schedule, checkpoint.

:class:`EpochPolicy` answers the questions the run asks after each epoch: which splits to
evaluate (``eval.every``, the last epoch, ``eval.track_test``, the averaged last epochs of
``select_on: last_mean``), whether the epoch is the new best
(:class:`~aqa_framework.engine.selection.Selection`), which metric the schedule steps on, and
whether to write a checkpoint (``train.checkpoint_every``, the best and the last epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aqa_framework.engine.selection import Selection

if TYPE_CHECKING:
    from aqa_framework.engine.loop import EpochStats
    from aqa_framework.spec import Spec


@dataclass(frozen=True)
class EpochDecision:
    """What the end of one epoch does.

    Attributes:
        best: The selected epoch after this one (see :attr:`TrainState.best
            <aqa_framework.engine.train_state.TrainState.best>`).
        is_best: Whether this epoch became the best on the selection split.
        checkpoint: Whether to write a checkpoint.
        as_best: Whether that checkpoint is also the ``best`` one.
        scheduler_metric: The selection metric of this epoch, for a schedule that steps on it
            (``None`` if the epoch was not evaluated on the selection split).
    """

    best: dict[str, Any] | None
    is_best: bool
    checkpoint: bool
    as_best: bool
    scheduler_metric: float | None


@dataclass(frozen=True)
class EpochPolicy:
    """The end-of-epoch rules of a run.

    Epochs are counted from 1 (the number of completed epochs).

    Attributes:
        selection: How the best epoch is chosen.
        epochs: ``train.epochs``.
        eval_every: ``eval.every``.
        checkpoint_every: ``train.checkpoint_every``.
        final_split: ``eval.split``.
        track_test: ``eval.track_test``.
        has_val: Whether the run has a validation split.
    """

    selection: Selection
    epochs: int
    eval_every: int = 1
    checkpoint_every: int = 1
    final_split: str = "test"
    track_test: bool = False
    has_val: bool = False

    @classmethod
    def from_spec(cls, spec: Spec, selection: Selection, has_val: bool) -> EpochPolicy:
        """The policy a spec asks for.

        Args:
            spec: The validated spec.
            selection: The resolved selection protocol.
            has_val: Whether the run has validation samples.
        """
        return cls(
            selection=selection,
            epochs=spec.train.epochs,
            eval_every=spec.eval.every,
            checkpoint_every=spec.train.checkpoint_every,
            final_split=spec.eval.split,
            track_test=spec.eval.track_test,
            has_val=has_val,
        )

    def is_last(self, epoch: int) -> bool:
        """Whether ``epoch`` is the run's last."""
        return epoch == self.epochs

    def averages(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of the last epochs ``select_on: last_mean`` averages."""
        k = self.selection.last_epochs
        return k > 0 and epoch > self.epochs - k

    def evaluates(self, epoch: int) -> bool:
        """Whether the model is evaluated after ``epoch``.

        Every ``eval.every`` epochs, the last one, and each epoch ``select_on: last_mean``
        averages.
        """
        return epoch % self.eval_every == 0 or self.is_last(epoch) or self.averages(epoch)

    def splits_to_evaluate(self, epoch: int) -> list[str]:
        """The splits evaluated after ``epoch``, in order (none between ``eval.every``)."""
        if not self.evaluates(epoch):
            return []
        splits = []
        if self.has_val:
            splits.append("val")
        if (
            self.track_test
            or self.selection.split == self.final_split
            or self.averages(epoch)
        ):
            splits.append(self.final_split)
        return splits

    def select(
        self, epoch: int, record: dict[str, Any], best: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, bool]:
        """The best epoch after ``epoch``, and whether it is this one (on the selection split).

        Without a selection split the last completed epoch is the selected one (and never
        counts as a new best).

        Args:
            epoch: The completed epoch.
            record: Its record, with the metrics of the splits evaluated.
            best: The best epoch before it.

        Raises:
            SpecError: If the evaluation does not report the selection metric.
        """
        split, metric = self.selection.split, self.selection.metric
        if split is None:
            return {"epoch": epoch, "split": None, "metric": metric, "value": None}, False
        if not self.evaluates(epoch):
            return best, False
        value = self.selection.value(record[split])
        if not self.selection.better(value, best["value"] if best else None):
            return best, False
        return {"epoch": epoch, "split": split, "metric": metric, "value": value}, True

    def scheduler_metric(self, record: dict[str, Any]) -> float | None:
        """The value a metric-driven schedule (``plateau``) steps on, if the epoch has it."""
        split = self.selection.split
        if split is not None and split in record:
            return record[split].get(self.selection.metric)
        return None

    def end_epoch(
        self, epoch: int, record: dict[str, Any], best: dict[str, Any] | None
    ) -> EpochDecision:
        """Decide what the end of ``epoch`` does, from its record and the best epoch so far.

        Args:
            epoch: The completed epoch.
            record: Its record (:func:`epoch_record` plus the evaluated splits' metrics).
            best: The best epoch before it.
        """
        best, is_best = self.select(epoch, record, best)
        checkpoint = is_best or self.is_last(epoch) or epoch % self.checkpoint_every == 0
        return EpochDecision(
            best=best,
            is_best=is_best,
            checkpoint=checkpoint,
            as_best=is_best or self.selection.split is None,
            scheduler_metric=self.scheduler_metric(record),
        )


def epoch_record(epoch: int, lr: float, stats: EpochStats) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of a trained epoch, before its evaluations.

    Args:
        epoch: The completed epoch (from 1).
        lr: The learning rate it trained with.
        stats: What :func:`~aqa_framework.engine.loop.train_one_epoch` measured.
    """
    record: dict[str, Any] = {
        "epoch": epoch,
        "lr": lr,
        "train": stats.losses,
        "samples_per_s": round(stats.samples_per_second, 3),
        "time_s": round(stats.seconds, 3),
    }
    if stats.nonfinite_steps:
        record["nonfinite_steps"] = stats.nonfinite_steps
    if stats.skipped_samples:
        record["skipped_samples"] = stats.skipped_samples
    return record
