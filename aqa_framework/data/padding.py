"""Evaluation batches of sequences of different lengths: zero padding and a ``video_mask``.

A dataset that evaluates whole sequences (a feature dataset with ``test_length: null``) yields
samples whose ``video`` differs in its first dimension, the clips. Such samples make one batch
only by zero-padding each sequence to the longest in the batch, which is safe only when every
component that sees the sequence leaves the padding out through the batch's ``video_mask``
(``True`` on real clips):

* the backbone runs on each clip on its own, so padded clips never mix with real ones;
* the aggregator, when a head consumes aggregated video features, must take the mask
  (:meth:`~aqa_framework.interfaces.Aggregator.takes_padding_mask`), or it would average or
  attend over the padding;
* every head that consumes the clip sequence (``consumes = "clips"``) must take it too
  (:meth:`~aqa_framework.interfaces.TaskHead.takes_padding_mask`).

:class:`SequencePadding` is what a loader's :func:`~aqa_framework.data.skipping.collate` is
told about the model (:meth:`SequencePadding.for_model`): with no component blind to padding,
sequences are padded and their ``video_mask`` extended with ``False``, and the predictions
equal those of one sample per batch; otherwise such a batch is refused with one
:class:`~aqa_framework.errors.DataError` naming the samples' lengths, the component and the
fix. :func:`check_eval_lengths` makes the same decision before any data is loaded, from the
dataset's :meth:`~aqa_framework.interfaces.VideoDataset.varying_eval_lengths`, so that ``aqa
validate`` and ``aqa run`` refuse such a spec at once. Batches of equal-length samples are
collated as before, with nothing added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aqa_framework.errors import DataError, SpecError

__all__ = [
    "PADDING_FIX",
    "SequencePadding",
    "check_eval_lengths",
    "mask_blind_components",
    "pad_sequences",
]

PADDING_FIX = (
    "set data.eval_batch_size: 1, or give the dataset a fixed evaluation length (a "
    "test_length, or a window)"
)
"""How to avoid batches of sequences of different lengths (for messages)."""

_MAX_LISTED = 8


@dataclass(frozen=True)
class SequencePadding:
    """Whether a loader may zero-pad sequences of different lengths into one batch.

    Attributes:
        blind: The components that would see the padding without a mask, as
            ``"aggregator 'average' (model.aggregator)"``; empty: padding is safe.
    """

    blind: tuple[str, ...] = ()

    @classmethod
    def for_model(cls, model: Any) -> SequencePadding:
        """The padding a :class:`~aqa_framework.model.MultitaskModel` allows."""
        return cls(tuple(mask_blind_components(model)))

    @property
    def allowed(self) -> bool:
        """Whether sequences may be padded (no component is blind to the padding)."""
        return not self.blind


def _takes_mask(component: Any) -> bool:
    """Whether a built aggregator or head leaves padding out when given a ``video_mask``."""
    decide = getattr(type(component), "takes_padding_mask", None)
    if callable(decide):
        return bool(decide(component.params))
    return bool(getattr(component, "uses_mask", False))


def mask_blind_components(model: Any) -> list[str]:
    """The components of a model that would see zero padding as data.

    The backbone runs on each clip alone and is never listed. The aggregator is listed when
    a head consumes video features and it does not take a padding mask; every head that
    consumes the clip sequence and does not take one is listed too.

    Args:
        model: A :class:`~aqa_framework.model.MultitaskModel` (on any device, ``meta`` too).

    Returns:
        Descriptions such as ``"aggregator 'average' (model.aggregator)"``, in model order.
    """
    blind: list[str] = []
    heads = dict(model.heads.items())
    aggregator = model.aggregator
    if any(h.consumes == "video" for h in heads.values()) and not _takes_mask(aggregator):
        blind.append(f"aggregator '{aggregator.name}' (model.aggregator)")
    blind += [
        f"head '{head.name}' of task '{task}' (model.heads.{task})"
        for task, head in heads.items()
        if head.consumes == "clips" and not _takes_mask(head)
    ]
    return blind


def check_eval_lengths(model: Any, dataset: Any, batch_size: int) -> None:
    """Refuse evaluation batches that would need padding a component cannot mask out.

    Args:
        model: The built model (``meta`` device is enough).
        dataset: The resolved dataset component (``cls`` and ``params``).
        batch_size: The evaluation batch size (``data.eval_batch_size or data.batch_size``).

    Raises:
        SpecError: At ``data.eval_batch_size`` when the dataset's evaluation samples may
            differ in length, the batch holds more than one, and a component would see the
            padding; naming the dataset setting, the components and the fix.
    """
    if batch_size <= 1:
        return
    varying = getattr(dataset.cls, "varying_eval_lengths", None)
    why = varying(dataset.params) if callable(varying) else None
    if not why:
        return
    blind = mask_blind_components(model)
    if not blind:
        return
    raise SpecError(
        [
            (
                "data.eval_batch_size",
                f"evaluation batches of {batch_size} samples from dataset '{dataset.name}' "
                f"hold sequences of different lengths ({why}), which would need zero padding, "
                f"and {_listing(blind)} cannot leave padding out (it takes no padding mask, or "
                f"its params make it attend to padding): "
                f"{PADDING_FIX}",
            )
        ]
    )


def _listing(blind: Sequence[str]) -> str:
    return blind[0] if len(blind) == 1 else ", ".join(blind[:-1]) + " and " + blind[-1]


def _lengths(samples: Sequence[Mapping[str, Any]]) -> str:
    pairs = [f"{s.get('key', '?')}: {int(s['video'].shape[0])}" for s in samples]
    more = len(pairs) - _MAX_LISTED
    return ", ".join(pairs[:_MAX_LISTED]) + (f", ... and {more} more" if more > 0 else "")


def pad_sequences(
    samples: Sequence[Mapping[str, Any]], padding: SequencePadding | None
) -> list[dict[str, Any]]:
    """The samples with ``video`` zero-padded to the longest and ``video_mask`` extended.

    Args:
        samples: Loaded samples whose ``video`` tensors differ in their first dimension.
        padding: What the model allows; ``None`` when the loader was not told.

    Returns:
        Copies of the samples, each with ``video`` of the longest length and a bool
        ``video_mask`` that is ``True`` on its real clips (the sample's own mask, if it has
        one, then ``False`` on the padding).

    Raises:
        DataError: If the videos differ in more than their length, if samples carry
            exemplars, or if ``padding`` does not allow padding (or is ``None``), naming the
            samples' lengths, the components blind to padding and the fix.
    """
    import torch

    rests = {tuple(s["video"].shape[1:]) for s in samples}
    if len(rests) > 1:
        shapes = ", ".join(f"{s.get('key', '?')}: {tuple(s['video'].shape)}" for s in samples)
        raise DataError(
            f"the samples of a batch have videos of different shapes beyond their length "
            f"({shapes}); every sample of a dataset must have the same clip shape"
        )
    where = f"samples of different lengths (clips) in one evaluation batch ({_lengths(samples)})"
    if any("partners" in s for s in samples):
        raise DataError(f"{where}: their exemplars cannot be padded with them; {PADDING_FIX}")
    if padding is None:
        raise DataError(f"{where}: this loader does not pad sequences; {PADDING_FIX}")
    if not padding.allowed:
        raise DataError(
            f"{where}: zero padding would reach {_listing(padding.blind)}, which would "
            f"average or attend over it (no padding mask taken); {PADDING_FIX}"
        )
    longest = max(int(s["video"].shape[0]) for s in samples)
    out = []
    for s in samples:
        video = s["video"]
        length = int(video.shape[0])
        own = s.get("video_mask")
        mask = (
            torch.as_tensor(own, dtype=torch.bool)
            if own is not None
            else torch.ones(length, dtype=torch.bool)
        )
        if tuple(mask.shape) != (length,):
            raise DataError(
                f"sample {s.get('key', '?')}: video_mask of shape {tuple(mask.shape)} does not "
                f"fit its video of {length} clips (expected ({length},))"
            )
        extra = longest - length
        padded = dict(s)
        padded["video"] = torch.cat([video, video.new_zeros((extra, *video.shape[1:]))])
        padded["video_mask"] = torch.cat([mask, mask.new_zeros(extra)])
        out.append(padded)
    return out
