"""A base for clip-based video datasets: records in, sample dicts out.

Subclasses read their annotation files into :class:`SampleRecord` objects (one per sample
of the split) and report every problem they find instead of raising; this base then either
raises one :class:`~aqa_framework.errors.DataError` listing them (``on_error: raise``) or drops
the samples with a warning (``on_error: skip``), loads the clips through a
:class:`~aqa_framework.video.loader.ClipLoader`, and assembles the sample dict of
:mod:`aqa_framework.targets`.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ValidationError

from aqa_framework.data.skipping import skipped_sample
from aqa_framework.errors import DataError
from aqa_framework.interfaces import VideoDataset, _overrides_load_video
from aqa_framework.targets import Targets
from aqa_framework.video.loader import ClipLoader, frame_naming
from aqa_framework.video.params import VideoParams, video_input_shape

__all__ = ["ClipDataset", "DataSkipWarning", "RecordSplit", "SampleRecord", "ScoreRangeWarning"]

_MAX_LISTED = 5


class DataSkipWarning(UserWarning):
    """Samples were skipped because of bad data (``on_error: skip``)."""


class ScoreRangeWarning(UserWarning):
    """Samples have a score outside the range their dataset declares (kept, but suspicious)."""


def _nonfinite_scores(records: list[SampleRecord]) -> list[tuple[str, str]]:
    """``(key, problem)`` for every record with a NaN or infinite score."""
    return [
        (rec.key, f"{name} is {value} (not a finite number)")
        for rec in records
        for name, value in rec.scores.items()
        if not math.isfinite(value)
    ]


def _bad_arrays(records: list[SampleRecord], targets: Targets) -> list[tuple[str, str]]:
    """``(key, problem)`` for every open target value that is missing or does not fit.

    A value outside its declared range (a judge mark of 45 on a 0-10 scale), of the wrong
    shape or not finite makes its sample bad: reported under ``on_error``, never used.
    """
    out = []
    for rec in records:
        for name, target in targets.arrays.items():
            if name not in rec.arrays:
                out.append((rec.key, f"no value for target '{name}' ({target.kind})"))
                continue
            problem = target.problem(rec.arrays[name])
            if problem:
                out.append((rec.key, f"{name} {problem}"))
    return out


@dataclass
class SampleRecord:
    """Everything needed to load one sample.

    Attributes:
        key: Sample key, e.g. ``"01_12"``.
        source: Video file or frame folder.
        end: Exclusive end frame of the window, if anchored at the end.
        start: First frame of the window, if anchored at the start.
        scores: Score name -> points.
        classes: Class field -> index.
        caption: Token ids ``<sos> ... <eos>`` (unpadded), or ``None``.
        caption_text: The complete caption as text (not cut to the caption length), the
            reference its metrics are computed against; ``None`` to use the tokens.
        arrays: Open target name -> its value (a number or a sequence of the declared
            :class:`~aqa_framework.targets.ArrayTarget` shape).
    """

    key: str
    source: Path
    end: int | None = None
    start: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    caption: list[int] | None = None
    caption_text: str | None = None
    arrays: dict[str, Any] = field(default_factory=dict)


class RecordSplit:
    """A split held as records (one per sample, with a ``key``), loaded one by one.

    The members :class:`ClipDataset` and
    :class:`~aqa_framework.data.feature_dataset.FeatureDataset` share: the targets, keys and
    length of the split, loading a sample through ``_sample(record)`` with ``on_error: skip``
    (a sample that fails is left out, named once, never replaced), and reporting the problems
    found when the split was opened. Subclasses set ``records``, ``_targets`` and ``_bad``.
    """

    records: list[Any]
    _targets: Targets
    _bad: dict[int, str]

    def _sample(self, rec: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _leaving_out(self, rec: Any, exc: DataError) -> str:
        """What the warning of a sample left out says after "leaving out"."""
        return str(exc)

    @property
    def targets(self) -> Targets:
        """What this dataset provides."""
        return self._targets

    @property
    def keys(self) -> list[str]:
        """Sample keys of this split, in index order."""
        return [r.key for r in self.records]

    def __len__(self) -> int:
        """Number of samples in the split."""
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load sample ``index``.

        With ``on_error: skip`` a sample that cannot be loaded is left out, never replaced by
        another: a warning names it and the result is a
        :func:`~aqa_framework.data.skipping.skipped_sample` marker (key and reason, no data),
        which the engine's collate drops from the batch and counts.
        """
        if not 0 <= index < len(self.records):
            raise IndexError(f"sample index {index} out of range (split has {len(self)})")
        rec = self.records[index]
        if self.params.on_error == "raise":
            return self._sample(rec)
        if index in self._bad:
            return skipped_sample(rec.key, self._bad[index])
        try:
            return self._sample(rec)
        except DataError as exc:
            self._bad[index] = str(exc)
            warnings.warn(
                f"dataset '{self.name}' ({self.split} split): leaving out "
                f"{self._leaving_out(rec, exc)}",
                DataSkipWarning,
                stacklevel=2,
            )
            return skipped_sample(rec.key, str(exc))

    def sample_targets(self, index: int) -> dict[str, Any]:
        """Key and targets of sample ``index`` from its annotation record (no video decoded)."""
        rec = self.records[index]
        out: dict[str, Any] = {"key": rec.key, "scores": dict(rec.scores)}
        if rec.classes:
            out["classes"] = dict(rec.classes)
        if self._targets.arrays:
            out["arrays"] = {
                name: torch.as_tensor(rec.arrays[name], dtype=torch.float32)
                for name in self._targets.arrays
            }
        return out

    def _report(self, problems: list[tuple[str, str]]) -> None:
        where = f"dataset '{self.name}' ({self.split} split)"
        lines = [f"sample {key}: {msg}" for key, msg in problems[:_MAX_LISTED]]
        more = len(problems) - _MAX_LISTED
        if more > 0:
            lines.append(f"... and {more} more")
        body = "\n  ".join(lines)
        if self.params.on_error == "raise":
            raise DataError(
                f"{where}: {len(problems)} bad sample(s):\n  {body}\n"
                "(fix the files, or set on_error: skip to leave such samples out)"
            )
        n_bad = len({key for key, _ in problems})
        warnings.warn(
            f"{where}: skipped {n_bad} bad sample(s):\n  {body}", DataSkipWarning, stacklevel=3
        )


