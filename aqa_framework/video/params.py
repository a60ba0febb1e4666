"""Parameters shared by every clip-based video dataset (sampling, transforms, errors, cache).

Dataset plugins subclass :class:`VideoParams` and add their own fields (files, layout). The
defaults are the paper's C3D-AVG settings; the comments say how to get MSCADC and small CPU
settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.video.sampling import TemporalSampling

__all__ = ["VideoParams", "expand_path", "video_input_shape"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def expand_path(path: str | Path, base: str | Path | None = None) -> Path:
    """Expand ``~`` and ``$VARS`` in a path and resolve it against ``base`` if relative.

    Args:
        path: A path from a spec.
        base: Folder that relative paths are relative to (default: the current directory).
    """
    p = Path(os.path.expandvars(os.path.expanduser(str(path))))
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    return p


def video_input_shape(params: object) -> tuple[int, int, int, int, int] | None:
    """The ``(N, 3, T, H, W)`` clips that the common video params describe.

    ``N`` is ``num_clips``, ``T`` is ``clip_length`` and ``H x W`` is the crop or else the
    resized frame size. Works on any params object with these fields (a :class:`VideoParams`
    or a look-alike).

    Args:
        params: A dataset's validated params.

    Returns:
        The shape, or ``None`` when the params lack these fields or keep the frames at the
        size of the video (neither ``crop`` nor ``resize``).
    """
    try:
        n, t = int(params.num_clips), int(params.clip_length)  # type: ignore[attr-defined]
        crop = getattr(params, "crop", None)
        resize = getattr(params, "resize", None)
        if crop is not None:
            h, w = (crop, crop) if isinstance(crop, int) else (crop[0], crop[1])
        elif resize is not None:
            w, h = resize[0], resize[1]
        else:
            return None
        return (n, 3, t, int(h), int(w))
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


class VideoParams(BaseModel):
    """Sampling and transform settings (C3D-AVG defaults: 6 x 16 frames, 171x128 -> 112).

    MSCADC: ``sampling: spread, num_clips: 1, clip_length: 16, resize: [640, 360], crop: 180``.
    USDL/MUSDL on MTL-AQA: ``clip_starts: [0, 10, 20, 30, 40, 50, 60, 70, 80, 87]``.
    USDL/MUSDL on JIGSAWS: ``window: null, sampling: uniform, num_clips: 10, jitter: 0``.
    Small CPU runs: e.g. ``clip_length: 8, frame_step: 2, resize: null, crop: 64``.
    """

    model_config = ConfigDict(extra="forbid")

    sampling: Literal["clips", "spread", "uniform"] = Field(
        "clips",
        description="'clips': num_clips clips of clip_length consecutive frames every clip_stride "
        "frames, or at clip_starts (C3D-AVG, USDL/MUSDL, CoRe); 'spread': num_clips x "
        "clip_length frames spread evenly over the window (MSCADC); 'uniform': num_clips x "
        "clip_length frames at floor(linspace(0, W-1, num_clips*clip_length)) over the window "
        "of W frames, cut into clips of clip_length (USDL/MUSDL on JIGSAWS).",
    )
    window: int | None = Field(
        103,
        ge=1,
        description="Frames in a sample's window (103 in the paper); null: the whole video, "
        "of any length (sampling 'uniform' or 'spread', jitter 0; a video with fewer than "
        "num_clips x clip_length frames is an error naming it).",
    )
    num_clips: int = Field(
        6,
        ge=1,
        description="Clips per sample (N of the (N, C, T, H, W) video); follows from "
        "clip_starts when that is set.",
    )
    clip_starts: list[int] | None = Field(
        None,
        description="'clips' mode: the offset of each clip in the window, e.g. "
        "[0, 10, 20, 30, 40, 50, 60, 70, 80, 87] (USDL/MUSDL, 10 clips of 16 in 103 frames); "
        "num_clips follows from it and clip_stride is not used. null: every clip_stride frames.",
    )
    clip_length: int = Field(16, ge=1, description="Frames per clip (T).")
    clip_stride: int = Field(
        16, ge=1, description="Frames between clip starts in 'clips' mode (offsets 0, 16, ..., 80)."
    )
    frame_step: int = Field(
        1, ge=1, description="Frames between consecutive frames of a clip ('clips' mode)."
    )
    jitter: int = Field(
        3,
        ge=0,
        description="Training only: the window moves by a random shift in [-jitter, jitter].",
    )
    resize: tuple[int, int] | None = Field(
        (171, 128),
        description="Resize every frame to (width, height) before cropping; null keeps the size.",
    )
    crop: int | tuple[int, int] | None = Field(
        112, description="Center crop: a side length or (height, width); null disables it."
    )
    flip: bool = Field(True, description="Training only: flip each sample horizontally with p=0.5.")
    normalize: bool = Field(
        True, description="Normalise with mean/std after scaling to [0, 1] (else [0, 1] values)."
    )
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Per-channel mean (RGB).")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="Per-channel std (RGB).")
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="Bad samples (missing annotation, caption or video, corrupt video, window "
        "past the end): 'raise' a DataError naming the sample and file, or 'skip' them with a "
        "warning (annotation and missing-file problems when the split is opened).",
    )
    cache_dir: str | None = Field(
        None,
        description="Folder for the decoded-frame cache (uint8 memory-mapped files); epochs after "
        "the first read frames from it instead of decoding. null disables it.",
        json_schema_extra=PATH_PARAM,
    )
    decode_threads: int = Field(
        1, ge=0, description="Decoder threads per video reader (0: let FFmpeg choose)."
    )
    exclude_keys: list[str] = Field(
        default_factory=list,
        description="Sample keys to leave out of every split (e.g. a known wrong annotation), "
        "before any check; each split warns which it left out and the run's results list them "
        "as skipped.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> VideoParams:
        if self.clip_starts is not None and "num_clips" not in self.model_fields_set:
            self.num_clips = len(self.clip_starts)
        self.temporal_sampling()  # raises ValueError on inconsistent clip settings
        crop = self.crop_hw
        if crop is not None and min(crop) < 1:
            raise ValueError("crop sizes must be >= 1")
        if self.resize is not None:
            if min(self.resize) < 1:
                raise ValueError("resize sizes must be >= 1")
            if crop is not None and (crop[0] > self.resize[1] or crop[1] > self.resize[0]):
                raise ValueError(
                    f"crop {crop[0]}x{crop[1]} (height x width) is larger than the resized "
                    f"frames {self.resize[1]}x{self.resize[0]}"
                )
        return self

    @property
    def crop_hw(self) -> tuple[int, int] | None:
        """The crop as ``(height, width)``."""
        if self.crop is None:
            return None
        if isinstance(self.crop, int):
            return (self.crop, self.crop)
        return (int(self.crop[0]), int(self.crop[1]))

    def temporal_sampling(self) -> TemporalSampling:
        """The :class:`TemporalSampling` these params describe."""
        return TemporalSampling(
            window=self.window,
            num_clips=self.num_clips,
            clip_length=self.clip_length,
            clip_stride=self.clip_stride,
            frame_step=self.frame_step,
            mode=self.sampling,
            jitter=self.jitter,
            clip_starts=None if self.clip_starts is None else tuple(self.clip_starts),
        )
