"""A synthetic gymnastics vault dataset, generated in memory.

The videos are SYNTHETIC: a bright ellipse (the gymnast) flies along a parabola over a dark
background, rotates once per somersault, narrows and widens with each twist, wobbles with its
execution faults and lands left or right of the mat's boundary line. Nothing here is footage of
real gymnasts; the data exists so the plugin (and its tutorial) runs anywhere with no download,
and a model can learn from it because the picture carries every number it is scored on.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.errors import DataError
from aqa_framework.interfaces import VideoDataset
from aqa_framework.targets import ClassField, ScoreTarget, Targets
from aqa_gymnastics.scoring import (
    D_RANGE,
    E_RANGE,
    FAMILIES,
    FINAL_RANGE,
    PENALTY_RANGE,
    final_score,
)

_COLORS = torch.tensor([[1.0, 0.45, 0.45], [0.45, 1.0, 0.45], [0.45, 0.45, 1.0]])
_BOUNDARY_X = 0.9
_LANDING_X = {0.0: 0.76, 0.1: 0.87, 0.3: 0.95}  # penalty -> where the gymnast lands


class VaultSyntheticParams(BaseModel):
    """Parameters of :class:`VaultSyntheticDataset`."""

    model_config = ConfigDict(extra="forbid")

    train_samples: int = Field(64, ge=2, description="Vaults in the train split.")
    test_samples: int = Field(24, ge=2, description="Vaults in the test split.")
    num_clips: int = Field(2, ge=1, description="Clips per vault (N).")
    frames: int = Field(16, ge=1, description="Frames per clip (T).")
    size: int = Field(32, ge=8, description="Frame height and width in pixels.")
    noise: float = Field(
        0.02, ge=0.0, description="Std of the pixel noise added to training samples."
    )
    seed: int = Field(0, ge=0, description="Seed of the generated vaults.")


class VaultSyntheticDataset(VideoDataset):
    """Synthetic vaults with D-score, E-score, penalty, final score and vault family.

    Generated in memory (no files): each vault is a deterministic function of
    ``(seed, split, index)``. Difficulty grows with the family, the somersaults and the
    twists; execution deductions show as wobble; a landing past the boundary line costs a
    penalty of 0.1 or 0.3.
    """

    name: ClassVar[str] = "gymnastics.vault-synthetic"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    Params = VaultSyntheticParams

    def __init__(self, params: BaseModel, split: str = "train", train: bool = False) -> None:
        super().__init__(params, split, train)
        if split not in self.splits:
            raise DataError(
                f"dataset '{self.name}' has no split '{split}'; splits: {', '.join(self.splits)}"
            )
        count = params.train_samples if split == "train" else params.test_samples
        self._vaults = [self._vault(i) for i in range(count)]

    @property
    def targets(self) -> Targets:
        """Scores ``d_score``, ``e_score``, ``penalty``, ``final_score``; class ``family``."""
        return Targets(
            scores={
                "d_score": ScoreTarget(low=D_RANGE[0], high=D_RANGE[1], description="Difficulty"),
                "e_score": ScoreTarget(low=E_RANGE[0], high=E_RANGE[1], description="Execution"),
                "penalty": ScoreTarget(
                    low=PENALTY_RANGE[0], high=PENALTY_RANGE[1], description="Neutral penalty"
                ),
                "final_score": ScoreTarget(
                    low=FINAL_RANGE[0], high=FINAL_RANGE[1], description="D + E - penalty"
                ),
            },
            classes={"family": ClassField(labels=list(FAMILIES), description="Vault family")},
        )

    @property
    def keys(self) -> list[str]:
        """``vault-<split>-NNNN``."""
        return [v["key"] for v in self._vaults]

    def __len__(self) -> int:
        """Number of vaults in the split."""
        return len(self._vaults)

    def _vault(self, index: int) -> dict[str, Any]:
        split_id = self.splits.index(self.split)
        rng = np.random.default_rng([self.params.seed, split_id, index])
        family = int(rng.integers(len(FAMILIES)))
        somersaults = float(rng.choice([1.0, 2.0]))
        twists = float(rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]))
        deductions = float(rng.uniform(0.2, 3.0))
        penalty = float(rng.choice([0.0, 0.1, 0.3], p=[0.6, 0.3, 0.1]))
        d_score = round(2.0 + 0.4 * family + 1.0 * (somersaults - 1.0) + 0.4 * twists, 1)
        e_score = round(E_RANGE[1] - deductions, 3)
        return {
            "key": f"vault-{self.split}-{index:04d}",
            "family": family,
            "somersaults": somersaults,
            "twists": twists,
            "deductions": deductions,
            "phase": float(rng.uniform(0, 2 * math.pi)),
            "scores": {
                "d_score": d_score,
                "e_score": e_score,
                "penalty": penalty,
                "final_score": round(final_score(d_score, e_score, penalty), 3),
            },
        }

    def render(self, vault: dict[str, Any]) -> torch.Tensor:
        """Draw one vault as a ``(N, 3, T, H, W)`` float video in ``[-1, 1]``."""
        p = self.params
        n_frames, size = p.num_clips * p.frames, p.size
        s = torch.linspace(0.0, 1.0, n_frames)
        flight = (s / 0.8).clamp(max=1.0)  # the last 20% of the frames is the landing
        wobble = vault["deductions"] / 3.0 * 0.6 * torch.sin(6 * math.pi * s + vault["phase"])
        land_x = _LANDING_X[vault["scores"]["penalty"]]
        cx = 0.12 + (land_x - 0.12) * flight
        cy = 0.78 - 2.0 * flight * (1 - flight)
        angle = math.pi / 2 + 2 * math.pi * vault["somersaults"] * flight + wobble
        width = 0.05 * (0.4 + 0.6 * torch.cos(math.pi * vault["twists"] * flight).abs())
        grid = torch.linspace(0.0, 1.0, size)
        gy, gx = torch.meshgrid(grid, grid, indexing="ij")
        dx = gx[None] - cx[:, None, None]
        dy = gy[None] - cy[:, None, None]
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        body = torch.exp(-(u**2 / (2 * 0.11**2) + v**2 / (2 * width[:, None, None] ** 2)))
        frames = body[:, None] * _COLORS[vault["family"]][None, :, None, None]  # (F, 3, H, W)
        floor = (gy > 0.9).float() * 0.3
        line = ((gy > 0.9) & ((gx - _BOUNDARY_X).abs() < 1.0 / size)).float()
        frames = frames + floor[None, None]
        frames[:, 1] += line
        video = frames.clamp(0, 1) * 2 - 1
        return video.reshape(p.num_clips, p.frames, 3, size, size).permute(0, 2, 1, 3, 4)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One vault: video, the four scores and the family."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} vaults")
        vault = self._vaults[index]
        video = self.render(vault)
        if self.train and self.params.noise > 0:
            video = video + self.params.noise * torch.randn_like(video)
        return {
            "key": vault["key"],
            "video": video.contiguous(),
            "scores": dict(vault["scores"]),
            "classes": {"family": vault["family"]},
        }
