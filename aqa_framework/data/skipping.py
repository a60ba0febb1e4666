"""Samples left out at load time (``on_error: skip``), and the collate that drops them.

A dataset opened with ``on_error: skip`` that cannot load a sample (a corrupt video, a window
outside its video) returns :func:`skipped_sample` instead: the sample's key and the reason,
no data. :func:`collate` builds the batch from the other samples and lists the skipped keys
under :data:`SKIPPED`. A sample is thus left out of its split, never replaced by another: the
evaluation computes its metrics over the samples actually evaluated, ``predictions.csv``
lists each key once, and the run's ``results.json`` and report count what was skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def collate(samples: Sequence[Any]) -> Any:
    """PyTorch's default collate over the loadable samples; skipped keys under ``skipped``.

    A batch whose every sample was skipped is ``{"skipped": [...]}``, without ``video``.

    Args:
        samples: What the dataset returned for the batch's indices.
    """
    from torch.utils.data import default_collate

    good = [s for s in samples if not is_skipped(s)]
    bad = [str(s["key"]) for s in samples if is_skipped(s)]
    if not bad:
        return default_collate(list(samples))
    batch = default_collate(good) if good else {}
    if isinstance(batch, dict):
        batch[SKIPPED] = bad
    return batch
