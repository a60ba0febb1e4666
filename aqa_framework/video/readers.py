"""Frame readers: random access to the frames of one video file or one JPEG frame folder.

Every reader returns frames as a ``uint8`` numpy array ``(F, H, W, 3)`` (RGB) for a list of
0-based frame indices, read in one call. Two layouts are supported:

* a video file (``whole_videos/01.mp4``): decoded with decord, frames addressed by index, so a
  whole broadcast can be used without extracting frames. Files decord cannot open or decode
  (it fails on valid H.264 videos of a few small widths, 16, 24, 48 and 72 px among them:
  ``DECORDArrayCopyFromTo: The size must exactly match``) are read with PyAV instead
  (:class:`PyAVVideoReader`); an error after both tried names both readers;
* a folder of JPEG frames (``whole_videos_frames/01/000001.jpg``): read with PIL; the file of
  frame ``i`` is ``pattern.format(index=i + first_index)``, or, without a pattern, the
  ``i``-th of the folder's image files in sorted name order (as USDL/MUSDL list them).

Given the size the frames will be resized to, the JPEG reader decodes smaller frames (PIL's
draft mode: a reduced power-of-two size, no smaller than needed). Video frames are decoded at
full size and resized by the transform: FFmpeg's scaler inside decord was measured slower than
a full decode plus torch's antialiased resize (0.7x at 640x360, 1.0x at 320x180,
``benchmarks/bench_data.py``), so the reader does not scale while decoding. decord and PyAV
are imported lazily, so frame folders work without them.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aqa_framework.env import env_flag
from aqa_framework.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DecordVideoReader",
    "FrameReader",
    "JpegFolderReader",
    "PyAVVideoReader",
    "ReaderPool",
    "open_reader",
    "require_decord",
]


_quieted = False

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class _PyAVError(DataError):
    """A :class:`PyAVVideoReader` failure; ``reason`` is its cause without the file name."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or _short(exc)


def _both_failed(what: str, decord_exc: BaseException, pyav_exc: BaseException) -> DataError:
    """The error after decord and then PyAV failed: both readers and their reasons."""
    return DataError(
        f"{what} with decord or PyAV (decord: {_short(decord_exc)}; PyAV: {_reason(pyav_exc)})"
    )


def require_decord() -> Any:
    """Import decord or raise a :class:`DataError` that says how to get it.

    FFmpeg's own log lines ("moov atom not found", decoder warnings) are silenced once, so
    that they do not interleave with progress bars: a file that cannot be read raises a
    :class:`DataError` naming it and the reason. ``AQA_DEBUG=1`` keeps them.

    Returns:
        The ``decord`` module.
    """
    global _quieted
    try:
        import decord
    except ImportError as exc:  # pragma: no cover - decord is a declared dependency
        raise DataError(
            "reading video files needs the 'decord' package (pip install decord); "
            "JPEG frame folders work without it"
        ) from exc
    if not _quieted:
        _quieted = True
        if not env_flag("AQA_DEBUG"):
            decord.logging.set_level(decord.logging.QUIET)
    return decord


