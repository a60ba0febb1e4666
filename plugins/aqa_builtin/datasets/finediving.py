"""The ``finediving`` dataset: FineDiving (Xu et al., CVPR 2022) in the format of its release.

Reads the release's annotation files unchanged from ``root``:

* ``train_split.pkl`` / ``test_split.pkl``: lists of keys ``(event_name, instance)``, e.g.
  ``('FINADivingWorldCup2021_Men3m_final_r1', 8)`` (75 / 25 %, disjoint);
* ``FineDiving_coarse_annotation.pkl``: ``{key: {action_type, start_frame, end_frame,
  dive_score, difficulty, judge_scores}}``;
* ``FineDiving_fine-grained_annotation.pkl``: ``{key: {action_type, dive_score, difficulty,
  steps_transit_frames, frames_labels, sub-action_types}}``, ``frames_labels`` the sub-action
  type of every frame from ``start_frame`` to ``end_frame``;
* ``Sub_action_Types_Table.pkl``: ``{id: name}`` of the sub-action types (``1: 'Forward'``).

The two annotation dicts must have the same keys and agree on ``action_type``,
``dive_score`` and ``difficulty``; ``frames_labels`` must have one label per frame of
``[start_frame, end_frame]``, each a type of the table. A sample that breaks this is bad
(one error naming the key and the file under ``on_error: raise``, left out with a warning
under ``skip``). The third dict of the release, ``fine-grained_annotation_aqa.pkl``, repeats
these fields as lists and is not read. The pickles are read with the restricted unpickler of
:func:`~aqa_builtin.datasets.mtl_aqa.load_release_pickle` (plain data and numeric numpy only).

Frames: one folder per dive, ``<frames_dir>/<event_name>/<instance>/`` holding the trimmed
dive's frames ``<frame:05d>.jpg`` (absolute frame numbers ``start_frame .. end_frame``), as
the release lays them out; they are read in sorted name order. As in the official code,
``num_frames`` (96) frames are taken at ``floor(linspace(0, L - 1, 96))`` of the ``L`` frames
of the folder (a short dive repeats frames), and ``num_clips`` (9) clips of ``clip_length``
(16) consecutive sampled frames start every ``clip_stride`` (10) of them (0, 10, ..., 80).
Frames are resized to 200x112 (width x height) and centre-cropped to 112; training flips
them (the official code also crops at random while training; here the crop is central).

Targets: ``final_score`` (``dive_score``), the class field ``action_type`` (the dive number,
e.g. ``'207c'``; labels: the sorted codes of the annotation file, the grouping key of
same-dive exemplars, ``data.partners.group_by: action_type``) and the open targets
``difficulty`` (the degree of difficulty), ``frame_labels`` (the sub-action type id of each of
the 96 sampled frames) and ``transitions`` (TSA's two step transitions in the 96 sampled
frames: the frame before the second step starts and the frame before the last step starts).
The judges' marks are not a target: the panels have 3, 5 or 7 judges.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aqa_builtin.datasets.mtl_aqa import load_release_pickle
from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import DataError
from aqa_framework.targets import ArrayTarget, ClassField, ScoreTarget, Targets
from aqa_framework.video.dataset import ClipDataset, SampleRecord
from aqa_framework.video.params import VideoParams, expand_path
from aqa_framework.video.sampling import TemporalSampling
from aqa_framework.yamlio import short_repr

__all__ = [
    "FineDivingDataset",
    "FineDivingFiles",
    "FineDivingSampling",
    "sample_key",
    "step_transitions",
]

_COARSE_FIELDS = ("action_type", "start_frame", "end_frame", "dive_score", "difficulty")
_FINE_FIELDS = ("action_type", "dive_score", "difficulty", "frames_labels")
_DIFFICULTY = ArrayTarget(
    kind="difficulty",
    low=1.0,
    high=5.0,
    description="Degree of difficulty of the dive (DD)",
)


def sample_key(event: str, instance: int) -> str:
    """The key string of a sample: ``('FINADivingWorldCup2021_Men3m_final_r1', 8)`` -> ``..._8``."""
    return f"{event}_{instance}"


def step_transitions(labels: np.ndarray) -> tuple[int, int] | None:
    """TSA's two transitions in a dive's sampled frame labels.

    The step labels in order of first appearance start at positions ``p0 = 0, p1, ...,
    pk``; the transitions are ``(p1 - 1, pk - 1)``: the last frame of the first step and the
    last frame before the final step (the same frame for a dive of two steps).

    Args:
        labels: Step label of each sampled frame, shape ``(F,)``.

    Returns:
        The two positions, or ``None`` if the frames show fewer than two steps.
    """
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        seen.setdefault(int(label), i)
    firsts = list(seen.values())
    if len(firsts) < 2:
        return None
    return firsts[1] - 1, firsts[-1] - 1


@dataclass(frozen=True)
class FineDivingSampling(TemporalSampling):
    """FineDiving's sampling: ``num_frames`` frames by linspace over the dive, then clips.

    The window is the whole frame folder (the trimmed dive). Frames
    ``floor(linspace(0, L - 1, num_frames))`` of its ``L`` frames are taken (repeating frames
    of a dive shorter than ``num_frames``); clip ``i`` is the ``clip_length`` sampled frames
    from ``i x clip_stride``.

    Attributes:
        num_frames: Frames sampled over the dive (96).
    """

    num_frames: int = 96

    @property
    def frames_per_sample(self) -> int:
        """Frames a video needs at least: one (a short dive repeats frames, as officially)."""
        return 1

    def problem(self) -> str | None:
        """Say why the settings are inconsistent, or ``None`` if they are fine."""
        if self.window is not None or self.mode != "uniform" or self.jitter:
            return "FineDiving sampling covers the whole dive: window null, jitter 0"
        if self.clip_starts is not None or self.frame_step != 1:
            return (
                "FineDiving clips are clip_length consecutive sampled frames every clip_stride: "
                "leave clip_starts and frame_step out"
            )
        span = (self.num_clips - 1) * self.clip_stride + self.clip_length
        if span > self.num_frames:
            return (
                f"{self.num_clips} clips of {self.clip_length} frames every {self.clip_stride} "
                f"span {span} frames, more than the num_frames {self.num_frames} sampled"
            )
        return super().problem()

    def sampled(self, length: int) -> np.ndarray:
        """Positions of the ``num_frames`` sampled frames in a dive of ``length`` frames."""
        return np.floor(np.linspace(0, length - 1, self.num_frames)).astype(np.int64)

    def offsets(self, length: int | None = None) -> np.ndarray:
        """Frame offsets in the dive, shape ``(num_clips, clip_length)``.

        Args:
            length: Frames of the dive.
        """
        if length is None or length < 1:
            raise ValueError("FineDiving sampling needs the dive's length (>= 1 frame)")
        starts = np.arange(self.num_clips) * self.clip_stride
        positions = starts[:, None] + np.arange(self.clip_length)[None, :]
        return self.sampled(length)[positions]


class FineDivingFiles(BaseModel):
    """Where the FineDiving release lives: annotation files and frame folders."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder of the annotation pickles (the release's Annotations folder).",
        json_schema_extra=PATH_PARAM,
    )
    frames_dir: str = Field(
        ".",
        description="Folder of the frame folders <event_name>/<instance>/<frame:05d>.jpg, "
        "relative to root (default: root itself).",
    )
    coarse_annotations: str = Field(
        "FineDiving_coarse_annotation.pkl", description="Coarse annotation pickle, in root."
    )
    fine_annotations: str = Field(
        "FineDiving_fine-grained_annotation.pkl",
        description="Fine-grained annotation pickle (per-frame step labels), in root.",
    )
    sub_action_table: str = Field(
        "Sub_action_Types_Table.pkl", description="Sub-action types table pickle, in root."
    )
    train_split: str = Field("train_split.pkl", description="Train keys pickle, in root.")
    test_split: str = Field("test_split.pkl", description="Test keys pickle, in root.")
    num_frames: int = Field(
        96, ge=1, description="Frames sampled by linspace over each dive (96 officially)."
    )
    score_range: tuple[float, float] | None = Field(
        None,
        description="(low, high) of final_score; default 0 to the highest dive_score in the "
        "coarse annotations.",
    )