class ClipDataset(RecordSplit, VideoDataset):
    """Base of datasets whose samples are windows of a video cut into clips.

    Subclasses implement :meth:`build_records` and :meth:`build_targets`. Frame folders use
    :attr:`frame_pattern` / :attr:`first_frame_number`, unless the params have fields of the
    same names, which take precedence (see :meth:`frame_files`).

    Attributes:
        frame_pattern: File name pattern of the frames in a frame folder (formatted with
            ``index``); ``None``: a folder's image files in sorted name order.
        first_frame_number: Number in the name of a folder's first frame.
    """

    Params: ClassVar[type[VideoParams]] = VideoParams
    frame_pattern: ClassVar[str | None] = "{index:06d}.jpg"
    first_frame_number: ClassVar[int] = 1

    def __init__(self, params: VideoParams, split: str = "train", train: bool = False) -> None:
        if split not in self.splits:
            raise DataError(
                f"dataset '{self.name}' has no split '{split}' (splits: {', '.join(self.splits)})"
            )
        super().__init__(params, split, train)
        records, problems = self.build_records()
        try:
            self._targets = self.build_targets()
        except ValidationError as exc:
            raise DataError(
                f"dataset '{self.name}': the files give invalid targets: {exc}"
            ) from exc
        problems += _nonfinite_scores(records) + _bad_arrays(records, self._targets)
        records, problems, excluded = self._exclude(records, problems)
        if params.on_error == "skip":
            records = self._drop_missing_sources(records, problems)
        # left out when the split was opened (exclude_keys, on_error: skip)
        self.dropped_keys: list[str] = excluded
        if problems:
            bad = {key for key, _ in problems}
            self._report(problems)
            self.dropped_keys = excluded + [r.key for r in records if r.key in bad]
            records = [r for r in records if r.key not in bad]
        self.records: list[SampleRecord] = records
        self._warn_out_of_range()
        self._loader = self.clip_loader(params)
        self._bad: dict[int, str] = {}  # index -> why it cannot be loaded (on_error: skip)

    def _exclude(
        self, records: list[SampleRecord], problems: list[tuple[str, str]]
    ) -> tuple[list[SampleRecord], list[tuple[str, str]], list[str]]:
        """Leave out the records whose key ``exclude_keys`` lists (and their problems)."""
        listed = set(getattr(self.params, "exclude_keys", None) or ())
        keys = {r.key for r in records} | {key for key, _ in problems}
        excluded = sorted(listed & keys)
        if not excluded:
            return records, problems, []
        warnings.warn(
            f"dataset '{self.name}' ({self.split} split): leaving out {len(excluded)} sample(s) "
            f"listed in exclude_keys: {', '.join(excluded)}",
            DataSkipWarning,
            stacklevel=3,
        )
        return (
            [r for r in records if r.key not in listed],
            [(key, msg) for key, msg in problems if key not in listed],
            excluded,
        )

    @classmethod
    def frame_files(cls, params: VideoParams) -> tuple[str | None, int]:
        """``(frame_pattern, first_frame_number)`` of the frame folders these params read.

        The params' ``frame_pattern`` and ``first_frame_number`` fields when they declare
        them, else the class attributes of the same names.

        Args:
            params: Validated :attr:`Params`.
        """
        return frame_naming(params, cls.frame_pattern, cls.first_frame_number)

    @classmethod
    def clip_loader(cls, params: VideoParams) -> ClipLoader:
        """The loader that reads this dataset's clips for these params.

        Args:
            params: Validated :attr:`Params`.
        """
        pattern, first = cls.frame_files(params)
        return ClipLoader.from_params(params, frame_pattern=pattern, first_index=first)

    @classmethod
    def read_video(
        cls,
        params: BaseModel,
        path: str | Path,
        *,
        frame_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Clips of an arbitrary video (its last ``window`` frames) with evaluation transforms.

        Read with the loader settings of the params alone (no dataset files). A video of
        another size than ``frame_size`` is given the field of view of training, see
        :meth:`~aqa_framework.video.loader.ClipLoader.load_any`.

        Args:
            params: Validated :attr:`Params`.
            path: A video file or a frame folder.
            frame_size: ``(width, height)`` of the training videos' frames, if known.

        Returns:
            ``float32 (N, C, T, H, W)``.
        """
        if _overrides_load_video(cls):  # a subclass written for 0.1
            return super().read_video(params, path, frame_size=frame_size)
        return cls.clip_loader(params).load_any(path, frame_size=frame_size)  # type: ignore[arg-type]

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...] | None:
        """``(num_clips, 3, clip_length, H, W)`` with ``H x W`` the crop, else the resize.

        ``None`` when the frames keep the video's own size (neither ``crop`` nor ``resize``).
        Subclasses whose frames have a known size without resizing override it.
        """
        return video_input_shape(params)

    def check_samples(self) -> None:
        """Open every video of the split (header only) and place each sample's window in it.

        Finds, without decoding clips, what loading would raise: a missing or unreadable
        video, a window outside its video (a wrong ``end_frame``), a crop larger than the
        frames. With ``on_error: raise`` one problem is raised with the message loading the
        sample gives, several are listed; with ``on_error: skip`` they are a warning.

        Raises:
            DataError: If a sample cannot be loaded (``on_error: raise``), or none can.
        """
        probes: dict[Path, Any] = {}
        problems: list[str] = []
        for rec in self.records:
            try:
                self._loader.check(rec.key, rec.source, end=rec.end, start=rec.start, probes=probes)
            except DataError as exc:
                problems.append(str(exc))
        if not problems:
            return
        where = f"dataset '{self.name}' ({self.split} split)"
        lines = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            lines.append(f"... and {len(problems) - _MAX_LISTED} more")
        body = "\n  ".join(lines)
        if self.params.on_error == "raise":
            if len(problems) == 1:
                raise DataError(problems[0])
            raise DataError(
                f"{where}: {len(problems)} samples cannot be loaded:\n  {body}\n"
                "(fix the files, or set on_error: skip to leave such samples out)"
            )
        if len(problems) == len(self.records):
            raise DataError(f"dataset '{self.name}' ({self.split}): no sample could be loaded")
        warnings.warn(
            f"{where}: {len(problems)} bad sample(s) will be skipped:\n  {body}",
            DataSkipWarning,
            stacklevel=2,
        )

    @abstractmethod
    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read the split: its records and ``(key, problem)`` pairs for bad samples."""

    @abstractmethod
    def build_targets(self) -> Targets:
        """The targets the dataset provides (called after :meth:`build_records`)."""

    def _sample(self, rec: SampleRecord) -> dict[str, Any]:
        video = self._loader.load(
            rec.key, rec.source, end=rec.end, start=rec.start, train=self.train
        )
        sample: dict[str, Any] = {"key": rec.key, "video": video, "scores": dict(rec.scores)}
        if rec.classes:
            sample["classes"] = dict(rec.classes)
        if self._targets.arrays:
            sample["arrays"] = {
                name: torch.as_tensor(rec.arrays[name], dtype=torch.float32)
                for name in self._targets.arrays
            }
        captions = self._targets.captions
        if captions is not None and rec.caption is not None:
            tokens = torch.full((captions.max_length + 2,), captions.pad_index, dtype=torch.int64)
            tokens[: len(rec.caption)] = torch.tensor(rec.caption, dtype=torch.int64)
            sample["caption"] = tokens
            sample["caption_length"] = len(rec.caption)
            if rec.caption_text is not None:
                sample["caption_text"] = rec.caption_text
        return sample

    def load_video(self, path: str | Path) -> torch.Tensor:
        """Clips of an arbitrary video (its last ``window`` frames) with evaluation transforms.

        :meth:`read_video` with this split's loader and :meth:`frame_size`.

        Args:
            path: A video file or a frame folder.

        Returns:
            ``float32 (N, C, T, H, W)``.
        """
        return self._loader.load_any(path, frame_size=self.frame_size())

    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of this split's video frames, read from its first video.

        ``None`` if the split is empty or its first video cannot be read.
        """
        if not hasattr(self, "_frame_size"):
            first = self.records[0].source if self.records else None
            self._frame_size = self._loader.frame_size(first) if first is not None else None
        return self._frame_size

    def sample_source(self, key: str) -> Path:
        """The video file or frame folder of a sample."""
        for rec in self.records:
            if rec.key == key:
                return rec.source
        raise KeyError(key)

    def _drop_missing_sources(
        self, records: list[SampleRecord], problems: list[tuple[str, str]]
    ) -> list[SampleRecord]:
        exists: dict[Path, bool] = {}
        for rec in records:
            if rec.source not in exists:
                exists[rec.source] = rec.source.exists()
            if not exists[rec.source]:
                problems.append((rec.key, f"video not found: {rec.source}"))
        return records

    def _warn_out_of_range(self) -> None:
        """Warn about samples whose score lies outside the range the targets declare."""
        for name, target in self._targets.scores.items():
            outside = [
                (rec.key, rec.scores[name])
                for rec in self.records
                if name in rec.scores and not target.low <= rec.scores[name] <= target.high
            ]
            if not outside:
                continue
            shown = ", ".join(f"{key} ({value:g})" for key, value in outside[:_MAX_LISTED])
            more = f" and {len(outside) - _MAX_LISTED} more" if len(outside) > _MAX_LISTED else ""
            warnings.warn(
                f"dataset '{self.name}' ({self.split} split): {len(outside)} sample(s) with "
                f"{name} outside the dataset's range {target.low:g}..{target.high:g}: "
                f"{shown}{more} (a wrong annotation? they are kept; set the dataset's "
                "score_range if the range is wrong)",
                ScoreRangeWarning,
                stacklevel=3,
            )
