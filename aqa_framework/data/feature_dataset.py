"""A base for datasets of pre-extracted clip features (long routines, GDLT).

A sample is ``{"key", "video": float32 (L, D), "video_mask": bool (L,), "scores", ...}``:
the clip features of one video instead of its frames (:attr:`VideoDataset.input_kind
<aqa_framework.interfaces.VideoDataset.input_kind>` is ``"features"``; the model runs the
``identity`` backbone). Subclasses read their label files into
:class:`~aqa_framework.video.dataset.SampleRecord` objects whose ``source`` is the feature
file, and declare their targets; this base checks the records as clip datasets do (bad
scores or open targets raise, or are left out with a warning under ``on_error: skip``) and
loads the features.

Lengths: a training sample is a window of ``train_length`` clips at a random start (zero
padding, marked ``False`` in ``video_mask``, when the video is shorter), as GDLT trains. An
evaluation sample is the whole sequence (``test_length: null``), so its length differs from
video to video: batches of several are zero-padded to the longest (with ``video_mask``) when
the model masks padding out (the ``transformer`` aggregator, the ``gdlt`` head), and refused
otherwise (evaluate with ``data.eval_batch_size: 1``; see :mod:`aqa_framework.data.padding`);
or a centred window of ``test_length`` clips, which allows any evaluation batch.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aqa_framework.data.feature_files import (
    crop_or_pad,
    feature_dim_from_manifest,
    load_feature_file,
)
from aqa_framework.errors import DataError
from aqa_framework.interfaces import InputKind, VideoDataset
from aqa_framework.targets import Targets
from aqa_framework.video.dataset import (
    DataSkipWarning,
    RecordSplit,
    SampleRecord,
    _bad_arrays,
    _nonfinite_scores,
)
from aqa_framework.video.params import expand_path

__all__ = ["FeatureDataset", "FeatureParams"]

_MAX_LISTED = 5


class FeatureParams(BaseModel):
    """Where the feature files are and how samples are cut from them."""

    model_config = ConfigDict(extra="forbid")

    features_dir: str = Field(
        description="Folder of the feature files (one per video; relative paths are relative "
        "to root where the dataset has one, else to the current directory: give an absolute "
        "path to evaluate such a run from elsewhere).",
    )
    file_pattern: str = Field(
        "{key}.npy",
        description="File of a video inside features_dir, formatted with key ('.npy', or "
        "'.npz' read through npz_key).",
    )
    npz_key: str | None = Field(
        None, description="Array to read from a .npz file; null: the file's only array."
    )
    feature_dim: int | None = Field(
        None,
        ge=1,
        description="Features per clip (D), to size the model without opening a file; null: "
        "read from the folder's manifest.json, else from the first sample. Every file must "
        "have it.",
    )
    train_length: int = Field(
        68,
        ge=1,
        description="Clips per training sample: a window at a random start, zero-padded (and "
        "masked) when the video is shorter (GDLT: 68).",
    )
    test_length: int | None = Field(
        None,
        ge=1,
        description="Clips per evaluation sample: null for the whole sequence (lengths differ: "
        "larger evaluation batches are zero-padded for models that mask padding out, else "
        "need data.eval_batch_size: 1), else a centred window, zero-padded when shorter.",
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="Bad rows or feature files: 'raise' one error naming them, or 'skip' "
        "them with a warning.",
    )


class FeatureDataset(RecordSplit, VideoDataset):
    """Base of datasets whose samples are sequences of pre-extracted clip features.

    Subclasses implement :meth:`build_records` (one record per video, ``source`` = feature
    file) and :meth:`build_targets`.
    """

    Params: ClassVar[type[BaseModel]] = FeatureParams
    input_kind: ClassVar[InputKind] = "features"

    def __init__(self, params: Any, split: str = "train", train: bool = False) -> None:
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
        if params.on_error == "skip":
            problems += [
                (r.key, f"feature file not found: {r.source}")
                for r in records
                if not r.source.is_file()
            ]
        self.dropped_keys: list[str] = []
        if problems:
            self._report(problems)
            bad = {key for key, _ in problems}
            self.dropped_keys = [r.key for r in records if r.key in bad]
            records = [r for r in records if r.key not in bad]
        if not records:
            raise DataError(f"dataset '{self.name}' ({split} split): no sample left")
        self.records: list[SampleRecord] = records
        self._dim: int | None = self.known_feature_dim(params)
        self._bad: dict[int, str] = {}

    # ----------------------------------------------------------------------------- to implement

    @abstractmethod
    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read the split: its records and ``(key, problem)`` pairs for bad samples."""

    @abstractmethod
    def build_targets(self) -> Targets:
        """The targets the dataset provides (called after :meth:`build_records`)."""

    # ----------------------------------------------------------------------------- files

    @classmethod
    def features_folder(cls, params: Any) -> Path:
        """The folder of the feature files these params name."""
        return expand_path(params.features_dir)

    def feature_file(self, key: str) -> Path:
        """The feature file of a video key (``file_pattern`` inside the features folder)."""
        return self.features_folder(self.params) / self.params.file_pattern.format(key=key)

    @classmethod
    def known_feature_dim(cls, params: Any) -> int | None:
        """``D`` without reading features: ``feature_dim``, else the folder's manifest."""
        if params.feature_dim is not None:
            return int(params.feature_dim)
        return feature_dim_from_manifest(cls.features_folder(params))

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...] | None:
        """``(train_length, D)``, or ``None`` when ``D`` is only known from a file."""
        dim = cls.known_feature_dim(params)
        return (int(params.train_length), dim) if dim is not None else None  # type: ignore[attr-defined]

    @classmethod
    def varying_eval_lengths(cls, params: BaseModel) -> str | None:
        """``"test_length: null"`` when evaluation samples are whole sequences, else ``None``."""
        return "test_length: null" if params.test_length is None else None  # type: ignore[attr-defined]

    @classmethod
    def read_video(
        cls,
        params: BaseModel,
        path: str | Path,
        *,
        frame_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """A feature file's whole sequence, ``float32 (L, D)`` (``aqa predict FILE.npy``).

        Raises:
            DataError: If the file cannot be read or is not a finite ``(L, D)`` matrix.
        """
        arr = load_feature_file(path, params.npz_key, cls.known_feature_dim(params))  # type: ignore[attr-defined]
        return torch.from_numpy(np.ascontiguousarray(arr))

    # ----------------------------------------------------------------------------- samples

    def _leaving_out(self, rec: SampleRecord, exc: DataError) -> str:
        return f"sample {rec.key}: {exc}"

    def _window(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        length = self.params.train_length if self.train else self.params.test_length
        if length is None:
            return arr, np.ones(arr.shape[0], dtype=bool)
        start = None
        if self.train and arr.shape[0] > length:
            start = int(torch.randint(0, arr.shape[0] - length + 1, ()).item())
        return crop_or_pad(arr, length, start)

    def _sample(self, rec: SampleRecord) -> dict[str, Any]:
        arr = load_feature_file(rec.source, self.params.npz_key, self._dim)
        if self._dim is None:
            self._dim = int(arr.shape[1])
        feats, mask = self._window(arr)
        sample: dict[str, Any] = {
            "key": rec.key,
            "video": torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
            "video_mask": torch.from_numpy(mask),
            "scores": dict(rec.scores),
        }
        if rec.classes:
            sample["classes"] = dict(rec.classes)
        if self._targets.arrays:
            sample["arrays"] = {
                name: torch.as_tensor(rec.arrays[name], dtype=torch.float32)
                for name in self._targets.arrays
            }
        return sample

    def check_samples(self) -> None:
        """Open every feature file of the split and check its shape and values.

        Raises:
            DataError: If a file is missing or bad (``on_error: raise``), or none is good.
        """
        problems: list[str] = []
        dim = self._dim
        for rec in self.records:
            try:
                arr = load_feature_file(rec.source, self.params.npz_key, dim)
            except DataError as exc:
                problems.append(f"sample {rec.key}: {exc}")
                continue
            dim = dim or int(arr.shape[1])
        if not problems:
            return
        where = f"dataset '{self.name}' ({self.split} split)"
        body = "\n  ".join(self._listed(problems))
        if self.params.on_error == "raise":
            raise DataError(
                f"{where}: {len(problems)} sample(s) cannot be loaded:\n  {body}\n"
                "(fix the files, or set on_error: skip to leave such samples out)"
            )
        if len(problems) == len(self.records):
            raise DataError(f"{where}: no sample could be loaded:\n  {body}")
        warnings.warn(f"{where}: {len(problems)} bad sample(s) will be skipped:\n  {body}",
                      DataSkipWarning, stacklevel=2)

    @staticmethod
    def _listed(lines: list[str]) -> list[str]:
        more = len(lines) - _MAX_LISTED
        return lines[:_MAX_LISTED] + ([f"... and {more} more"] if more > 0 else [])

