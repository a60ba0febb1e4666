"""Temporal sampling: which frames of a video make up a sample's clips.

A sample is a *window* of consecutive frames (MTL-AQA: the 103 frames ending at the
annotated ``end_frame``; AQA-7: the first 103 frames). Clips are taken from the window by
offset:

* ``"clips"`` (C3D-AVG): ``num_clips`` clips of ``clip_length`` consecutive frames starting
  every ``clip_stride`` frames, so 6 x 16 with stride 16 gives offsets 0, 16, ..., 80 and
  uses 96 of the 103 frames, exactly as the official code;
* ``"spread"`` (MSCADC): ``num_clips x clip_length`` frames spread evenly over the window;
  for 16 frames over 103 the step is 6.5 frames, as in the official code.

During training the whole window moves by a random shift in ``[-jitter, jitter]`` frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aqa_framework.errors import DataError

SamplingMode = Literal["clips", "spread"]

__all__ = ["SamplingMode", "TemporalSampling", "WindowPlan"]


@dataclass(frozen=True)
class WindowPlan:
    """Where a sample's window lies in its video.

    Attributes:
        start: First frame of the (shifted) window.
        base_start: First frame of the window without training jitter.
        superset: ``(lo, hi)`` frames covering every possible jittered window (the part the
            frame cache stores), clipped to the video.
    """

    start: int
    base_start: int
    superset: tuple[int, int]


@dataclass(frozen=True)
class TemporalSampling:
    """How clips are cut from a window of frames.

    Attributes:
        window: Frames in a sample's window (103 in the paper).
        num_clips: Clips per sample (N).
        clip_length: Frames per clip (T).
        clip_stride: Frames between clip starts (``"clips"`` mode).
        frame_step: Frames between consecutive frames of a clip (``"clips"`` mode).
        mode: ``"clips"`` or ``"spread"``.
        jitter: Largest training shift of the window, in frames.
    """

    window: int = 103
    num_clips: int = 6
    clip_length: int = 16
    clip_stride: int = 16
    frame_step: int = 1
    mode: SamplingMode = "clips"
    jitter: int = 3

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Say why the settings are inconsistent, or ``None`` if they are fine."""
        if (
            min(self.window, self.num_clips, self.clip_length, self.clip_stride, self.frame_step)
            < 1
        ):
            return "window, num_clips, clip_length, clip_stride and frame_step must be >= 1"
        if self.jitter < 0:
            return "jitter must be >= 0"
        if self.mode == "clips":
            span = (self.num_clips - 1) * self.clip_stride + (
                self.clip_length - 1
            ) * self.frame_step
            if span >= self.window:
                return (
                    f"{self.num_clips} clips of {self.clip_length} frames (stride "
                    f"{self.clip_stride}, frame step {self.frame_step}) span {span + 1} frames, "
                    f"more than the window of {self.window}"
                )
        elif self.num_clips * self.clip_length > self.window:
            return (
                f"cannot spread {self.num_clips * self.clip_length} distinct frames over a "
                f"window of {self.window}"
            )
        return None

    def offsets(self) -> np.ndarray:
        """Frame offsets inside the window, shape ``(num_clips, clip_length)``."""
        if self.mode == "clips":
            starts = np.arange(self.num_clips) * self.clip_stride
            steps = np.arange(self.clip_length) * self.frame_step
            return (starts[:, None] + steps[None, :]).astype(np.int64)
        count = self.num_clips * self.clip_length
        step = math.ceil(2 * self.window / count) / 2  # 103 / 16 -> 6.5, the official step
        if count > 1 and (count - 1) * step > self.window - 1:
            step = (self.window - 1) / (count - 1)
        flat = np.floor(np.arange(count) * step).astype(np.int64)
        return flat.reshape(self.num_clips, self.clip_length)

    def plan(
        self,
        num_frames: int,
        *,
        end: int | None = None,
        start: int | None = None,
        shift: int = 0,
        source: str = "",
    ) -> WindowPlan:
        """Place the window in a video.

        The window ends (exclusive) at ``end`` (MTL-AQA ``end_frame``), or starts at ``start``,
        or, with neither, covers the last ``window`` frames. ``shift`` moves it for training
        augmentation and is clipped so the window stays inside the video.

        Args:
            num_frames: Frames in the video.
            end: Exclusive end frame of the window.
            start: First frame of the window.
            shift: Training shift in frames.
            source: The video, for messages.

        Returns:
            The :class:`WindowPlan`.

        Raises:
            DataError: If the unshifted window does not fit in the video.
        """
        if end is not None:
            base = end - self.window
        elif start is not None:
            base = start
        else:
            base = num_frames - self.window
        if base < 0 or base + self.window > num_frames:
            where = f" of {source}" if source else ""
            raise DataError(
                f"window of {self.window} frames [{base}, {base + self.window}) lies outside the "
                f"{num_frames} frames{where} (index past the end, or a wrong end_frame?)"
            )
        shifted = min(max(base + shift, 0), num_frames - self.window)
        lo = max(base - self.jitter, 0)
        hi = min(base + self.window + self.jitter, num_frames)
        return WindowPlan(start=shifted, base_start=base, superset=(lo, hi))
