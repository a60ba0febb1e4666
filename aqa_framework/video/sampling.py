"""Temporal sampling: which frames of a video make up a sample's clips.

A sample is a *window* of consecutive frames (MTL-AQA: the 103 frames ending at the
annotated ``end_frame``; AQA-7: the first 103 frames; JIGSAWS: the whole video). Clips are
taken from the window by offset:

* ``"clips"`` (C3D-AVG): ``num_clips`` clips of ``clip_length`` consecutive frames starting
  every ``clip_stride`` frames, so 6 x 16 with stride 16 gives offsets 0, 16, ..., 80 and
  uses 96 of the 103 frames, exactly as the official code; or starting at explicit
  ``clip_starts`` (USDL/MUSDL on MTL-AQA: 0, 10, ..., 80, 87; CoRe: ..., 80, 86);
* ``"spread"`` (MSCADC): ``num_clips x clip_length`` frames spread evenly over the window;
  for 16 frames over 103 the step is 6.5 frames, as in the official code;
* ``"uniform"`` (USDL/MUSDL on JIGSAWS): ``num_clips x clip_length`` frames at
  ``floor(linspace(0, W - 1, num_clips * clip_length))`` over a window of ``W`` frames, cut
  into consecutive groups of ``clip_length`` (160 frames: 10 clips of 16).

The window has a fixed length, or is the whole video (``window=None``): then it covers every
frame of the video (from the sample's ``start`` anchor, if any, to its ``end`` anchor, if any),
its length differs from video to video and the offsets are computed per video; only the
``"uniform"`` and ``"spread"`` modes can sample it, and a video with fewer frames than the
``num_clips x clip_length`` asked for is a :class:`~aqa_framework.errors.DataError` naming it.

During training a window of fixed length moves by a random shift in ``[-jitter, jitter]``
frames; the whole-video window cannot move, so it needs ``jitter=0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aqa_framework.errors import DataError

SamplingMode = Literal["clips", "spread", "uniform"]

__all__ = ["SamplingMode", "TemporalSampling", "WindowPlan"]


@dataclass(frozen=True)
class WindowPlan:
    """Where a sample's window lies in its video.

    Attributes:
        start: First frame of the (shifted) window.
        base_start: First frame of the window without training jitter.
        superset: ``(lo, hi)`` frames covering every possible jittered window (the part the
            frame cache stores), clipped to the video.
        length: Frames in the window (``window``, or the video's for the whole-video window).
    """

    start: int
    base_start: int
    superset: tuple[int, int]
    length: int = 0


@dataclass(frozen=True)
class TemporalSampling:
    """How clips are cut from a window of frames.

    Attributes:
        window: Frames in a sample's window (103 in the paper), or ``None`` for the whole video.
        num_clips: Clips per sample (N).
        clip_length: Frames per clip (T).
        clip_stride: Frames between clip starts (``"clips"`` mode without ``clip_starts``).
        frame_step: Frames between consecutive frames of a clip (``"clips"`` mode).
        mode: ``"clips"``, ``"spread"`` or ``"uniform"``.
        jitter: Largest training shift of the window, in frames.
        clip_starts: Offsets of the clips in the window (``"clips"`` mode), one per clip,
            instead of every ``clip_stride`` frames.
    """

    window: int | None = 103
    num_clips: int = 6
    clip_length: int = 16
    clip_stride: int = 16
    frame_step: int = 1
    mode: SamplingMode = "clips"
    jitter: int = 3
    clip_starts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.clip_starts is not None:
            object.__setattr__(self, "clip_starts", tuple(int(v) for v in self.clip_starts))
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    @property
    def frames_per_sample(self) -> int:
        """Frames a sample is made of, ``num_clips x clip_length``."""
        return self.num_clips * self.clip_length

    def problem(self) -> str | None:
        """Say why the settings are inconsistent, or ``None`` if they are fine."""
        if self.clip_starts is not None:
            problem = self._starts_problem()
            if problem:
                return problem
        sizes = (self.num_clips, self.clip_length, self.clip_stride, self.frame_step)
        if min(sizes) < 1 or (self.window is not None and self.window < 1):
            return "window, num_clips, clip_length, clip_stride and frame_step must be >= 1"
        if self.jitter < 0:
            return "jitter must be >= 0"
        if self.mode not in ("clips", "spread", "uniform"):
            return f"unknown sampling mode {self.mode!r} (clips, spread or uniform)"
        if self.window is None:
            return self._whole_video_problem()
        if self.mode == "clips":
            return self._clips_problem(self.window)
        if self.frames_per_sample > self.window:
            return (
                f"cannot {'spread' if self.mode == 'spread' else 'sample'} "
                f"{self.frames_per_sample} distinct frames ({self.mode}) over a window of "
                f"{self.window}"
            )
        return None

    def _starts_problem(self) -> str | None:
        starts = self.clip_starts or ()
        if self.mode != "clips":
            return f"clip_starts place clips in 'clips' sampling, not in {self.mode!r}"
        if not starts:
            return "clip_starts is empty: give one offset per clip, e.g. [0, 10, 20]"
        if len(starts) != self.num_clips:
            return (
                f"clip_starts gives {len(starts)} clips but num_clips is {self.num_clips} "
                "(leave num_clips out: it follows from clip_starts)"
            )
        if min(starts) < 0:
            return f"clip_starts must be >= 0, got {list(starts)}"
        return None

    def _whole_video_problem(self) -> str | None:
        if self.mode == "clips":
            return (
                "window: null (the whole video) needs sampling 'uniform' or 'spread' "
                "(clips at fixed offsets need a window of fixed length)"
            )
        if self.jitter:
            return (
                f"jitter {self.jitter} moves a window inside its video, but window: null is the "
                "whole video, which cannot move: set jitter: 0"
            )
        return None

    def _clips_problem(self, window: int) -> str | None:
        reach = (self.clip_length - 1) * self.frame_step
        if self.clip_starts is not None:
            outside = [s for s in self.clip_starts if s + reach >= window]
            if outside:
                return (
                    f"clip_starts {outside} put clips of {self.clip_length} frames (frame step "
                    f"{self.frame_step}) past the window of {window} frames (the last clip may "
                    f"start at {window - 1 - reach} at most)"
                )
            return None
        span = (self.num_clips - 1) * self.clip_stride + reach
        if span >= window:
            return (
                f"{self.num_clips} clips of {self.clip_length} frames (stride "
                f"{self.clip_stride}, frame step {self.frame_step}) span {span + 1} frames, "
                f"more than the window of {window}"
            )
        return None

    def offsets(self, length: int | None = None) -> np.ndarray:
        """Frame offsets inside the window, shape ``(num_clips, clip_length)``.

        Args:
            length: Frames in the window; needed for the whole-video window (``window=None``),
                where it is the video's length, and ignored otherwise.

        Raises:
            ValueError: For the whole-video window without ``length``, or a ``length`` shorter
                than the frames asked for.
        """
        window = self.window
        if window is None:
            if length is None:
                raise ValueError("the window is the whole video: pass its length to offsets()")
            if length < self.frames_per_sample:
                raise ValueError(
                    f"a window of {length} frames has fewer than the {self.frames_per_sample} "
                    "frames asked for"
                )
            window = int(length)
        if self.mode == "clips":
            if self.clip_starts is not None:
                starts = np.asarray(self.clip_starts, dtype=np.int64)
            else:
                starts = np.arange(self.num_clips) * self.clip_stride
            steps = np.arange(self.clip_length) * self.frame_step
            return (starts[:, None] + steps[None, :]).astype(np.int64)
        count = self.frames_per_sample
        if self.mode == "uniform":
            flat = np.floor(np.linspace(0, window - 1, count)).astype(np.int64)
            return flat.reshape(self.num_clips, self.clip_length)
        step = math.ceil(2 * window / count) / 2  # 103 / 16 -> 6.5, the official step
        if count > 1 and (count - 1) * step > window - 1:
            step = (window - 1) / (count - 1)
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
        augmentation and is clipped so the window stays inside the video. The whole-video
        window (``window=None``) covers the frames from ``start`` (default 0) to ``end``
        (default the video's end) and never moves.

        Args:
            num_frames: Frames in the video.
            end: Exclusive end frame of the window.
            start: First frame of the window.
            shift: Training shift in frames.
            source: The video, for messages.

        Returns:
            The :class:`WindowPlan`.

        Raises:
            DataError: If the unshifted window does not fit in the video, or the whole-video
                window has fewer frames than a sample is made of.
        """
        where = f" of {source}" if source else ""
        if self.window is None:
            return self._plan_whole(num_frames, end=end, start=start, source=source)
        if end is not None:
            base = end - self.window
        elif start is not None:
            base = start
        else:
            base = num_frames - self.window
        if base < 0 or base + self.window > num_frames:
            raise DataError(
                f"window of {self.window} frames [{base}, {base + self.window}) lies outside the "
                f"{num_frames} frames{where} (index past the end, or a wrong end_frame?)"
            )
        shifted = min(max(base + shift, 0), num_frames - self.window)
        lo = max(base - self.jitter, 0)
        hi = min(base + self.window + self.jitter, num_frames)
        return WindowPlan(start=shifted, base_start=base, superset=(lo, hi), length=self.window)

    def _plan_whole(
        self, num_frames: int, *, end: int | None, start: int | None, source: str
    ) -> WindowPlan:
        where = f" of {source}" if source else ""
        lo = 0 if start is None else start
        hi = num_frames if end is None else end
        if lo < 0 or hi > num_frames or hi <= lo:
            raise DataError(
                f"frames [{lo}, {hi}) lie outside the {num_frames} frames{where} "
                "(a wrong start or end frame?)"
            )
        if hi - lo < self.frames_per_sample:
            span = "" if (lo, hi) == (0, num_frames) else f" in [{lo}, {hi})"
            raise DataError(
                f"{source or 'the video'} has {hi - lo} frames{span}, fewer than the "
                f"{self.frames_per_sample} a sample is made of ({self.num_clips} clips x "
                f"{self.clip_length} frames, {self.mode} sampling over the whole video): "
                "lower num_clips or clip_length, or leave the video out"
            )
        return WindowPlan(start=lo, base_start=lo, superset=(lo, hi), length=hi - lo)
