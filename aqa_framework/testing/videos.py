"""Tiny video files for tests: H.264 at frame sizes decord reads.

decord, the framework's video reader, fails on valid H.264 files of a few small widths (8, 12,
16, 24, 48 and 72 px among them; :class:`~aqa_framework.video.readers.DecordVideoReader` then
falls back to PyAV). So that a test exercises the reader a real dataset gets, the writer keeps
to sizes decord reads: a width that is a multiple of :data:`DECORD_WIDTH_MULTIPLE` (32) and an
even height (H.264 in ``yuv420p`` needs even sizes anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DECORD_WIDTH_MULTIPLE", "decord_safe_size", "synthetic_frames", "write_video"]

DECORD_WIDTH_MULTIPLE = 32
"""Frame widths that are a multiple of this are read by decord (checked from 32 to 320 px)."""


def decord_safe_size(height: int, width: int) -> tuple[int, int]:
    """The smallest frame size decord reads that is at least ``height`` x ``width``.

    Args:
        height: Wanted frame height in pixels.
        width: Wanted frame width in pixels.

    Returns:
        ``(height, width)``: the height rounded up to an even number, the width rounded up to a
        multiple of :data:`DECORD_WIDTH_MULTIPLE`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"a frame size must be positive, got {height}x{width}")
    m = DECORD_WIDTH_MULTIPLE
    return 2 * math.ceil(height / 2), m * math.ceil(width / m)


def synthetic_frames(num_frames: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Smooth moving colour stripes: frames that survive H.264 compression almost unchanged.

    Args:
        num_frames: Number of frames ``T``.
        height: Frame height ``H``.
        width: Frame width ``W``.
        seed: Seed of the stripes' phases; the same arguments always give the same frames.

    Returns:
        A ``(T, H, W, 3)`` ``uint8`` RGB array; consecutive frames differ (the stripes move).
    """
    import numpy as np

    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    t = np.arange(num_frames, dtype=np.float64)[:, None, None] / 16
    y = np.linspace(0, 1, height, endpoint=False)[None, :, None]
    x = np.linspace(0, 1, width, endpoint=False)[None, None, :]
    channels = [
        np.sin(2 * np.pi * (x + t) + phase[0]) + 0 * y,
        np.sin(2 * np.pi * (y + t) + phase[1]) + 0 * x,
        np.sin(2 * np.pi * (x + y - t) + phase[2]),
    ]
    return np.stack([128 + 80 * c for c in channels], axis=-1).round().astype(np.uint8)


def _as_frames(frames: Any) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 from uint8 or float in [0, 1], RGB or grey ``(T, H, W)``."""
    import numpy as np

    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(
            f"frames must be (T, H, W, 3) RGB or (T, H, W) grey with T >= 1, got {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.floating):
        arr = (np.clip(arr, 0.0, 1.0) * 255).round()
    elif arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"integer frames must lie in [0, 255], got [{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr.astype(np.uint8))


def write_video(
    path: str | Path,
    frames_or_shape: Sequence[int] | Any,
    fps: float = 25,
    *,
    seed: int = 0,
    decord_safe: bool = True,
) -> Path:
    """Write a small video file: H.264 (``libx264``), else MPEG-4 where FFmpeg lacks it.

    Args:
        path: The file to write (``.mp4``); missing parent folders are created.
        frames_or_shape: Either the frames, a ``(T, H, W, 3)`` RGB or ``(T, H, W)`` grey
            array (``uint8``, or float in [0, 1]; a CPU tensor works too), or the shape
            ``(T, H, W)`` of :func:`synthetic_frames` to write. A shape is rounded up to
            :func:`decord_safe_size`.
        fps: Frame rate.
        seed: Seed of the synthetic frames (ignored when frames are given).
        decord_safe: Refuse frames whose size decord cannot read (see the module docs). Pass
            ``False`` to write any even size, e.g. to test the PyAV fallback.

    Returns:
        The path written.

    Raises:
        ValueError: If the frames are not an RGB or grey video, or their size is odd or (with
            ``decord_safe``) not one that decord reads.
    """
    import av

    if isinstance(frames_or_shape, Sequence) and all(
        isinstance(n, int) for n in frames_or_shape
    ):
        if len(frames_or_shape) != 3:
            raise ValueError(f"a shape must be (T, H, W), got {tuple(frames_or_shape)}")
        t, h, w = frames_or_shape
        if decord_safe:
            h, w = decord_safe_size(h, w)
        frames = synthetic_frames(t, h, w, seed=seed)
    else:
        frames = _as_frames(frames_or_shape)
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs an even frame size, got {h}x{w} (height x width)")
    if decord_safe and (h, w) != decord_safe_size(h, w):
        raise ValueError(
            f"frames {w} px wide may not be readable by decord; use a width that is a "
            f"multiple of {DECORD_WIDTH_MULTIPLE} (e.g. {decord_safe_size(h, w)[1]}), or pass "
            "decord_safe=False"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if "libx264" in av.codecs_available:
        codec, options = "libx264", {"preset": "ultrafast", "crf": "10", "bf": "0"}
    else:  # pragma: no cover - FFmpeg builds without x264
        codec, options = "mpeg4", {"qscale": "2", "bf": "0"}
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {**options, "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
