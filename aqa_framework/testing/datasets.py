"""Synthetic data for tests: small targets, fake samples and batches, a tiny dataset.

Everything here produces data in exactly the layout the framework uses (see
:mod:`aqa_framework.targets`), collated with PyTorch's default collate as the engine does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.utils.data import default_collate

from aqa_framework.interfaces import VideoDataset
from aqa_framework.targets import ArrayTarget, CaptionTarget, ClassField, ScoreTarget, Targets

__all__ = [
    "TinyVideoDataset",
    "TinyVideoDatasetParams",
    "fake_batch",
    "fake_sample",
    "tiny_targets",
]


def tiny_targets(
    *,
    scores: Mapping[str, tuple[float, float]] | Iterable[str] = ("final_score",),
    classes: Mapping[str, Sequence[str] | int] | None = None,
    captions: bool = True,
    max_length: int = 8,
    arrays: Mapping[str, ArrayTarget] | None = None,
) -> Targets:
    """Small :class:`~aqa_framework.targets.Targets` for head and model tests.

    Args:
        scores: Score names (range 0-100 each) or a mapping name -> ``(low, high)``.
        classes: Field -> labels (or number of classes); defaults to a 3-class ``position``
            and a 2-class ``armstand`` field. Pass ``{}`` for none.
        captions: Whether to include a 10-word caption vocabulary.
        max_length: Longest caption in words (without ``<sos>``/``<eos>``).
        arrays: Open targets (name -> :class:`~aqa_framework.targets.ArrayTarget`); none by
            default.

    Returns:
        The targets.
    """
    if isinstance(scores, Mapping):
        score_targets = {k: ScoreTarget(low=lo, high=hi) for k, (lo, hi) in scores.items()}
    else:
        score_targets = {k: ScoreTarget(low=0.0, high=100.0) for k in scores}
    if classes is None:
        classes = {"position": ["free", "pike", "tuck"], "armstand": ["no", "yes"]}
    class_fields = {
        field: ClassField(
            labels=[f"{field}_{i}" for i in range(labels)]
            if isinstance(labels, int)
            else list(labels)
        )
        for field, labels in classes.items()
    }
    caption = None
    if captions:
        words = ["<eos>", "<sos>", "a", "clean", "dive", "entry", "good", "rip", "splash", "twist"]
        caption = CaptionTarget(words=words, max_length=max_length)
    return Targets(
        scores=score_targets, classes=class_fields, captions=caption, arrays=dict(arrays or {})
    )


def _random_array(target: ArrayTarget, gen: torch.Generator) -> Tensor:
    """Random values of an open target's shape, inside its bounds (``step`` respected)."""
    low = 0.0 if target.low is None else target.low
    high = low + 10.0 if target.high is None else target.high
    if target.low is None and target.high is not None:
        low = high - 10.0
    values = low + (high - low) * torch.rand(target.shape, generator=gen)
    step = target.info.get("step")
    if isinstance(step, int | float) and step > 0:
        values = (low + torch.round((values - low) / step) * step).clamp(low, high)
    return values.to(torch.float32)


def _random_caption(target: CaptionTarget, gen: torch.Generator) -> tuple[Tensor, int]:
    specials = {target.pad_index, target.sos_index, target.eos_index}
    vocab = torch.tensor([i for i in range(target.vocab_size) if i not in specials])
    n_words = int(torch.randint(1, target.max_length + 1, (1,), generator=gen))
    words = vocab[torch.randint(0, len(vocab), (n_words,), generator=gen)]
    tokens = torch.full((target.max_length + 2,), target.pad_index, dtype=torch.int64)
    tokens[0] = target.sos_index
    tokens[1 : n_words + 1] = words
    tokens[n_words + 1] = target.eos_index
    return tokens, n_words + 2


