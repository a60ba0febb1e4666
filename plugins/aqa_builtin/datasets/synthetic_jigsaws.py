"""The ``synthetic-jigsaws`` dataset: cartoon surgical trials generated on first use (NOT real).

It is ``jigsaws`` on a folder written by :func:`aqa_framework.synth.jigsaws.generate_jigsaws`:
MUSDL's ``label.pkl`` and ``splits.pkl`` and one video per trial and camera in the release's
layout, read by the same reader with the same targets (``grs`` and ``grs_items``). It exists
so that JIGSAWS specs, whole-video sampling and the GRS targets run anywhere; results on it
say nothing about real surgery.

The data is generated the first time a split is opened, into ``root`` or, by default,
``.aqa-cache/synthetic-jigsaws-<hash of the settings>`` under the current directory
(atomically: a temporary folder renamed into place), and reused afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.video.cache import settings_hash
from aqa_framework.video.dataset import SampleRecord
from aqa_framework.video.params import expand_path

from .jigsaws import JIGSAWSDataset

__all__ = ["SyntheticJIGSAWSDataset", "SyntheticJIGSAWSSettings", "default_root"]


def _wanted(settings: SyntheticJIGSAWSSettings) -> dict:
    from aqa_framework.synth.jigsaws import GENERATOR_VERSION

    return {
        "version": GENERATOR_VERSION,
        "trials_per_task": settings.trials_per_task,
        "seed": settings.seed,
        "size": list(settings.size),
        "min_frames": settings.min_frames,
        "max_frames": settings.max_frames,
    }


def default_root(settings: SyntheticJIGSAWSSettings) -> Path:
    """``.aqa-cache/synthetic-jigsaws-<hash>`` in the current directory for these settings."""
    return Path(".aqa-cache") / f"synthetic-jigsaws-{settings_hash(**_wanted(settings))[:10]}"


class SyntheticJIGSAWSSettings(BaseModel):
    """What the generator draws (the data is generated once per combination)."""

    model_config = ConfigDict(extra="forbid")

    trials_per_task: int = Field(
        24, ge=8, le=200, description="Trials per task (users B-I in turn, 8-200)."
    )
    seed: int = Field(0, description="Generator seed (same seed, same trials and frames).")
    size: tuple[int, int] = Field(
        (64, 48),
        description="Frame (width, height) of the generated videos (width a multiple of 32, "
        "height even, both >= 32).",
    )
    min_frames: int = Field(60, ge=16, description="Frames of the fastest trial.")
    max_frames: int = Field(120, ge=16, description="Frames of the slowest trial.")

    @field_validator("size")
    @classmethod
    def _decodable_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32 or value[0] % 32 or value[1] % 2:
            raise ValueError(
                "size must be [width, height] >= 32, width a multiple of 32, e.g. [64, 48]"
            )
        return value

    @model_validator(mode="after")
    def _frame_range(self) -> SyntheticJIGSAWSSettings:
        if self.max_frames < self.min_frames:
            raise ValueError(
                f"max_frames ({self.max_frames}) is below min_frames ({self.min_frames})"
            )
        return self


class SyntheticJIGSAWSDataset(JIGSAWSDataset):
    """Synthetic surgical trials in the JIGSAWS format, generated on first use (not real)."""

    name: ClassVar[str] = "synthetic-jigsaws"

    class Params(JIGSAWSDataset.Params, SyntheticJIGSAWSSettings):
        """Generator settings, then the ``jigsaws`` parameters (defaults suit small frames)."""

        root: str | None = Field(  # type: ignore[assignment]
            None,
            description="Where the data lives (generated there if missing); default "
            "'.aqa-cache/synthetic-jigsaws-<hash of the settings>' in the current directory.",
            json_schema_extra=PATH_PARAM,
        )
        layout: Literal["videos"] = Field(  # type: ignore[assignment]
            "videos", description="'videos': the generated video files (the only layout written)."
        )
        video_pattern: str | None = Field(
            "{task}/video/{trial}_{camera}.mp4",
            description="Video inside videos_dir, formatted with task, trial and camera.",
        )
        num_clips: int = Field(
            3, ge=1, description="Clips per sample (3 x 16 = 48 frames fit the shortest trial)."
        )
        clip_length: int = Field(16, ge=1, description="Frames per clip (T).")
        crop: int | tuple[int, int] | None = Field(
            48, description="Center crop: a side length or (height, width); null disables it."
        )

        @model_validator(mode="after")
        def _fits_the_generated_trials(self) -> SyntheticJIGSAWSDataset.Params:
            crop = self.crop_hw
            width, height = self.resize or self.size
            if crop is not None and (crop[0] > height or crop[1] > width):
                raise ValueError(
                    f"crop {crop[0]}x{crop[1]} (height x width) is larger than the "
                    f"{width}x{height} frames; lower crop or set resize"
                )
            count = self.num_clips * self.clip_length
            if self.window is None and count > self.min_frames:
                raise ValueError(
                    f"{self.num_clips} clips x {self.clip_length} frames = {count} frames, more "
                    f"than the shortest generated trial ({self.min_frames} frames, min_frames)"
                )
            return self

    params: Params

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...] | None:
        """``(num_clips, 3, clip_length, H, W)``: the crop, else the resize, else ``size``."""
        shape = super().input_shape(params)
        if shape is None:
            width, height = params.size  # type: ignore[attr-defined]
            shape = (params.num_clips, 3, params.clip_length, height, width)  # type: ignore[attr-defined]
        return shape

    @property
    def root(self) -> Path:
        """The data folder (explicit ``root`` or the settings-keyed cache folder)."""
        if self.params.root is not None:
            return expand_path(self.params.root)
        return default_root(self.params).absolute()

    def frame_size(self) -> tuple[int, int] | None:
        """The generated frame size, ``size`` (no video needs to be opened)."""
        return (int(self.params.size[0]), int(self.params.size[1]))

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Generate the data if it is missing, then read it like ``jigsaws``."""
        self._ensure_generated()
        return super().build_records()

    def _ensure_generated(self) -> None:
        from aqa_framework.synth.first_use import ensure_generated
        from aqa_framework.synth.jigsaws import MARKER, generate_jigsaws

        p = self.params
        ensure_generated(
            self.root,
            MARKER,
            _wanted(p),
            lambda: generate_jigsaws(
                self.root,
                p.trials_per_task,
                p.seed,
                tuple(p.size),
                min_frames=p.min_frames,
                max_frames=p.max_frames,
            ),
            f"{3 * p.trials_per_task} synthetic surgical trials "
            f"({p.size[0]}x{p.size[1]}, seed {p.seed})",
        )
