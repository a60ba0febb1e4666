"""A decoded-frame cache: prepared uint8 frames of each sample in memory-mapped ``.npy`` files.

The first epoch decodes each sample's frames (every frame a jittered window can reach, e.g.
103 + 2 x 3) and stores them resized and center-cropped; later epochs memory-map the file and
pick the frames they need, without decoding. Files live in
``<cache_dir>/<settings hash>/<key>_<lo>-<hi>.npy``: the hash covers the source file (path,
size, modification time), the resize and the crop, the name covers the sample and its frame
range, so a changed video, resize, crop or annotation never reuses stale frames. A window that
never moves but spans a long video (``window: null``, the whole video) stores only the frames
the sample uses, in ``<key>_<lo>-<hi>_f<hash of the frame list>.npy``, so a change of
``num_clips`` or ``clip_length`` never reuses them either. Writes are
atomic (temporary file, then rename), so parallel workers and interrupted runs never leave
half-written entries.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.files import atomic_file

__all__ = ["FrameCache", "settings_hash"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def settings_hash(**settings: Any) -> str:
    """A short stable hash of JSON-serialisable settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def source_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identity of a video file or frame folder: resolved path, size and modification time."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}


class FrameCache:
    """Stores and memory-maps frame arrays by sample key, frame range and settings hash.

    Args:
        root: Cache folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str, lo: int, hi: int, digest: str, tag: str = "") -> Path:
        """Where the frames ``[lo, hi)`` of sample ``key`` live for settings ``digest``.

        ``tag`` tells entries apart that hold a selection of the frames of ``[lo, hi)``.
        """
        suffix = f"_{_SAFE.sub('_', tag)}" if tag else ""
        return self.root / digest / f"{_SAFE.sub('_', key)}_{lo}-{hi}{suffix}.npy"

    def load(
        self, key: str, lo: int, hi: int, digest: str, *, rows: int | None = None, tag: str = ""
    ) -> np.ndarray | None:
        """Memory-map a cached array, or ``None`` if absent or unreadable (then it is rebuilt).

        Args:
            key: Sample key.
            lo: First frame of the range.
            hi: One past the last frame of the range.
            digest: Settings hash.
            rows: Frames the entry holds; default ``hi - lo`` (every frame of the range).
            tag: The selection's name (see :meth:`path`).
        """
        expected = hi - lo if rows is None else rows
        path = self.path(key, lo, hi, digest, tag)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[0] != expected:
            return None
        return arr

    def store(
        self, key: str, lo: int, hi: int, digest: str, frames: np.ndarray, *, tag: str = ""
    ) -> Path:
        """Write an array atomically and return its path.

        Args:
            key: Sample key.
            lo: First frame of the range.
            hi: One past the last frame of the range.
            digest: Settings hash.
            frames: ``uint8`` array whose first dim is ``hi - lo``, or, with a ``tag``, any
                number of rows (a selection of the range's frames).
            tag: The selection's name (see :meth:`path`).
        """
        rows_ok = frames.shape[0] == hi - lo or (tag and 0 < frames.shape[0] <= hi - lo)
        if frames.dtype != np.uint8 or not rows_ok:
            raise ValueError(f"expected uint8 frames with {hi - lo} rows, got {frames.shape}")
        path = self.path(key, lo, hi, digest, tag)
        with atomic_file(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(frames), allow_pickle=False)
        return path

    def size_bytes(self) -> int:
        """Total size of the cached files."""
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*.npy"))