class FrameReader(ABC):
    """Random access to the frames of one video.

    Attributes:
        path: The file or folder read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """Number of frames available."""

    @abstractmethod
    def _read(self, indices: np.ndarray) -> np.ndarray:
        """Read validated, in-range indices."""

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read frames by 0-based index.

        Args:
            indices: Frame indices, any order, repeats allowed.

        Returns:
            ``uint8`` array ``(len(indices), H, W, 3)``.

        Raises:
            DataError: If an index is out of range or the data cannot be decoded.
        """
        return self._read(self._checked(indices))

    def read_prepared(
        self, indices: Sequence[int] | np.ndarray, prepare: Callable[[Any], torch.Tensor]
    ) -> torch.Tensor:
        """Read frames and pass them through ``prepare`` (e.g. resize and crop).

        The result equals ``prepare(self.read(indices))`` for a ``prepare`` that treats
        frames independently, but a reader may apply it to a few frames at a time, so that
        full-size frames never pile up in memory (the video reader does).

        Args:
            indices: Frame indices, any order, repeats allowed.
            prepare: Maps ``uint8 (F, H, W, 3)`` frames (numpy or torch) to a tensor whose
                first dimension is ``F``.

        Returns:
            The prepared frames, in the order of ``indices``.

        Raises:
            DataError: If an index is out of range or the data cannot be decoded.
        """
        idx = self._checked(indices)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return _in_order(prepare(self._read(uniq)), uniq, idx, inverse)

    def _checked(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise DataError(f"{self.path}: no frame indices requested")
        lo, hi = int(idx.min()), int(idx.max())
        n = self.num_frames
        if lo < 0 or hi >= n:
            raise DataError(
                f"{self.path}: frame index {hi if hi >= n else lo} is out of range "
                f"(it has {n} frames, valid indices 0..{n - 1})"
            )
        return idx

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (file handles, decoder state)."""


class DecordVideoReader(FrameReader):
    """Reads frames of a video file with decord, falling back to PyAV where decord fails.

    decord cannot decode valid H.264 files of some widths (16, 24, 48, 72 px: its copy check
    ``The size must exactly match`` fails) and may fail to open a file FFmpeg reads. The reader
    then switches to :class:`PyAVVideoReader` for the rest of its life (:attr:`backend` says
    which one is in use); if PyAV fails too, the :class:`DataError` names both readers and
    their reasons.

    Args:
        path: Video file (mp4, avi, mkv, ...).
        num_threads: Decoder threads (0 lets FFmpeg choose; 1 suits DataLoader workers).
        size: Deprecated and ignored: frames are decoded at full size (scaling while
            decoding was slower than the transform's resize); a warning says so.

    Attributes:
        backend: ``"decord"``, or ``"pyav"`` once the reader fell back to PyAV.

    Raises:
        DataError: If the file is missing or neither decord nor PyAV can open it.
    """

    chunk = 16
    """Frames decoded per call when reading a run of nearby frames."""
    max_gap = 48
    """Needed frames further apart than this are reached by seeking instead of decoding."""

    def __init__(
        self, path: str | Path, num_threads: int = 1, size: tuple[int, int] | None = None
    ) -> None:
        super().__init__(path)
        if size is not None:
            warnings.warn(
                "DecordVideoReader(size=...) is deprecated and ignored: frames are decoded at "
                "full size; resize them with the transform",
                DeprecationWarning,
                stacklevel=2,
            )
        if not self.path.is_file():
            raise DataError(f"video file not found: {self.path}")
        self.num_threads = num_threads
        self.backend = "decord"
        self._pyav: PyAVVideoReader | None = None
        self._decord_failure = ""
        self._vr: Any = None
        self._n = 0
        try:
            self._vr = self._open()
            self._n = len(self._vr)
        except Exception as exc:  # decord raises its own DECORDError / RuntimeError
            self._use_pyav(exc, f"cannot open video {self.path}")
            return
        if self._n <= 0:
            raise DataError(f"video {self.path} has no frames")

    def _use_pyav(self, exc: BaseException, what: str) -> PyAVVideoReader:
        """Switch to PyAV after decord failed with ``exc``, or raise naming both readers."""
        if self._pyav is None:
            try:
                pyav = PyAVVideoReader(self.path, num_threads=self.num_threads)
            except DataError as pyav_exc:
                raise _both_failed(what, exc, pyav_exc) from exc
            self._pyav = pyav
        self.backend = "pyav"
        self._decord_failure = _short(exc)
        self._vr = None
        return self._pyav

    def _with_pyav(self, read: Callable[[PyAVVideoReader], Any]) -> Any:
        """A read by the PyAV fallback; its errors also say why decord was left."""
        assert self._pyav is not None
        try:
            return read(self._pyav)
        except DataError as exc:
            raise DataError(
                f"{exc} (PyAV is used because decord failed: {self._decord_failure})"
            ) from exc

    def _open(self) -> Any:
        decord = require_decord()
        return decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=self.num_threads)

    @property
    def num_frames(self) -> int:
        """Number of frames in the video (from the container index)."""
        return self._pyav.num_frames if self.backend == "pyav" else self._n

    def _read(self, indices: np.ndarray) -> np.ndarray:
        if self.backend == "pyav":
            return self._with_pyav(lambda r: r._read(indices))
        uniq, inverse = np.unique(indices, return_inverse=True)
        try:
            frames = self._decode(uniq)
        except Exception as exc:
            return self._pyav_read(uniq, exc, lambda r: r._read(indices))
        if frames.ndim != 4 or frames.shape[0] != uniq.size or frames.shape[-1] != 3:
            raise DataError(f"{self.path}: decoder returned frames of shape {frames.shape}")
        return frames if uniq.size == indices.size and np.all(uniq == indices) else frames[inverse]

    def read_prepared(
        self, indices: Sequence[int] | np.ndarray, prepare: Callable[[Any], torch.Tensor]
    ) -> torch.Tensor:
        """Read frames and prepare them 16 at a time (see :meth:`FrameReader.read_prepared`).

        Decoded frames reach ``prepare`` as torch tensors that share decord's memory (no
        copy) and are dropped once prepared, so a window of full-size frames never lives in
        memory at once (``benchmarks/bench_data.py``: the full C3D-AVG sample from 640x360
        video went from 1,007 to 1,689 frames/s with this and full-size decoding).
        """
        import torch

        idx = self._checked(indices)
        if self.backend == "pyav":
            return self._with_pyav(lambda r: r.read_prepared(idx, prepare))
        uniq, inverse = np.unique(idx, return_inverse=True)
        parts: list[torch.Tensor] = []
        chunks = self._chunks(uniq, as_torch=True)
        while True:
            try:
                frames = next(chunks)
            except StopIteration:
                break
            except Exception as exc:
                return self._pyav_read(uniq, exc, lambda r: r.read_prepared(idx, prepare))
            parts.append(prepare(frames))
        prepared = torch.cat(parts) if len(parts) > 1 else parts[0]
        if prepared.shape[0] != uniq.size:
            raise DataError(f"{self.path}: decoder returned {prepared.shape[0]} frames")
        return _in_order(prepared, uniq, idx, inverse)

    def _pyav_read(self, uniq: np.ndarray, exc: Exception, read: Callable[[Any], Any]) -> Any:
        """Redo a read that decord failed with PyAV; keep PyAV only if that works.

        Raises:
            DataError: Naming both readers and their reasons, if PyAV fails too.
        """
        what = f"cannot decode frames {int(uniq[0])}..{int(uniq[-1])} of {self.path}"
        state = (self.backend, self._vr)
        pyav = self._use_pyav(exc, what)
        try:
            return read(pyav)
        except DataError as pyav_exc:
            self.backend, self._vr = state  # decord stays for other frames
            raise _both_failed(what, exc, pyav_exc) from exc

    def _chunks(self, uniq: np.ndarray, as_torch: bool = False) -> Iterator[Any]:
        """The frames ``uniq`` (sorted, unique), a few at a time, in order.

        With ``as_torch`` they are torch tensors sharing decord's buffers, else numpy arrays.
        """
        if as_torch:
            import torch
            from torch.utils.dlpack import from_dlpack
        for lo, hi in _runs(uniq, self.max_gap):
            want = uniq[(uniq >= lo) & (uniq < hi)]
            # Decode the run front to back in small contiguous batches: decord goes on
            # decoding from where it stopped, while scattered indices make it seek for each
            # one (1.3-3x slower); small batches bound the memory of unused frames
            # (skip_frames is no faster than decoding them).
            for start in range(lo, hi, self.chunk):
                stop = min(start + self.chunk, hi)
                sel = want[(want >= start) & (want < stop)] - start
                batch = self._vr.get_batch(list(range(start, stop)))
                if not sel.size:
                    continue
                if as_torch:
                    frames = from_dlpack(batch.to_dlpack())
                    if sel.size != frames.shape[0]:
                        frames = frames[torch.from_numpy(sel)]
                else:
                    frames = batch.asnumpy()
                    if sel.size != frames.shape[0]:
                        frames = frames[sel]
                yield frames

    def _decode(self, uniq: np.ndarray) -> np.ndarray:
        out: np.ndarray | None = None
        filled = 0
        for frames in self._chunks(uniq):
            if out is None:
                out = np.empty((uniq.size, *frames.shape[1:]), dtype=frames.dtype)
            out[filled : filled + frames.shape[0]] = frames
            filled += frames.shape[0]
        assert out is not None and filled == uniq.size
        return out

    def close(self) -> None:
        """Drop the decoder."""
        self._vr = None
        if self._pyav is not None:
            self._pyav.close()


class PyAVVideoReader(FrameReader):
    """Reads frames of a video file with PyAV (FFmpeg's own decoders and scaler).

    The fallback of :class:`DecordVideoReader`. Frame ``i`` is the ``i``-th frame in
    presentation order: the packets' timestamps are indexed once when the file is opened
    (demuxing, no decoding), and each run of nearby frames is read by seeking to the keyframe
    before it and decoding forward. Streams without timestamps are decoded from the start.

    Args:
        path: Video file.
        num_threads: Decoder threads (0 lets FFmpeg choose).

    Raises:
        DataError: If the file is missing, has no video stream or cannot be read.
    """

    max_gap = 48
    """Needed frames further apart than this are reached by seeking instead of decoding."""

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        super().__init__(path)
        if not self.path.is_file():
            raise _PyAVError(f"video file not found: {self.path}", reason="file not found")
        self.num_threads = num_threads
        try:
            self._pts, self._n = self._index()
        except DataError:
            raise
        except Exception as exc:  # av.error.FFmpegError, IndexError (no video stream) ...
            raise _PyAVError(
                f"cannot open video {self.path} with PyAV: {_short(exc)}", reason=_short(exc)
            ) from exc
        if self._n <= 0:
            raise _PyAVError(f"video {self.path} has no frames", reason="no frames")
        self._position = {p: i for i, p in enumerate(self._pts or ())}

    def _open(self) -> tuple[Any, Any]:
        try:
            import av
        except ImportError as exc:  # pragma: no cover - PyAV is a declared dependency
            raise _PyAVError(
                "reading video files with PyAV needs the 'av' package (pip install av)",
                reason="PyAV is not installed",
            ) from exc
        container = av.open(str(self.path))
        try:
            if not container.streams.video:
                raise _PyAVError(f"{self.path} has no video stream", reason="no video stream")
            stream = container.streams.video[0]
            if self.num_threads != 1:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.num_threads
        except BaseException:
            container.close()
            raise
        return container, stream

    def _index(self) -> tuple[list[int] | None, int]:
        """Presentation timestamps of the frames (``None`` if some lack one) and the count."""
        container, stream = self._open()
        with container:
            pts = [p.pts for p in container.demux(stream) if p.size]
        if pts and all(p is not None for p in pts):
            return sorted(pts), len(pts)
        container, stream = self._open()
        with container:
            return None, sum(1 for _ in container.decode(stream))

    @property
    def num_frames(self) -> int:
        """Number of frames in the video (packets of its video stream)."""
        return self._n

    def _read(self, indices: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(indices, return_inverse=True)
        found: dict[int, np.ndarray] = {}
        try:
            container, stream = self._open()
            with container:
                if self._pts is None:
                    self._scan(container.decode(stream), 0, set(uniq.tolist()), found)
                else:
                    for lo, hi in _runs(uniq, self.max_gap):
                        want = set(uniq[(uniq >= lo) & (uniq < hi)].tolist())
                        container.seek(self._pts[lo], stream=stream, backward=True)
                        self._scan(container.decode(stream), None, want, found)
        except DataError:
            raise
        except Exception as exc:
            raise _PyAVError(
                f"cannot decode frames {int(uniq[0])}..{int(uniq[-1])} of {self.path} with "
                f"PyAV: {_short(exc)}",
                reason=_short(exc),
            ) from exc
        missing = [i for i in uniq.tolist() if i not in found]
        if missing:
            reason = f"frame {missing[0]} was not decoded"
            raise _PyAVError(f"{self.path}: {reason} (PyAV)", reason=reason)
        out = np.stack([found[i] for i in uniq.tolist()])
        return out if uniq.size == indices.size and np.all(uniq == indices) else out[inverse]

    def _scan(
        self, frames: Iterator[Any], first: int | None, want: set[int], found: dict[int, Any]
    ) -> None:
        """Decode ``frames`` until every index in ``want`` is in ``found``.

        Args:
            frames: Decoded frames in presentation order.
            first: Index of the first frame (counting), or ``None`` to look indices up by pts.
            want: Indices to keep.
            found: Filled with index -> ``uint8 (H, W, 3)`` RGB frame.
        """
        last = max(want)
        for k, frame in enumerate(frames):
            i = first + k if first is not None else self._position.get(frame.pts)
            if i is None:
                continue
            if i in want:
                found[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                return


class JpegFolderReader(FrameReader):
    """Reads a folder of numbered JPEG (or PNG) frames with PIL.

    Args:
        path: The folder.
        pattern: File name of a frame, formatted with ``index`` (default ``{index:06d}.jpg``,
            the layout ffmpeg's ``%06d.jpg`` writes); ``None``: the folder's image files
            (``.jpg``, ``.jpeg``, ``.png``) in sorted name order are its frames (names must
            sort in frame order, e.g. zero-padded numbers).
        first_index: Number in the name of frame 0 (ffmpeg starts at 1); not used without a
            pattern.
        size: ``(width, height)`` the frames will be resized to, or ``None``. JPEGs are then
            decoded at the smallest power-of-two reduction that is still at least this large
            (PIL's draft mode), which is much faster; the exact resize happens afterwards.

    Raises:
        DataError: If the folder does not exist or holds no frame 0.
    """

    def __init__(
        self,
        path: str | Path,
        pattern: str | None = "{index:06d}.jpg",
        first_index: int = 1,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(path)
        self.pattern = pattern
        self.first_index = first_index
        self.size = size
        self._n: int | None = None
        self._names: list[str] | None = None
        if not self.path.is_dir():
            raise DataError(f"frame folder not found: {self.path}")

    def _sorted_names(self) -> list[str]:
        """The folder's image files in name order (the frames, without a pattern)."""
        if self._names is None:
            self._names = sorted(
                f.name
                for f in self.path.iterdir()
                if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file()
            )
            if not self._names:
                raise DataError(f"frame folder {self.path} holds no .jpg, .jpeg or .png files")
        return self._names

    def frame_path(self, index: int) -> Path:
        """The file that holds 0-based frame ``index``."""
        if self.pattern is None:
            names = self._sorted_names()
            return self.path / (names[index] if 0 <= index < len(names) else f"<frame {index}>")
        return self.path / self.pattern.format(index=index + self.first_index)

    @property
    def num_frames(self) -> int:
        """Number of consecutive frames from frame 0 (found by bisection on file names).

        Without a pattern: the number of image files in the folder.
        """
        if self._n is None and self.pattern is None:
            self._n = len(self._sorted_names())
        if self._n is None:
            if not self.frame_path(0).is_file():
                raise DataError(
                    f"frame folder {self.path} has no first frame "
                    f"{self.pattern.format(index=self.first_index)}"
                )
            lo, hi = 0, 1  # frame lo exists; find a missing hi
            while self.frame_path(hi).is_file():
                lo, hi = hi, hi * 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self.frame_path(mid).is_file():
                    lo = mid
                else:
                    hi = mid
            self._n = hi
        return self._n

    def _read(self, indices: np.ndarray) -> np.ndarray:
        from PIL import Image

        uniq, inverse = np.unique(indices, return_inverse=True)
        frames: list[np.ndarray] = []
        for i in uniq.tolist():
            path = self.frame_path(i)
            try:
                with Image.open(path) as img:
                    if self.size is not None and img.format == "JPEG":
                        img.draft("RGB", tuple(self.size))
                    frames.append(np.asarray(img.convert("RGB")))
            except FileNotFoundError as exc:
                raise DataError(f"frame file missing: {path} (frame {i})") from exc
            except Exception as exc:
                raise DataError(f"cannot read frame file {path}: {_short(exc)}") from exc
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise DataError(f"frames in {self.path} differ in size: {sorted(shapes)}")
        out = np.stack(frames)
        return out if uniq.size == indices.size and np.all(uniq == indices) else out[inverse]


def open_reader(
    path: str | Path,
    *,
    frame_pattern: str | None = "{index:06d}.jpg",
    first_index: int = 1,
    num_threads: int = 1,
    size: tuple[int, int] | None = None,
) -> FrameReader:
    """Open a video file or a frame folder with the matching reader.

    Args:
        path: A video file or a folder of numbered frames.
        frame_pattern: File name pattern inside a frame folder; ``None``: the folder's image
            files in sorted name order.
        first_index: Number in the file name of frame 0.
        num_threads: Decoder threads for video files.
        size: ``(width, height)`` the frames are going to be resized to: JPEGs are decoded
            at a reduced size no smaller than it; video files are decoded at full size.

    Returns:
        A :class:`FrameReader`.

    Raises:
        DataError: If ``path`` does not exist or cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        return JpegFolderReader(p, pattern=frame_pattern, first_index=first_index, size=size)
    if not p.exists():
        raise DataError(f"video not found: {p}")
    return DecordVideoReader(p, num_threads=num_threads)


_INHERITED: list[Any] = []
"""Readers a forked process inherited from its parent. They are kept alive, never closed:
destroying a decord reader whose decoder thread lives in another process blocks forever."""


class ReaderPool:
    """A small per-process LRU of open readers.

    Consecutive samples of one event video do not reopen it. Safe across ``fork`` (DataLoader
    workers): a child process starts with an empty pool and leaves the parent's readers alone.

    Args:
        size: Most readers kept open.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._pid = os.getpid()
        self._readers: OrderedDict[tuple, FrameReader] = OrderedDict()

    def get(self, key: tuple, opener: Any) -> FrameReader:
        """Return the reader for ``key``, opening it with ``opener()`` if needed."""
        self._check_process()
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
            return reader
        reader = opener()
        self._readers[key] = reader
        while len(self._readers) > self.size:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            _INHERITED.extend(self._readers.values())
            self._readers = OrderedDict()
            self._pid = os.getpid()

    def discard(self, key: tuple) -> None:
        """Forget (and close) one reader, e.g. after it failed."""
        self._check_process()
        reader = self._readers.pop(key, None)
        if reader is not None:
            reader.close()

    def clear(self) -> None:
        """Close every reader."""
        self._check_process()
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __getstate__(self) -> dict:
        return {"size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["size"])


def _runs(sorted_indices: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Split sorted frame indices into ``[lo, hi)`` runs with gaps of at most ``max_gap``."""
    breaks = np.flatnonzero(np.diff(sorted_indices) > max_gap + 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [sorted_indices.size - 1]])
    return [
        (int(sorted_indices[a]), int(sorted_indices[b]) + 1)
        for a, b in zip(starts, ends, strict=True)
    ]


def _in_order(
    prepared: torch.Tensor, uniq: np.ndarray, indices: np.ndarray, inverse: np.ndarray
) -> torch.Tensor:
    """Frames prepared for the sorted unique ``uniq``, put in the order of ``indices``."""
    if uniq.size == indices.size and np.all(uniq == indices):
        return prepared
    import torch

    return prepared[torch.from_numpy(inverse)]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
