"""Turn (video, window anchor) into a sample's ``(N, C, T, H, W)`` float clips.

:class:`ClipLoader` joins the pieces of :mod:`aqa_framework.video`: it keeps recently used
readers open (whole event videos serve many samples), places the window
(:class:`~aqa_framework.video.sampling.TemporalSampling`), reads all needed frames in one
call, resizes and center-crops them as ``uint8``, optionally stores them in the
:class:`~aqa_framework.video.cache.FrameCache`, and finishes with flip and
normalisation (:class:`~aqa_framework.video.transforms.FrameTransform`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from aqa_framework.errors import DataError
from aqa_framework.video.cache import FrameCache, settings_hash, source_fingerprint
from aqa_framework.video.params import VideoParams, expand_path
from aqa_framework.video.readers import FrameReader, ReaderPool, open_reader
from aqa_framework.video.sampling import TemporalSampling
from aqa_framework.video.transforms import FrameTransform

__all__ = ["CACHE_FORMAT_VERSION", "ClipLoader", "FieldOfViewWarning", "frame_naming"]

CACHE_FORMAT_VERSION = 2


def frame_naming(
    params: VideoParams, frame_pattern: str | None = "{index:06d}.jpg", first_index: int = 1
) -> tuple[str | None, int]:
    """How the frame files of a frame folder are named, for a dataset's params.

    Params that declare ``frame_pattern`` or ``first_frame_number`` fields (datasets whose
    frame naming the user may set) take precedence over the given defaults.

    Args:
        params: The dataset's validated params.
        frame_pattern: File name pattern (formatted with ``index``) unless the params set it;
            ``None``: the folder's image files in sorted name order.
        first_index: Number in the name of frame 0 unless the params set it.

    Returns:
        ``(frame_pattern, first_index)``.
    """
    values = dict(params)
    return values.get("frame_pattern", frame_pattern), values.get("first_frame_number", first_index)


class FieldOfViewWarning(UserWarning):
    """A video for inference may not show the model the field of view it was trained on."""


class ClipLoader:
    """Loads the clips of one sample from a video file or frame folder.

    Args:
        sampling: Window and clip layout.
        transform: Resize, crop and normalisation.
        flip: Whether training samples are flipped horizontally with p=0.5.
        cache_dir: Decoded-frame cache folder, or ``None``.
        frame_pattern: File name pattern in frame folders (formatted with ``index``);
            ``None``: a folder's image files in sorted name order.
        first_index: Number in the file name of frame 0.
        decode_threads: Decoder threads per open video.
        pool_size: Readers kept open per process.
    """

    def __init__(
        self,
        sampling: TemporalSampling,
        transform: FrameTransform,
        *,
        flip: bool = True,
        cache_dir: str | Path | None = None,
        frame_pattern: str | None = "{index:06d}.jpg",
        first_index: int = 1,
        decode_threads: int = 1,
        pool_size: int = 4,
    ) -> None:
        self.sampling = sampling
        self.transform = transform
        self.flip = flip
        self.cache = FrameCache(cache_dir) if cache_dir else None
        self.frame_pattern = frame_pattern
        self.first_index = first_index
        self.decode_threads = decode_threads
        self.pool = ReaderPool(pool_size)
        # fixed for a window of fixed length; per video for the whole-video window
        self._offsets = sampling.offsets() if sampling.window is not None else None

    @classmethod
    def from_params(
        cls,
        params: VideoParams,
        *,
        frame_pattern: str | None = "{index:06d}.jpg",
        first_index: int = 1,
    ) -> ClipLoader:
        """Build a loader from a dataset's :class:`VideoParams`.

        Args:
            params: The dataset's validated params.
            frame_pattern: Frame file pattern, unless the params declare ``frame_pattern``
                (see :func:`frame_naming`).
            first_index: Number of the first frame file, unless the params declare
                ``first_frame_number``.
        """
        frame_pattern, first_index = frame_naming(params, frame_pattern, first_index)
        transform = FrameTransform(
            resize=params.resize,
            crop=params.crop_hw,
            mean=params.mean if params.normalize else None,
            std=params.std,
        )
        return cls(
            params.temporal_sampling(),
            transform,
            flip=params.flip,
            cache_dir=expand_path(params.cache_dir) if params.cache_dir else None,
            frame_pattern=frame_pattern,
            first_index=first_index,
            decode_threads=params.decode_threads,
        )

    def reader(self, source: str | Path) -> FrameReader:
        """The (pooled) reader of a video file or frame folder.

        Raises:
            DataError: If it is missing or cannot be opened.
        """
        source = Path(source)
        return self.pool.get(
            (str(source),),
            lambda: self._open(source),
        )

    def load(
        self,
        key: str,
        source: str | Path,
        *,
        end: int | None = None,
        start: int | None = None,
        train: bool = False,
    ) -> torch.Tensor:
        """Load one sample's clips.

        Args:
            key: Sample key (for messages and the cache).
            source: Video file or frame folder.
            end: Exclusive end frame of the window (MTL-AQA ``end_frame``).
            start: First frame of the window (AQA-7: 0). With neither, the last frames.
            train: Apply temporal jitter and random flips.

        Returns:
            ``float32 (N, C, T, H, W)``.

        Raises:
            DataError: Naming the sample and the file, if the video is missing or corrupt or
                the window does not fit.
        """
        with self._sample_errors(key, source):
            video = self._load(key, Path(source), end=end, start=start, train=train)
        return video

    @contextmanager
    def _sample_errors(self, key: str, source: str | Path) -> Iterator[None]:
        """Name the sample (and the file) in the errors of loading or checking it."""
        try:
            yield
        except DataError as exc:
            self.pool.discard((str(source),))
            raise DataError(f"sample {key}: {exc}") from exc
        except ValueError as exc:  # e.g. a crop larger than the frames
            raise DataError(f"sample {key} ({source}): {exc}") from exc

    def check(
        self,
        key: str,
        source: str | Path,
        *,
        end: int | None = None,
        start: int | None = None,
        probes: dict[Path, tuple[int, Exception | None] | Exception] | None = None,
    ) -> None:
        """Raise the error :meth:`load` would raise for a sample, without decoding its clips.

        The video is opened for its frame count (the container's header; a frame folder's
        file names) and the window placed in it; when frames are cropped but not resized,
        frame 0 is prepared once per video to see that the crop fits.

        Args:
            key: Sample key.
            source: Video file or frame folder.
            end: Exclusive end frame of the window.
            start: First frame of the window.
            probes: A dict kept across calls, so that a video serving many samples is opened
                once.

        Raises:
            DataError: With the message :meth:`load` would give.
        """
        source = Path(source)
        probes = {} if probes is None else probes
        with self._sample_errors(key, source):
            if source not in probes:
                try:
                    probes[source] = self._probe(source)
                except DataError as exc:
                    probes[source] = exc
            found = probes[source]
            if isinstance(found, Exception):
                raise type(found)(*found.args)
            num_frames, frame_problem = found
            self.sampling.plan(num_frames, end=end, start=start, source=str(source))
            if frame_problem is not None:
                raise type(frame_problem)(*frame_problem.args)

    def _open(self, source: Path) -> FrameReader:
        """A new reader of one video file or frame folder, as this loader reads it."""
        return open_reader(
            source,
            frame_pattern=self.frame_pattern,
            first_index=self.first_index,
            num_threads=self.decode_threads,
            size=self.transform.resize,
        )

    def _probe(self, source: Path) -> tuple[int, Exception | None]:
        """A video's frame count, and why its frames do not fit the crop (if they do not)."""
        reader = self._open(source)
        try:
            num_frames = reader.num_frames
            problem: Exception | None = None
            if self.transform.crop is not None and self.transform.resize is None:
                try:
                    reader.read_prepared(np.zeros(1, dtype=np.int64), self.transform.prepare)
                except ValueError as exc:  # the crop is larger than the frames
                    problem = exc
            return num_frames, problem
        finally:
            reader.close()

    def _load(
        self, key: str, source: Path, *, end: int | None, start: int | None, train: bool
    ) -> torch.Tensor:
        reader = self.reader(source)
        n = reader.num_frames
        jitter = self.sampling.jitter
        shift = int(torch.randint(-jitter, jitter + 1, ()).item()) if train and jitter else 0
        flip = bool(train and self.flip and torch.rand(()).item() < 0.5)
        plan = self.sampling.plan(n, end=end, start=start, shift=shift, source=str(source))
        indices = (plan.start + self._window_offsets(plan.length)).reshape(-1)
        if self.cache is not None:
            # the whole-video window never moves: store only the frames it uses, not the video
            stored = np.unique(indices) if self.sampling.window is None else None
            prepared = self._cached(key, source, reader, plan.superset, indices, stored)
        else:
            prepared = reader.read_prepared(indices, self.transform.prepare)
        return self._finish(prepared, flip)

    def _cached(
        self,
        key: str,
        source: Path,
        reader: FrameReader,
        superset: tuple[int, int],
        indices: np.ndarray,
        stored: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Frames ``indices`` from the cache entry of ``superset`` (built if missing).

        The entry holds every frame of ``superset`` or, given ``stored`` (sorted frame
        indices), just those frames, named by a hash of them.
        """
        assert self.cache is not None
        lo, hi = superset
        digest = settings_hash(
            version=CACHE_FORMAT_VERSION,
            source=source_fingerprint(source),
            resize=self.transform.resize,
            crop=self.transform.crop,
            pattern=self.frame_pattern if source.is_dir() else None,
        )
        wanted = np.arange(lo, hi) if stored is None else stored
        tag = "" if stored is None else "f" + settings_hash(frames=stored.tolist())[:12]
        frames = self.cache.load(key, lo, hi, digest, rows=len(wanted), tag=tag)
        if frames is None:
            prepared = reader.read_prepared(wanted, self.transform.prepare)
            frames = prepared.permute(0, 2, 3, 1).contiguous().numpy()
            self.cache.store(key, lo, hi, digest, frames, tag=tag)
        rows = indices - lo if stored is None else np.searchsorted(stored, indices)
        picked = np.ascontiguousarray(frames[rows])
        return torch.from_numpy(picked).permute(0, 3, 1, 2)

    def _window_offsets(self, length: int) -> np.ndarray:
        """Offsets of a sample's frames in a window of ``length`` frames."""
        if self._offsets is not None:
            return self._offsets
        return self.sampling.offsets(length)

    def _finish(self, prepared: torch.Tensor, flip: bool) -> torch.Tensor:
        n, t = self.sampling.num_clips, self.sampling.clip_length
        return self.transform.finish(prepared, flip=flip, clips=(n, t))

    def load_any(self, source: str | Path, frame_size: Sequence[int] | None = None) -> torch.Tensor:
        """Clips of an arbitrary video for inference (e.g. ``aqa predict``).

        The window is the video's last ``window`` frames or, if it is shorter, ``window``
        frames resampled evenly over it (frames repeat). The whole-video window
        (``window: null``) is every frame of the video; a video with fewer frames than a
        sample is made of is resampled the same way to that many frames.

        The spatial transform is the one of evaluation, applied so that the model sees the
        field of view it was trained on. With ``resize`` set, every video is resized to it
        before the crop, as in training. Without it, training cropped frames of the training
        videos' own size, ``frame_size``: a video of another size is first resized to
        ``frame_size`` (a crop of its own frames would cover another part of the scene).
        :class:`FieldOfViewWarning` says when the frames are stretched (another aspect ratio
        than ``frame_size``) or when ``frame_size`` is unknown and the frames are cropped as
        they are.

        Args:
            source: Video file or frame folder.
            frame_size: ``(width, height)`` of the training videos' frames, if known.

        Returns:
            ``float32 (N, C, T, H, W)`` with evaluation transforms (no jitter, no flip).
        """
        source = Path(source)
        reader = self._open(source)
        try:
            n = reader.num_frames
            window = self.sampling.window
            if window is None:
                window = max(n, self.sampling.frames_per_sample)
            if n >= window:
                base = np.arange(n - window, n)
            else:
                base = np.round(np.linspace(0, n - 1, window)).astype(np.int64)
            indices = base[self._window_offsets(window).reshape(-1)]
            transform = self._inference_transform(reader, source, frame_size)
            prepared = reader.read_prepared(indices, transform.prepare)
            return self._finish(prepared, flip=False)
        finally:
            reader.close()

    def _inference_transform(
        self, reader: FrameReader, source: Path, frame_size: Sequence[int] | None
    ) -> FrameTransform:
        """The transform that gives a video of any size the training field of view."""
        resize, crop = self.transform.resize, self.transform.crop
        if resize is not None and frame_size is None:
            return self.transform  # resized like every training video; nothing to compare
        height, width = reader.read([0]).shape[1:3]
        if frame_size is None:
            if crop is not None:
                warnings.warn(
                    f"{source.name} ({width}x{height}) is center-cropped to {crop[1]}x{crop[0]} "
                    "without resizing, as in training, but the size of the training videos is "
                    "not recorded in the checkpoint: if it differs, the crop covers another "
                    "field of view than the model was trained on",
                    FieldOfViewWarning,
                    stacklevel=3,
                )
            return self.transform
        train_w, train_h = int(frame_size[0]), int(frame_size[1])
        if resize is None and (width, height) == (train_w, train_h):
            return self.transform
        if abs((width / height) / (train_w / train_h) - 1.0) > 0.01:
            target = resize or (train_w, train_h)
            warnings.warn(
                f"{source.name} is {width}x{height} but the model was trained on "
                f"{train_w}x{train_h} videos: its frames are resized to {target[0]}x{target[1]} "
                "before the crop, which stretches them (another aspect ratio)",
                FieldOfViewWarning,
                stacklevel=3,
            )
        if resize is not None:
            return self.transform
        return dataclasses.replace(self.transform, resize=(train_w, train_h))

    def frame_size(self, source: str | Path) -> tuple[int, int] | None:
        """``(width, height)`` of a video's frames (its first frame), or ``None`` if unreadable.

        Args:
            source: Video file or frame folder.
        """
        try:
            reader = open_reader(
                Path(source),
                frame_pattern=self.frame_pattern,
                first_index=self.first_index,
                num_threads=self.decode_threads,
            )
            try:
                height, width = reader.read([0]).shape[1:3]
            finally:
                reader.close()
        except DataError:
            return None
        return int(width), int(height)
