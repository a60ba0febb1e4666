"""The ``synthetic-diving`` dataset: cartoon dives generated on first use (NOT real data).

It is ``mtl-aqa`` on a folder written by :func:`aqa_framework.synth.diving.generate_diving`:
the same files, the same reader, the same targets (final score, five class fields,
captions), and like MUSDL's annotation file it holds the seven judges' marks, so it also
declares the open targets ``judge_scores`` and ``difficulty`` (``extra_targets: auto``; set
``extra_targets: []`` for the targets of generator version 4 and before). It exists so the
quickstart and the tests run anywhere without downloading broadcasts; see
``docs/datasets-synthetic.md``. Results on it say nothing about real diving.

The data is generated the first time a split is opened, into ``root`` or, by default,
``.aqa-cache/synthetic-diving-<hash of the settings>`` under the current directory
(atomically: a temporary folder renamed into place), and reused afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.video.cache import settings_hash
from aqa_framework.video.dataset import SampleRecord
from aqa_framework.video.params import expand_path

from .mtl_aqa import MTLAQADataset

__all__ = ["SyntheticDivingDataset", "SyntheticSettings", "default_root"]

log = logging.getLogger(__name__)


def default_root(dives: int, seed: int, size: tuple[int, int], dives_per_event: int) -> Path:
    """``.aqa-cache/synthetic-diving-<hash>`` in the current directory for these settings."""
    from aqa_framework.synth.diving import GENERATOR_VERSION

    digest = settings_hash(
        version=GENERATOR_VERSION,
        dives=dives,
        seed=seed,
        size=list(size),
        dives_per_event=dives_per_event,
    )[:10]
    return Path(".aqa-cache") / f"synthetic-diving-{digest}"


class SyntheticSettings(BaseModel):
    """What the generator draws (the data is generated once per combination)."""

    model_config = ConfigDict(extra="forbid")

    dives: int = Field(300, ge=4, description="Number of dives to generate.")
    seed: int = Field(0, description="Generator seed (same seed, same dives and frames).")
    size: tuple[int, int] = Field(
        (96, 72), description="Frame (width, height) of the generated videos (even, >= 32)."
    )
    dives_per_event: int = Field(30, ge=1, description="Dives per generated event video.")
    workers: int = Field(1, ge=1, description="Processes used to generate the videos.")

    @field_validator("size")
    @classmethod
    def _even_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32 or value[0] % 2 or value[1] % 2:
            raise ValueError("size must be two even numbers >= 32, e.g. [96, 72]")
        return value


class SyntheticDivingDataset(MTLAQADataset):
    """Synthetic diving in the MTL-AQA format, generated on first use (not real diving)."""

    name: ClassVar[str] = "synthetic-diving"

    class Params(MTLAQADataset.Params, SyntheticSettings):
        """Generator settings, then the ``mtl-aqa`` parameters (defaults suit small frames)."""

        root: str | None = Field(  # type: ignore[assignment]
            None,
            description="Where the data lives (generated there if missing); default "
            "'.aqa-cache/synthetic-diving-<hash of the settings>' in the current directory.",
            json_schema_extra=PATH_PARAM,
        )
        resize: tuple[int, int] | None = Field(
            None, description="Resize every frame to (width, height); null keeps the 96x72 frames."
        )
        crop: int | tuple[int, int] | None = Field(
            64, description="Center crop: a side length or (height, width); null disables it."
        )
        max_caption_length: int = Field(
            60, ge=1, description="Words kept per caption (the synthetic ones have at most ~50)."
        )

        @model_validator(mode="after")
        def _crop_fits(self) -> SyntheticDivingDataset.Params:
            crop = self.crop_hw
            width, height = self.resize or self.size
            if crop is not None and (crop[0] > height or crop[1] > width):
                raise ValueError(
                    f"crop {crop[0]}x{crop[1]} (height x width) is larger than the "
                    f"{width}x{height} frames; lower crop or set resize"
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
        p = self.params
        if p.root is not None:
            return expand_path(p.root)
        return default_root(p.dives, p.seed, p.size, p.dives_per_event).absolute()

    def frame_size(self) -> tuple[int, int] | None:
        """The generated frame size, ``size`` (no video needs to be opened)."""
        return (int(self.params.size[0]), int(self.params.size[1]))

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Generate the data if it is missing, then read it like ``mtl-aqa``."""
        self._ensure_generated()
        return super().build_records()

    def _ensure_generated(self) -> None:
        from aqa_framework.synth.diving import GENERATOR_VERSION, MARKER, generate_diving
        from aqa_framework.synth.first_use import ensure_generated

        p = self.params
        wanted = {
            "version": GENERATOR_VERSION,
            "dives": p.dives,
            "seed": p.seed,
            "size": list(p.size),
            "dives_per_event": p.dives_per_event,
        }

        def generate() -> None:
            summary = generate_diving(
                self.root,
                p.dives,
                p.seed,
                tuple(p.size),
                dives_per_event=p.dives_per_event,
                workers=p.workers,
            )
            log.info("generated %s dives in %.1f s", summary.dives, summary.seconds)

        announce = f"{p.dives} synthetic dives ({p.size[0]}x{p.size[1]}, seed {p.seed})"
        ensure_generated(self.root, MARKER, wanted, generate, announce)
