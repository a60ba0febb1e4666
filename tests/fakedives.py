"""A tiny in-memory dataset plugin and spec helpers for the model and builder tests."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from aqa_framework import hookimpl
from aqa_framework.interfaces import VideoDataset
from aqa_framework.registry import Registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec
from aqa_framework.targets import CaptionTarget, ClassField, ScoreTarget, Targets

WORDS = ["<eos>", "<sos>", "clean", "entry", "big", "splash", "tuck", "pike", "twist", "rip"]


class FakeDivesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(4, description="Samples per split.")
    num_clips: int = Field(2, description="Clips per sample.")
    frames: int = Field(16, description="Frames per clip.")
    size: int = Field(32, description="Frame side.")
    scores: bool = Field(True, description="Provide a final score.")
    classes: bool = Field(True, description="Provide class fields.")
    captions: bool = Field(True, description="Provide captions.")
    max_length: int = Field(6, description="Longest caption in words.")


class FakeDivesDataset(VideoDataset):
    """Random dives with a score, two class fields and short captions (tests only)."""

    name: ClassVar[str] = "fake.dives"
    Params = FakeDivesParams

    def __init__(self, params: BaseModel, split: str = "train", train: bool = False) -> None:
        super().__init__(params, split, train)
        p = self.params
        self._targets = Targets(
            scores={"final_score": ScoreTarget(low=0, high=100)} if p.scores else {},
            classes={
                "position": ClassField(labels=["free", "pike", "tuck"]),
                "armstand": ClassField(labels=["no", "yes"]),
            }
            if p.classes
            else {},
            captions=CaptionTarget(words=WORDS, max_length=p.max_length) if p.captions else None,
        )
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = p.num_samples
        # noise around a per-sample colour, so that samples differ as real videos do
        noise = torch.randn(n, p.num_clips, 3, p.frames, p.size, p.size, generator=gen)
        colour = torch.randn(n, 1, 3, 1, 1, 1, generator=gen)
        self._video = 0.5 * noise + colour
        self._score = torch.rand(n, generator=gen) * 100
        self._pos = torch.randint(0, 3, (n,), generator=gen)
        self._arm = torch.randint(0, 2, (n,), generator=gen)
        self._caps = []
        for _ in range(n):
            k = int(torch.randint(2, p.max_length + 1, (1,), generator=gen))
            words = torch.randint(2, len(WORDS), (k,), generator=gen)
            tokens = torch.zeros(p.max_length + 2, dtype=torch.long)
            tokens[0] = 1
            tokens[1 : k + 1] = words
            self._caps.append((tokens, k + 2))

    @property
    def input_shape(self) -> tuple[int, ...]:
        p = self.params
        return (p.num_clips, 3, p.frames, p.size, p.size)

    @property
    def targets(self) -> Targets:
        return self._targets

    @property
    def keys(self) -> list[str]:
        return [f"{self.split}-{i}" for i in range(len(self))]

    def __len__(self) -> int:
        return self.params.num_samples

    def __getitem__(self, i: int) -> dict[str, Any]:
        s: dict[str, Any] = {"key": self.keys[i], "video": self._video[i]}
        if self.params.scores:
            s["scores"] = {"final_score": float(self._score[i])}
        if self.params.classes:
            s["classes"] = {"position": int(self._pos[i]), "armstand": int(self._arm[i])}
        if self.params.captions:
            s["caption"], s["caption_length"] = self._caps[i]
        return s


class _FakePlugin:
    @hookimpl
    def register_datasets(self, register):
        register(FakeDivesDataset)


def registry() -> Registry:
    """Built-ins plus the ``fake.dives`` dataset."""
    return Registry(entry_points=[], extra_plugins=[("fake", _FakePlugin())])


def resolved(model: dict[str, Any], data_params: dict[str, Any] | None = None, reg=None):
    """Resolve a spec made of a model section and the fake dataset."""
    spec = parse_spec({"model": model, "data": {"name": "fake.dives", "params": data_params or {}}})
    return resolve(spec, registry=reg or registry())


def batch_of(dataset: VideoDataset) -> dict[str, Any]:
    """The whole dataset as one collated batch."""
    from torch.utils.data import default_collate

    return default_collate([dataset[i] for i in range(len(dataset))])


C3D_AVG_MTL = {
    "backbone": {"name": "c3d", "params": {"width": 0.0625}},
    "aggregator": {"name": "average", "params": {"shared_fc": 128}},
    "heads": {
        "score": {"name": "score", "params": {"target_scale": 17}},
        "cls": {"name": "classification"},
        "caption": {
            "name": "caption",
            "params": {"hidden": 32, "word_dim": 16, "dropout": 0.0},
        },
    },
}
"""C3D-AVG-MTL at 1/16 width (tiny GRUs) for CPU tests."""

MSCADC_MTL = {
    "backbone": {"name": "mscadc", "params": {"width": 0.125, "dropout": 0.0}},
    "aggregator": {"name": "identity"},
    "heads": {
        "score": {"name": "score", "params": {"target_scale": 17, "bottleneck": 2}},
        "cls": {"name": "classification", "params": {"bottleneck": 2}},
        "caption": {
            "name": "caption",
            "params": {"hidden": 32, "word_dim": 16, "dropout": 0.0, "bottleneck": 2,
                       "pool_size": [1, 2, 2]},
        },
    },
}
"""MSCADC-MTL at 1/8 width with 4-channel heads for CPU tests."""