def fake_sample(
    targets: Targets,
    index: int = 0,
    *,
    video_shape: Sequence[int] | None = (2, 3, 8, 32, 32),
    seed: int = 0,
) -> dict[str, Any]:
    """One sample dict carrying random values for every target.

    Args:
        targets: What the sample must provide.
        index: Sample index (names the key and varies the random values).
        video_shape: ``(N, C, T, H, W)`` of the video, or ``None`` for no video.
        seed: Base seed; the same ``(seed, index)`` always gives the same sample.

    Returns:
        A sample in the layout documented in :mod:`aqa_framework.targets`.
    """
    gen = torch.Generator().manual_seed(seed * 100_003 + index)
    sample: dict[str, Any] = {"key": f"sample-{index:04d}"}
    if video_shape is not None:
        sample["video"] = torch.rand(tuple(video_shape), generator=gen) * 2 - 1
    if targets.scores:
        sample["scores"] = {
            name: float(t.low + (t.high - t.low) * torch.rand((), generator=gen))
            for name, t in targets.scores.items()
        }
    if targets.classes:
        sample["classes"] = {
            name: int(torch.randint(0, f.num_classes, (), generator=gen))
            for name, f in targets.classes.items()
        }
    if targets.captions is not None:
        sample["caption"], sample["caption_length"] = _random_caption(targets.captions, gen)
    if targets.arrays:
        sample["arrays"] = {
            name: _random_array(t, gen) for name, t in targets.arrays.items()
        }
    return sample


def fake_batch(
    targets: Targets,
    batch_size: int = 4,
    *,
    video_shape: Sequence[int] | None = (2, 3, 8, 32, 32),
    seed: int = 0,
) -> dict[str, Any]:
    """A collated batch of :func:`fake_sample` s (PyTorch default collate, as the engine).

    Args:
        targets: What the samples provide.
        batch_size: Number of samples.
        video_shape: Per-sample ``(N, C, T, H, W)``, or ``None`` for no video.
        seed: Base seed.

    Returns:
        ``{"key": [...], "video": (B, N, C, T, H, W), "scores": {name: (B,)}, ...}``.
    """
    samples = [
        fake_sample(targets, i, video_shape=video_shape, seed=seed) for i in range(batch_size)
    ]
    return default_collate(samples)


class TinyVideoDatasetParams(BaseModel):
    """Parameters of :class:`TinyVideoDataset`."""

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(6, ge=1, description="Samples per split.")
    num_clips: int = Field(2, ge=1, description="Clips per sample (N).")
    frames: int = Field(8, ge=1, description="Frames per clip (T).")
    size: int = Field(32, ge=1, description="Frame height and width.")
    captions: bool = Field(True, description="Whether samples carry captions.")
    seed: int = Field(0, description="Seed of the random content.")


class TinyVideoDataset(VideoDataset):
    """Random videos with random scores, classes and captions, for contract and engine tests.

    The content is deterministic in ``(seed, split, index)``. The score is the mean brightness
    of the video (rescaled to 0-100), so a model can actually learn something from it.
    """

    name: ClassVar[str] = "testing.tiny"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    Params = TinyVideoDatasetParams

    def __init__(self, params: BaseModel, split: str = "train", train: bool = False) -> None:
        super().__init__(params, split, train)
        if split not in self.splits:
            from aqa_framework.errors import DataError

            raise DataError(f"dataset '{self.name}' has no split '{split}' ({self.splits})")
        self._targets = tiny_targets(captions=self.params.captions)
        self._offset = self.splits.index(split) * 10_000

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...]:
        """``(num_clips, 3, frames, size, size)``."""
        return (params.num_clips, 3, params.frames, params.size, params.size)

    @property
    def targets(self) -> Targets:
        """A score, two class fields and (optionally) captions."""
        return self._targets

    @property
    def keys(self) -> list[str]:
        """``<split>-0000``, ``<split>-0001``, ..."""
        return [f"{self.split}-{i:04d}" for i in range(len(self))]

    def __len__(self) -> int:
        """``params.num_samples``."""
        return self.params.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One random sample whose score follows its brightness."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        p = self.params
        sample = fake_sample(
            self._targets,
            self._offset + index,
            video_shape=(p.num_clips, 3, p.frames, p.size, p.size),
            seed=p.seed,
        )
        sample["key"] = self.keys[index]
        sample["scores"]["final_score"] = float((sample["video"].mean() + 1) * 50)
        return sample
