"""Samples left out at load time (``on_error: skip``), and the collate that drops them.

A dataset opened with ``on_error: skip`` that cannot load a sample (a corrupt video, a window
outside its video) returns :func:`skipped_sample` instead: the sample's key and the reason,
no data. :func:`collate` builds the batch from the other samples and lists the skipped keys
under :data:`SKIPPED`. A sample is thus left out of its split, never replaced by another: the
evaluation computes its metrics over the samples actually evaluated, ``predictions.csv``
lists each key once, and the run's ``results.json`` and report count what was skipped.

Samples whose ``video`` differs in length (whole sequences at evaluation) are zero-padded to
the longest, with a ``video_mask``, when the loader's
:class:`~aqa_framework.data.padding.SequencePadding` allows it, and refused with a clear error
otherwise (see :mod:`aqa_framework.data.padding`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aqa_framework.data.padding import SequencePadding

__all__ = ["SKIPPED", "collate", "is_skipped", "skipped_sample"]

SKIPPED = "skipped"
"""Batch key: the keys of the batch's samples that could not be loaded (absent if none)."""

_MARK = "__skipped__"


def skipped_sample(key: str, reason: str) -> dict[str, Any]:
    """What a dataset returns for a sample it cannot load and leaves out.

    Args:
        key: The sample's key.
        reason: Why it cannot be loaded (for messages).
    """
    return {"key": key, _MARK: reason}


def is_skipped(sample: Any) -> bool:
    """Whether ``sample`` is a :func:`skipped_sample` marker."""
    return isinstance(sample, Mapping) and _MARK in sample


def collate(samples: Sequence[Any], padding: SequencePadding | None = None) -> Any:
    """PyTorch's default collate over the loadable samples; skipped keys under ``skipped``.

    A batch whose every sample was skipped is ``{"skipped": [...]}``, without ``video``.
    Samples of equal shape are collated as they are. Samples whose ``video`` differs in its
    first dimension (clips) are zero-padded to the longest and get a ``video_mask`` (``True``
    on real clips) when ``padding`` allows it
    (:func:`~aqa_framework.data.padding.pad_sequences`).

    Args:
        samples: What the dataset returned for the batch's indices.
        padding: Whether the model can take padded sequences (bind it with
            :func:`functools.partial`); ``None``: sequences of different lengths are refused.

    Raises:
        DataError: For samples of different lengths that may not be padded, naming their
            lengths and the fix.
    """
    from torch.utils.data import default_collate

    good = [s for s in samples if not is_skipped(s)]
    bad = [str(s["key"]) for s in samples if is_skipped(s)]
    if good and _differ(good):
        from aqa_framework.data.padding import pad_sequences

        good = pad_sequences(good, padding)
    if not bad:
        return default_collate(good)
    batch = default_collate(good) if good else {}
    if isinstance(batch, dict):
        batch[SKIPPED] = bad
    return batch


def _differ(samples: Sequence[Any]) -> bool:
    """Whether the samples' ``video`` tensors differ in shape."""
    first = samples[0].get("video") if isinstance(samples[0], Mapping) else None
    shape = getattr(first, "shape", None)
    if shape is None:
        return False
    return any(
        isinstance(s, Mapping) and getattr(s.get("video"), "shape", shape) != shape
        for s in samples[1:]
    )