class FineDivingDataset(ClipDataset):
    """FineDiving: dive score, difficulty, dive number and TSA's procedure-segmentation targets."""

    name: ClassVar[str] = "finediving"
    frame_pattern: ClassVar[str | None] = None  # the folder's frames in sorted name order
    first_frame_number: ClassVar[int] = 0

    class Params(VideoParams, FineDivingFiles):
        """Parameters of ``finediving``: files, then FineDiving's sampling and transforms."""

        sampling: Literal["uniform"] = Field(  # type: ignore[assignment]
            "uniform",
            description="Always 'uniform': num_frames frames by linspace over the dive, "
            "cut into num_clips clips of clip_length every clip_stride sampled frames.",
        )
        window: int | None = Field(
            None, description="Always null: the window is the whole (trimmed) dive."
        )
        num_clips: int = Field(9, ge=1, description="Clips per sample (9 officially).")
        clip_length: int = Field(16, ge=1, description="Sampled frames per clip (16).")
        clip_stride: int = Field(
            10, ge=1, description="Sampled frames between clip starts (10: starts 0, 10, ..., 80)."
        )
        jitter: int = Field(0, ge=0, description="Always 0: the whole dive cannot move.")
        resize: tuple[int, int] | None = Field(
            (200, 112), description="Resize every frame to (width, height) before cropping."
        )
        crop: int | tuple[int, int] | None = Field(
            112, description="Center crop: a side length or (height, width); null disables it."
        )

        def temporal_sampling(self) -> FineDivingSampling:
            """The :class:`FineDivingSampling` these params describe."""
            return FineDivingSampling(
                window=self.window,
                num_clips=self.num_clips,
                clip_length=self.clip_length,
                clip_stride=self.clip_stride,
                frame_step=self.frame_step,
                mode="uniform",
                jitter=self.jitter,
                clip_starts=None if self.clip_starts is None else tuple(self.clip_starts),
                num_frames=self.num_frames,
            )

    params: Params

    # -- files -----------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The annotation folder."""
        return expand_path(self.params.root)

    def _file(self, name: str) -> Path:
        return expand_path(name, self.root)

    def _source(self, event: str, instance: int) -> Path:
        return expand_path(self.params.frames_dir, self.root) / event / str(instance)

    # -- records ---------------------------------------------------------------------------

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read the split's keys, both annotation dicts and the sub-action table."""
        p = self.params
        if not self.root.is_dir():
            raise DataError(f"finediving root folder not found: {self.root}")
        coarse_path, fine_path = self._file(p.coarse_annotations), self._file(p.fine_annotations)
        coarse = _keyed(load_release_pickle(coarse_path), coarse_path)
        fine = _keyed(load_release_pickle(fine_path), fine_path)
        self._table = self._read_table(self._file(p.sub_action_table))
        split_path = self._file(p.train_split if self.split == "train" else p.test_split)
        keys = self._read_split(split_path)
        self._check_other_split(keys, split_path)
        codes = sorted({str(a.get("action_type")) for a in coarse.values() if isinstance(a, dict)})
        self._codes = {code: i for i, code in enumerate(codes)}
        scores = [_number(a.get("dive_score")) for a in coarse.values() if isinstance(a, dict)]
        self._score_high = max((s for s in scores if math.isfinite(s)), default=math.nan)
        sampling = p.temporal_sampling()
        self._lengths: dict[str, int] = {}  # frames of each dive, start_frame .. end_frame
        records: list[SampleRecord] = []
        problems: list[tuple[str, str]] = []
        for key in keys:
            skey = sample_key(*key)
            if key not in coarse or key not in fine:
                where = coarse_path.name if key not in coarse else fine_path.name
                problems.append((skey, f"key {key} of {split_path.name} has no entry in {where}"))
                continue
            rec = SampleRecord(key=skey, source=self._source(*key))
            problem = self._coarse(rec, coarse[key], coarse_path) or self._fine(
                rec, coarse[key], fine[key], fine_path, sampling
            )
            if problem:
                problems.append((skey, f"key {key}: {problem}"))
                continue
            records.append(rec)
        return records, problems

    def _read_split(self, path: Path) -> list[tuple[str, int]]:
        data = load_release_pickle(path)
        if not isinstance(data, list | tuple):
            raise DataError(f"{path}: expected a list of (event_name, instance) keys")
        keys = []
        for raw in data:
            key = _as_key(raw)
            if key is None:
                raise DataError(
                    f"{path}: key {short_repr(raw, 60)} is not an (event_name, instance) pair "
                    "(a folder name and an integer)"
                )
            keys.append(key)
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
        if repeated:
            raise DataError(
                f"{path}: {len(repeated)} key(s) listed more than once, e.g. {repeated[0]} "
                "(each sample may appear once in a split)"
            )
        return keys

    def _check_other_split(self, keys: list[tuple[str, int]], path: Path) -> None:
        p = self.params
        other = self._file(p.test_split if self.split == "train" else p.train_split)
        if other == path or not other.is_file():
            return
        shared = sorted(set(keys) & set(self._read_split(other)))
        if shared:
            raise DataError(
                f"{path.name} and {other.name} in {self.root} share {len(shared)} key(s), e.g. "
                f"{shared[0]} (a sample in both splits is tested on what it was trained on)"
            )

    def _read_table(self, path: Path) -> dict[int, str]:
        data = load_release_pickle(path)
        if not isinstance(data, dict) or not data:
            raise DataError(f"{path}: expected a dict of sub-action type id -> name")
        table: dict[int, str] = {}
        for raw, name in data.items():
            try:
                ident = operator.index(raw)
            except TypeError:
                ident = -1
            if ident < 0 or not isinstance(name, str):
                raise DataError(
                    f"{path}: entry {short_repr(raw, 30)}: {short_repr(name, 30)} is not a "
                    "sub-action type id (integer >= 0) and name"
                )
            table[ident] = name
        return table

    def _coarse(self, rec: SampleRecord, ann: Any, path: Path) -> str | None:
        """Fill score, class, difficulty and frame range of ``rec``; the problem, if any."""
        if not isinstance(ann, dict):
            return f"the annotation in {path.name} is not a dict"
        missing = [f for f in _COARSE_FIELDS if f not in ann]
        if missing:
            return f"the annotation in {path.name} lacks {', '.join(map(repr, missing))}"
        try:
            start, end = operator.index(ann["start_frame"]), operator.index(ann["end_frame"])
        except TypeError:
            return f"start_frame/end_frame in {path.name} are not integers"
        if not 0 <= start <= end:
            return f"start_frame {start} and end_frame {end} in {path.name} are not a frame range"
        score = _number(ann["dive_score"])
        if not math.isfinite(score):
            return f"dive_score {short_repr(ann['dive_score'], 30)} in {path.name} is not a number"
        problem = _DIFFICULTY.problem(_number(ann["difficulty"]))
        if problem:
            return f"difficulty {problem} in {path.name}"
        rec.scores = {"final_score": score}
        rec.classes = {"action_type": self._codes[str(ann["action_type"])]}
        rec.arrays["difficulty"] = _number(ann["difficulty"])
        self._lengths[rec.key] = end - start + 1
        return None

    def _fine(
        self,
        rec: SampleRecord,
        coarse: dict[str, Any],
        ann: Any,
        path: Path,
        sampling: FineDivingSampling,
    ) -> str | None:
        """Fill the step targets of ``rec`` from the fine-grained annotation; the problem."""
        if not isinstance(ann, dict):
            return f"the annotation in {path.name} is not a dict"
        missing = [f for f in _FINE_FIELDS if f not in ann]
        if missing:
            return f"the annotation in {path.name} lacks {', '.join(map(repr, missing))}"
        for name in ("action_type", "dive_score", "difficulty"):
            a, b = coarse[name], ann[name]
            same = a == b if name == "action_type" else _number(a) == _number(b)
            if not same:
                return (
                    f"{name} is {short_repr(b, 30)} in {path.name} but {short_repr(a, 30)} in "
                    f"{self.params.coarse_annotations}"
                )
        labels = np.asarray(ann["frames_labels"])
        length = self._lengths[rec.key]
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            return f"frames_labels in {path.name} is not a list of integer sub-action type ids"
        if len(labels) != length:
            return (
                f"frames_labels in {path.name} has {len(labels)} labels, but the dive has "
                f"{length} frames (end_frame - start_frame + 1 in {self.params.coarse_annotations})"
            )
        unknown = sorted({int(v) for v in labels.tolist()} - set(self._table))
        if unknown:
            return (
                f"frames_labels in {path.name} has sub-action type(s) {unknown} that "
                f"{self.params.sub_action_table} does not list"
            )
        sampled = labels[sampling.sampled(length)]
        transitions = step_transitions(sampled)
        if transitions is None:
            return (
                f"frames_labels in {path.name}: the {sampling.num_frames} sampled frames show "
                "a single step, so there is no step transition"
            )
        rec.arrays["frame_labels"] = sampled.astype(np.float64)
        rec.arrays["transitions"] = np.asarray(transitions, dtype=np.float64)
        return None

    # -- loading ---------------------------------------------------------------------------

    def _sample(self, rec: SampleRecord) -> dict[str, Any]:
        self._check_length(rec)
        return super()._sample(rec)

    def check_samples(self) -> None:
        """Open every frame folder, check it holds the annotated number of frames.

        Raises:
            DataError: If a sample cannot be loaded (``on_error: raise``), or none can.
        """
        for rec in self.records:
            if rec.source.is_dir():
                self._check_length(rec)
        super().check_samples()

    def _check_length(self, rec: SampleRecord) -> None:
        expected = self._lengths.get(rec.key)
        if expected is None or not rec.source.is_dir():
            return  # a missing folder is reported by the loader
        found = self._loader.reader(rec.source).num_frames
        if found != expected:
            raise DataError(
                f"sample {rec.key}: frame folder {rec.source} holds {found} frames, but the "
                f"annotations give the dive {expected} (start_frame .. end_frame in "
                f"{self.params.coarse_annotations}): the step labels would not match the "
                "frames; extract the dive's frames again"
            )

    # -- targets ---------------------------------------------------------------------------

    def build_targets(self) -> Targets:
        """Final score, the dive number, difficulty, sampled step labels and transitions."""
        p = self.params
        if p.score_range is not None:
            low, high = p.score_range
        else:
            low, high = 0.0, self._score_high
            if not high > low:
                high = low + 1.0
        n = p.num_frames
        table = {str(k): v for k, v in sorted(self._table.items())}
        return Targets(
            scores={
                "final_score": ScoreTarget(
                    low=low,
                    high=high,
                    description="Dive score: difficulty x the sum of the judges' marks "
                    "without the highest and lowest (points)",
                )
            },
            classes={
                "action_type": ClassField(
                    labels=list(self._codes),
                    description="Dive number (FINA code, e.g. '207c'; the distinct codes of "
                    "the coarse annotations, sorted); the key of same-dive exemplars",
                )
            },
            arrays={
                "difficulty": _DIFFICULTY,
                "frame_labels": ArrayTarget(
                    kind="step_labels",
                    shape=(n,),
                    low=0.0,
                    high=float(max(self._table)) if max(self._table) > 0 else 1.0,
                    description=f"Sub-action type id of each of the {n} sampled frames "
                    "(ids of the sub-action types table)",
                    info={"sub_action_types": table},
                ),
                "transitions": ArrayTarget(
                    kind="step_transitions",
                    shape=(2,),
                    low=0.0,
                    high=float(n - 1),
                    labels=["first", "last"],
                    description=f"Step transitions in the {n} sampled frames (TSA): the last "
                    "frame of the first step and the last frame before the final step",
                    info={"frames": n},
                ),
            },
        )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _as_key(raw: Any) -> tuple[str, int] | None:
    """``(event_name, instance)`` if ``raw`` is one, with a usable folder name, else ``None``."""
    try:
        event, instance = raw
        instance = operator.index(instance)
    except (TypeError, ValueError):
        return None
    if not isinstance(event, str) or not event or event in (".", "..") or "/" in event:
        return None
    if "\\" in event or instance < 0:
        return None
    return event, instance


def _keyed(data: Any, path: Path) -> dict[tuple[str, int], Any]:
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict keyed by (event_name, instance)")
    out: dict[tuple[str, int], Any] = {}
    for raw, value in data.items():
        key = _as_key(raw)
        if key is None:
            raise DataError(
                f"{path}: key {short_repr(raw, 60)} is not an (event_name, instance) pair "
                "(a folder name and an integer)"
            )
        out[key] = value
    return out
