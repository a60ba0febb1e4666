"""The ``mtl-aqa`` dataset: MTL-AQA diving in the format of the official release.

Reads the release files unchanged (``Ready_2_Use/MTL-AQA_split_0_data/``):

* ``final_annotations_dict.pkl``: ``{(event, dive_no): {start_frame, end_frame, position,
  difficulty, armstand, rotation_type, ss_no, tw_no, final_score, primary_view}}``;
* ``final_captions_dict.pkl``: ``{(event, dive_no): ["<sos>", ..., "<eos>"]}`` (keys may hold
  numpy integers);
* ``vocab.json``: ``{"ix_to_word": {"0": "<eos>", ...}, "word_to_ix": {...}}``;
* ``train_split_0.pkl`` / ``test_split_0.pkl``: lists of keys.

Two later versions of the annotation file are read unchanged too (``annotations: <file>``,
``captions: null``: they come without captions, and no ``vocab.json`` is needed then):

* MUSDL's ``augmented_final_annotations_dict.pkl``: the official fields plus ``judge_scores``,
  the seven judges' marks as a numpy float64 array of shape (7,). Its mark 45.0 at
  ``(4, 49)`` (for 4.5) is outside 0-10: that sample is bad (an error naming it under
  ``on_error: raise``, left out with a warning under ``skip``);
* CoRe's ``final_annotations_dict_with_dive_number.pkl``: the same with that mark corrected,
  plus ``dive_number``, the FINA dive code (``'407C'``).

``extra_targets`` (default ``auto``) decides what they add to the targets: the open targets
``judge_scores`` (kind ``judge_scores``, shape 7, 0-10, step 0.5) and ``difficulty`` (kind
``difficulty``, a scalar) when the file has judge scores, the class field ``dive_number``
(labels: the sorted codes of the whole file) when it has dive codes. The official file has
neither, so its targets are those of before. With judge scores, the samples whose
``final_score`` is not difficulty x the sum of the middle three marks (to two decimals; 30 in
the real files) are named in one :class:`ScoreFormulaWarning` per split and kept.

The pickles are the release's own format. They are read with a restricted unpickler that
accepts only plain containers, numbers, strings, and numpy scalars and arrays of plain numbers
(rebuilt from their bytes), but they should still come from a release (or
:mod:`aqa_framework.synth`), never from an untrusted source.

Videos are not part of the release. Three layouts are read:

* ``layout: videos`` (default): whole event videos ``<videos_dir>/01.mp4`` (``Sr. No.`` of
  ``Video_List.xlsx``, two digits), frames read by index, no extraction needed;
* ``layout: frames``: the official extracted frames ``<videos_dir>/01/000001.jpg`` (1-based,
  six digits, as ``frame_extractor.sh`` writes them);
* ``layout: sample_videos``: one trimmed video per dive ``<videos_dir>/01_12.mp4``; the window
  is its last ``window`` frames.

As in the official code the window is the ``window`` (103) frames that end at ``end_frame``
(0-based frame indices ``end_frame - 103 .. end_frame - 1``, i.e. files
``end_frame - 102 .. end_frame`` of the 1-based frame folders); ``start_frame`` is ignored.

Quirks of the release, kept on purpose:

* ``vocab.json`` has 5781 entries while the paper says 5779; indices 5779 and 5780 occur in
  one test caption only. The caption target uses the file's 5781 words so every index is valid;
  the official caption checkpoints (built for 5779 words) still load into the caption head
  (:func:`aqa_framework.weights.fill_vocabulary_rows`).
* 4 captions have no annotation (ignored); 250 captions are longer than the paper's maximum
  of 100 tokens: they are cut to ``max_caption_length`` words and end with ``<eos>`` for
  training, while caption metrics compare with the complete caption (``caption_text``), as
  the COCO caption evaluation does.
* The same reader serves any dataset in this format, e.g. UNLV-Dive (``UNLV_Dive_split_4``,
  ``train_split: train_split_370_4.pkl``) or the synthetic dives of ``synthetic-diving``.
"""

from __future__ import annotations

import io
import json
import math
import operator
import pickle
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import DataError
from aqa_framework.targets import (
    ArrayTarget,
    CaptionTarget,
    ClassField,
    ScoreTarget,
    Targets,
    plausible_range,
)
from aqa_framework.video.dataset import ClipDataset, SampleRecord
from aqa_framework.video.params import VideoParams, expand_path
from aqa_framework.yamlio import short_repr

__all__ = [
    "ARMSTAND_LABELS",
    "ARRAY_TARGETS",
    "POSITION_LABELS",
    "ROTATION_LABELS",
    "SS_LABELS",
    "TW_LABELS",
    "EXTRA_TARGETS",
    "MTLAQADataset",
    "MTLAQAFiles",
    "ScoreFormulaWarning",
    "load_release_pickle",
    "sample_key",
]

POSITION_LABELS = ["free", "pike", "tuck"]
ARMSTAND_LABELS = ["no", "yes"]
ROTATION_LABELS = ["back", "forward", "inward", "reverse"]


def _count_label(half_units: int, noun: str) -> str:
    value = half_units / 2
    return f"{value:g} {noun}" + ("" if value == 1 else "s")


SS_LABELS = [_count_label(i, "somersault") for i in range(10)]
"""``ss_no`` is twice the number of somersaults: 0 -> "0 somersaults" ... 9 -> "4.5 somersaults"."""
TW_LABELS = [_count_label(i, "twist") for i in range(8)]
"""``tw_no`` is twice the number of twists: 0 -> "0 twists" ... 7 -> "3.5 twists"."""

CLASS_FIELDS: dict[str, tuple[list[str], str]] = {
    "position": (POSITION_LABELS, "Body position during the dive"),
    "armstand": (ARMSTAND_LABELS, "Whether the dive starts from an armstand"),
    "rotation_type": (ROTATION_LABELS, "Rotation group (direction and take-off)"),
    "ss_no": (SS_LABELS, "Number of somersaults (index = 2 x somersaults)"),
    "tw_no": (TW_LABELS, "Number of twists (index = 2 x twists)"),
}

ExtraTarget = Literal["judge_scores", "difficulty", "dive_number"]
EXTRA_TARGETS: tuple[str, ...] = ("judge_scores", "difficulty", "dive_number")
"""Targets beyond the official ones that later versions of the annotation file support."""

ARRAY_TARGETS: dict[str, ArrayTarget] = {
    "judge_scores": ArrayTarget(
        kind="judge_scores",
        shape=(7,),
        low=0.0,
        high=10.0,
        labels=[f"judge_{i}" for i in range(1, 8)],
        description="The seven judges' marks (0 to 10 in steps of 0.5); the final score is "
        "difficulty x the sum of the middle three",
        info={"step": 0.5},
    ),
    "difficulty": ArrayTarget(
        kind="difficulty",
        low=1.0,
        high=5.0,
        description="Degree of difficulty of the dive (multiplies the middle three marks)",
    ),
}
"""The open targets of ``extra_targets``: ``judge_scores`` (shape 7) and ``difficulty``."""

_FIXES = {
    "judge_scores": "a mark runs from 0 to 10; correct it in the file (MUSDL's "
    "augmented_final_annotations_dict.pkl has 45.0 for 4.5 at (4, 49), CoRe's "
    "final_annotations_dict_with_dive_number.pkl has it corrected) or set on_error: skip "
    "to leave the sample out",
    "difficulty": "a degree of difficulty lies between 1 and 5; correct it in the file or set "
    "on_error: skip to leave the sample out",
}

_MAX_SHOWN = 5  # samples named in a warning

SCORE_ROUNDING = 0.005
"""Final scores are given to two decimals: difficulty x marks may differ from them by this."""


class ScoreFormulaWarning(UserWarning):
    """Samples whose final score is not difficulty x the middle three marks (kept as annotated)."""


_NUMERIC_KINDS = "biufc"
"""numpy dtype kinds a release pickle may hold: bool, signed and unsigned int, float, complex."""


class _NdarrayName:
    """Stands for ``numpy.ndarray`` in a pickle: only ever the type passed to ``_reconstruct``."""


_NDARRAY = _NdarrayName()


class _DtypeSpec:
    """A numpy dtype as a pickle describes it, turned into a real dtype only if it is numeric.

    numpy pickles a dtype as ``dtype("f8", False, True)`` followed by a state tuple
    ``(version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])``.
    Only plain numbers are accepted: no structured, sub-array or object dtypes.
    """

    def __init__(self, obj: Any = None, align: Any = False, copy: Any = True) -> None:
        self.obj = obj
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def dtype(self) -> Any:
        """The numpy dtype, if it is a plain number type (else ``UnpicklingError``)."""
        obj, state = self.obj, self.state
        if not isinstance(obj, str) or len(obj) > 8:
            raise pickle.UnpicklingError(f"refusing to load the numpy dtype {short_repr(obj)}")
        try:
            dt = np.dtype(obj)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"unknown numpy dtype {obj!r}") from exc
        if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise pickle.UnpicklingError(
                f"refusing to load the numpy dtype {obj!r} (only plain numbers are read)"
            )
        if state is None:
            return dt
        if (
            not isinstance(state, tuple)
            or len(state) < 8
            or state[1] not in ("<", ">", "|", "=")
            or any(part is not None for part in state[2:5])
        ):
            raise pickle.UnpicklingError(
                f"refusing to load the numpy dtype {obj!r} with state {short_repr(state)}"
            )
        return dt.newbyteorder(state[1]) if state[1] in "<>" else dt


def _numeric_array(raw: Any, dtype: Any, shape: Any, order: str) -> Any:
    """A numpy array of plain numbers rebuilt from its raw bytes, after checking everything."""
    if not isinstance(dtype, _DtypeSpec):
        raise pickle.UnpicklingError(f"refusing an array of dtype {short_repr(dtype)}")
    dt = dtype.dtype()
    try:
        dims = tuple(operator.index(n) for n in shape)
    except TypeError as exc:
        raise pickle.UnpicklingError(f"bad array shape {short_repr(shape)}") from exc
    if any(n < 0 for n in dims):
        raise pickle.UnpicklingError(f"bad array shape {list(dims)}")
    if not isinstance(raw, bytes | bytearray):
        raise pickle.UnpicklingError("refusing an array whose data are not raw bytes")
    if len(raw) != math.prod(dims) * dt.itemsize:
        raise pickle.UnpicklingError(
            f"array data of {len(raw)} bytes do not fill shape {list(dims)} of {dt}"
        )
    return np.frombuffer(bytes(raw), dtype=dt).reshape(dims, order=order).copy()


class _ArraySpec:
    """A numpy array being unpickled; replaced by the array itself once loading is done.

    ``_reconstruct(ndarray, (0,), b"b")`` makes it; the state tuple
    ``(version, shape, dtype, is_fortran, raw bytes)`` that follows fills it.
    """

    def __init__(self, array: Any = None) -> None:
        self.array = array

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"bad numpy array state {short_repr(state)}")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _numeric_array(raw, dtype, shape, "F" if fortran else "C")

    def result(self) -> Any:
        if self.array is None:
            raise pickle.UnpicklingError("a numpy array in the pickle has no data")
        return self.array


def _reconstruct(subtype: Any, shape: Any = None, dtype: Any = None) -> _ArraySpec:
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"refusing to rebuild an array of type {short_repr(subtype)}")
    return _ArraySpec()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> _ArraySpec:
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"bad array order {short_repr(order)}")
    return _ArraySpec(_numeric_array(buffer, dtype, shape, order))


def _scalar(dtype: Any, data: Any = None) -> Any:
    return _numeric_array(data, dtype, (), "C")[()]


_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _DtypeSpec,
    ("numpy", "ndarray"): _NDARRAY,
    **{
        (f"numpy.{core}.multiarray", name): func
        for core in ("core", "_core")
        for name, func in (("scalar", _scalar), ("_reconstruct", _reconstruct))
    },
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}
"""The only globals a release pickle may name (numpy 1 and 2 spellings), each mapped to a
checked stand-in: numpy scalars and arrays of plain numbers, nothing else."""


class _ReleaseUnpickler(pickle.Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.numpy = False  # whether the pickle named a numpy global

    def find_class(self, module: str, name: str) -> Any:
        found = _NUMPY_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        self.numpy = True
        return found


def _with_arrays(obj: Any) -> Any:
    """``obj`` with every unpickled :class:`_ArraySpec` replaced by its numpy array."""
    if isinstance(obj, _ArraySpec):
        return obj.result()
    if isinstance(obj, dict):
        return {_with_arrays(k): _with_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_with_arrays(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_with_arrays(v) for v in obj)
    if isinstance(obj, set | frozenset):
        return type(obj)(_with_arrays(v) for v in obj)
    if isinstance(obj, _DtypeSpec | _NdarrayName):
        raise pickle.UnpicklingError("a numpy dtype or type outside an array")
    return obj


def load_release_pickle(path: str | Path) -> Any:
    """Load an MTL-AQA release pickle: containers, numbers, strings, numeric numpy data.

    numpy scalars and arrays of plain numbers (bool, int, float, complex; as MUSDL's and
    CoRe's ``judge_scores``) are rebuilt from their bytes; every other global a pickle names
    (functions, classes, object or structured arrays) is refused.

    Args:
        path: The ``.pkl`` file.

    Raises:
        DataError: If the file is missing, unreadable or holds anything else.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"annotation file not found: {path}") from exc
    try:
        unpickler = _ReleaseUnpickler(io.BytesIO(data))
        loaded = unpickler.load()
        return _with_arrays(loaded) if unpickler.numpy else loaded
    except Exception as exc:
        raise DataError(f"cannot read {path} as an MTL-AQA release pickle: {exc}") from exc


def sample_key(event: int, dive: int) -> str:
    """The key string of a sample: ``(1, 12)`` -> ``"01_12"``."""
    return f"{event:02d}_{dive:02d}"


def _final_score(ann: Any) -> float:
    """An annotation's ``final_score`` as a float; NaN if it has none that is a number."""
    try:
        return float(ann["final_score"])
    except (TypeError, ValueError, KeyError):
        return math.nan


def _key_list(keys: list[tuple[int, int]], limit: int = 5) -> str:
    shown = ", ".join(sample_key(*k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _as_key(raw: Any) -> tuple[int, int] | None:
    try:
        event, dive = raw
        return (operator.index(event), operator.index(dive))
    except (TypeError, ValueError):
        return None


def _words(tokens: list[str]) -> list[str]:
    """A release caption's words, without ``<sos>`` and ``<eos>``."""
    words = list(tokens)
    if words and words[0] == "<sos>":
        words = words[1:]
    if words and words[-1] == "<eos>":
        words = words[:-1]
    return words


class MTLAQAFiles(BaseModel):
    """Where an MTL-AQA-format dataset lives and how its files and videos are named."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder of the annotation files, e.g. .../Ready_2_Use/MTL-AQA_split_0_data.",
        json_schema_extra=PATH_PARAM,
    )
    annotations: str = Field(
        "final_annotations_dict.pkl", description="Annotation pickle, relative to root."
    )
    captions: str | None = Field(
        "final_captions_dict.pkl",
        description="Caption pickle, relative to root; null for a dataset without captions.",
    )
    vocab: str = Field("vocab.json", description="Caption vocabulary, relative to root.")
    train_split: str = Field("train_split_0.pkl", description="Train keys, relative to root.")
    test_split: str = Field("test_split_0.pkl", description="Test keys, relative to root.")
    layout: Literal["videos", "frames", "sample_videos"] = Field(
        "videos",
        description="'videos': whole event videos read by frame index; 'frames': extracted "
        "JPEG folders per event; 'sample_videos': one trimmed video per dive.",
    )
    videos_dir: str | None = Field(
        None,
        description="Folder of the videos or frame folders (relative to root); default "
        "'whole_videos', or 'whole_videos_frames' for layout 'frames'.",
    )
    video_pattern: str | None = Field(
        None,
        description="Name of a video inside videos_dir, formatted with event and dive; "
        "default '{event:02d}.mp4' (videos), '{event:02d}' (frames), "
        "'{event:02d}_{dive:02d}.mp4' (sample_videos).",
    )
    frame_pattern: str = Field(
        "{index:06d}.jpg", description="File name of a frame in a frame folder."
    )
    first_frame_number: int = Field(
        1, ge=0, description="Number in the file name of the first frame (ffmpeg: 1)."
    )
    max_caption_length: int = Field(
        98,
        ge=1,
        description="Words kept per caption (without <sos>/<eos>); 98 gives the official "
        "100-token sequences. Longer captions are cut and end with <eos>.",
    )
    score_range: tuple[float, float] | None = Field(
        None,
        description="(low, high) of final_score; default 0 to the highest score in the "
        "annotations (104.5 for MTL-AQA).",
    )
    extra_targets: Literal["auto"] | list[ExtraTarget] = Field(
        "auto",
        description="Targets beyond the official ones: 'judge_scores' (the seven marks, 0-10), "
        "'difficulty' (the degree of difficulty), 'dive_number' (a class field of the FINA "
        "dive codes in the file). 'auto': judge_scores and difficulty when the annotation "
        "file has judge_scores (MUSDL's and CoRe's files), dive_number when it has dive "
        "numbers (CoRe's); none for the official file. A list: exactly these; [] for none.",
    )

    @field_validator("extra_targets")
    @classmethod
    def _no_repeats(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError(f"extra_targets lists a target twice: {value}")
        return value


class MTLAQADataset(ClipDataset):
    """MTL-AQA diving: final score, five dive classes and commentary captions (release format)."""

    name: ClassVar[str] = "mtl-aqa"
    frame_pattern: ClassVar[str] = "{index:06d}.jpg"
    first_frame_number: ClassVar[int] = 1

    class Params(VideoParams, MTLAQAFiles):
        """Parameters of ``mtl-aqa``: files and layout, then sampling and transforms."""

    params: Params

    # -- files -----------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The annotation folder."""
        return expand_path(self.params.root)

    def _file(self, name: str) -> Path:
        return expand_path(name, self.root)

    def _videos_dir(self) -> Path:
        default = "whole_videos_frames" if self.params.layout == "frames" else "whole_videos"
        return expand_path(self.params.videos_dir or default, self.root)

    def _source(self, event: int, dive: int) -> Path:
        pattern = (
            self.params.video_pattern
            or {
                "videos": "{event:02d}.mp4",
                "frames": "{event:02d}",
                "sample_videos": "{event:02d}_{dive:02d}.mp4",
            }[self.params.layout]
        )
        try:
            name = pattern.format(event=event, dive=dive)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"video_pattern {pattern!r} cannot be formatted: {exc}") from exc
        return self._videos_dir() / name

    # -- records ---------------------------------------------------------------------------

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read annotations, captions, vocabulary and the split's keys."""
        p = self.params
        if not self.root.is_dir():
            raise DataError(f"mtl-aqa root folder not found: {self.root}")
        ann_path = self._file(p.annotations)
        annotations = self._keyed(load_release_pickle(ann_path), ann_path)
        self._choose_extras(annotations, ann_path)
        split_path = self._file(p.train_split if self.split == "train" else p.test_split)
        split_keys = load_release_pickle(split_path)
        if not isinstance(split_keys, list | tuple):
            raise DataError(f"{split_path}: expected a list of (event, dive) keys")
        self._check_split(split_keys, split_path)
        captions: dict[tuple[int, int], list[str]] | None = None
        word_to_ix: dict[str, int] = {}
        if p.captions is not None:
            cap_path = self._file(p.captions)
            captions = self._keyed(load_release_pickle(cap_path), cap_path)
            self._words, word_to_ix = self._read_vocab(self._file(p.vocab))

        # the range of every annotated score, absurd outliers left out (they get a warning)
        self._score_low, self._score_high = plausible_range(
            _final_score(a) for a in annotations.values()
        )
        records: list[SampleRecord] = []
        problems: list[tuple[str, str]] = []
        for raw in split_keys:
            key = _as_key(raw)
            if key is None:
                problems.append(
                    (
                        repr(raw),
                        f"split key {raw!r} in {split_path.name} is not an (event, dive) pair",
                    )
                )
                continue
            skey = sample_key(*key)
            ann = annotations.get(key)
            if ann is None:
                problems.append(
                    (
                        skey,
                        f"split key {key} in {split_path.name} has no annotation "
                        f"in {ann_path.name}",
                    )
                )
                continue
            rec, problem = self._record(key, skey, ann, ann_path)
            if problem:
                problems.append((skey, problem))
                continue
            if captions is not None:
                tokens = captions.get(key)
                if tokens is None:
                    problems.append((skey, f"no caption in {p.captions} for annotated key {key}"))
                    continue
                ids, problem = self._encode(tokens, word_to_ix)
                if problem:
                    problems.append((skey, f"caption in {p.captions}: {problem}"))
                    continue
                rec.caption = ids
                rec.caption_text = " ".join(_words(tokens))
            records.append(rec)
        self._check_score_formula(records, annotations, ann_path)
        return records, problems

    def _choose_extras(self, annotations: dict[tuple[int, int], Any], path: Path) -> None:
        """Decide which of :data:`EXTRA_TARGETS` this dataset declares (``extra_targets``).

        Sets ``self._extras`` (in the order of :data:`EXTRA_TARGETS`) and, for ``dive_number``,
        ``self._dive_codes``: the sorted distinct codes of the whole file, so that every split
        has the same labels.

        Raises:
            DataError: If a listed target has no field in the file, or the file has fewer than
                two dive codes for ``dive_number``.
        """
        present = {
            name
            for ann in annotations.values()
            if isinstance(ann, dict)
            for name in EXTRA_TARGETS
            if name in ann
        }
        wanted = self.params.extra_targets
        if wanted == "auto":
            auto = {"judge_scores", "difficulty"} if "judge_scores" in present else set()
            wanted = [*auto, *({"dive_number"} & present)]
        missing = [name for name in EXTRA_TARGETS if name in wanted and name not in present]
        if missing:
            raise DataError(
                f"{path}: extra_targets asks for {', '.join(missing)}, but no annotation in "
                "the file has such a field (MUSDL's augmented_final_annotations_dict.pkl and "
                "CoRe's final_annotations_dict_with_dive_number.pkl have judge_scores, only "
                "CoRe's has dive_number); leave them out of extra_targets"
            )
        self._extras = [name for name in EXTRA_TARGETS if name in wanted]
        self._dive_codes: dict[str, int] = {}
        if "dive_number" in self._extras:
            codes = sorted(
                {
                    ann["dive_number"]
                    for ann in annotations.values()
                    if isinstance(ann, dict) and isinstance(ann.get("dive_number"), str)
                }
            )
            if len(codes) < 2:
                raise DataError(
                    f"{path}: dive_number has {len(codes)} distinct code(s), a class field "
                    "needs two or more; leave dive_number out of extra_targets"
                )
            self._dive_codes = {code: i for i, code in enumerate(codes)}

    def _read_extras(self, rec: SampleRecord, ann: dict[str, Any], path: Path) -> str | None:
        """Put the chosen extra targets of one annotation into ``rec``; the problem, if any."""
        for name in self._extras:
            if name not in ann:
                return (
                    f"annotation in {path.name} lacks field {name!r}, which other annotations "
                    f"of the file have (add it, leave {name} out of extra_targets, or set "
                    "on_error: skip to leave the sample out)"
                )
            value = ann[name]
            if name == "dive_number":
                if value not in self._dive_codes:
                    return f"dive_number {short_repr(value, 30)} in {path.name} is not a dive code"
                rec.classes[name] = self._dive_codes[value]
                continue
            problem = ARRAY_TARGETS[name].problem(value)
            if problem:
                return f"{name} {problem} in {path}: {_FIXES[name]}"
            rec.arrays[name] = np.asarray(value, dtype=np.float64)
        return None

    def _check_score_formula(
        self, records: list[SampleRecord], annotations: dict[tuple[int, int], Any], path: Path
    ) -> None:
        """Warn once about the samples whose final score does not follow from their marks.

        Only when ``judge_scores`` is a target: final_score should be difficulty x the sum of
        the middle three of the seven marks, to two decimals (:data:`SCORE_ROUNDING`). The
        real files break this for 30 dives; they are kept as annotated.
        """
        if "judge_scores" not in self._extras:
            return
        by_key = {sample_key(*key): ann for key, ann in annotations.items()}
        off: list[tuple[str, float, float]] = []
        for rec in records:
            try:
                dd = float(by_key[rec.key]["difficulty"])
            except (KeyError, TypeError, ValueError):
                continue
            expected = dd * float(np.sort(rec.arrays["judge_scores"])[2:5].sum())
            final = rec.scores["final_score"]
            if abs(final - expected) > SCORE_ROUNDING + 1e-6:
                off.append((rec.key, final, expected))
        if not off:
            return
        shown = ", ".join(f"{k} ({f:g}, not {e:.2f})" for k, f, e in off[:_MAX_SHOWN])
        more = f" and {len(off) - _MAX_SHOWN} more" if len(off) > _MAX_SHOWN else ""
        warnings.warn(
            f"dataset '{self.name}' ({self.split} split): {len(off)} sample(s) in {path.name} "
            "have a final_score other than difficulty x the sum of the middle three judge "
            f"scores: {shown}{more} (kept as annotated; a score rebuilt from the marks cannot "
            "match them)",
            ScoreFormulaWarning,
            stacklevel=4,  # the code that opens the dataset
        )

    def _check_split(self, split_keys: list | tuple, split_path: Path) -> None:
        """Refuse a split that lists a key twice, or shares keys with the other split.

        Raises:
            DataError: Naming the keys (the release's splits are disjoint, without repeats).
        """
        keys = [k for k in map(_as_key, split_keys) if k is not None]
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
        if repeated:
            raise DataError(
                f"{split_path}: {len(repeated)} key(s) listed more than once: "
                f"{_key_list(repeated)} (each sample may appear once in a split)"
            )
        p = self.params
        other_path = self._file(p.test_split if self.split == "train" else p.train_split)
        if other_path == split_path or not other_path.is_file():
            return
        other = load_release_pickle(other_path)
        if not isinstance(other, list | tuple):
            return  # reported when that split is opened
        shared = sorted(set(keys) & {k for k in map(_as_key, other) if k is not None})
        if shared:
            raise DataError(
                f"{split_path.name} and {other_path.name} in {self.root} share "
                f"{len(shared)} key(s): {_key_list(shared)} (a sample in both the train and "
                "the test split is tested on what the model was trained on)"
            )

    def _keyed(self, data: Any, path: Path) -> dict[tuple[int, int], Any]:
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a dict keyed by (event, dive)")
        out: dict[tuple[int, int], Any] = {}
        for raw, value in data.items():
            key = _as_key(raw)
            if key is None:
                raise DataError(f"{path}: key {raw!r} is not an (event, dive) pair")
            out[key] = value
        return out

    def _record(
        self, key: tuple[int, int], skey: str, ann: Any, ann_path: Path
    ) -> tuple[SampleRecord, str | None]:
        ann_name = ann_path.name
        rec = SampleRecord(key=skey, source=self._source(*key))
        if not isinstance(ann, dict):
            return rec, f"annotation in {ann_name} is not a dict"
        try:
            rec.end = operator.index(ann["end_frame"])
            rec.scores = {"final_score": float(ann["final_score"])}
            for fname, (labels, _) in CLASS_FIELDS.items():
                value = operator.index(ann[fname])
                if not 0 <= value < len(labels):
                    return rec, f"{fname}={value} outside 0..{len(labels) - 1} in {ann_name}"
                rec.classes[fname] = value
        except KeyError as exc:
            return rec, f"annotation in {ann_name} lacks field {exc.args[0]!r}"
        except (TypeError, ValueError) as exc:
            return rec, f"bad annotation value in {ann_name}: {exc}"
        problem = self._read_extras(rec, ann, ann_path)
        if problem:
            return rec, problem
        if self.params.layout == "sample_videos":
            rec.end = None
        return rec, None

    def _read_vocab(self, path: Path) -> tuple[list[str], dict[str, int]]:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            ix_to_word = {int(i): str(w) for i, w in info["ix_to_word"].items()}
            word_to_ix = {str(w): int(i) for w, i in info["word_to_ix"].items()}
        except FileNotFoundError as exc:
            raise DataError(f"vocabulary file not found: {path}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}: not an MTL-AQA vocab.json ({exc})") from exc
        n = len(ix_to_word)
        if sorted(ix_to_word) != list(range(n)):
            raise DataError(f"{path}: ix_to_word indices are not 0..{n - 1}")
        disagree = [
            f"ix_to_word[{i}] is {short_repr(w, 30)} but word_to_ix[{short_repr(w, 30)}] is "
            f"{word_to_ix.get(w, 'missing')}"
            for i, w in ix_to_word.items()
            if word_to_ix.get(w) != i
        ] + [
            f"word_to_ix[{short_repr(w, 30)}] is {i} but ix_to_word[{i}] is "
            f"{short_repr(ix_to_word.get(i, 'missing'), 30)}"
            for w, i in word_to_ix.items()
            if ix_to_word.get(i) != w
        ]
        if disagree:
            more = f" (and {len(disagree) - 3} more)" if len(disagree) > 3 else ""
            raise DataError(
                f"{path}: ix_to_word and word_to_ix disagree: {'; '.join(disagree[:3])}{more}"
            )
        for special in ("<sos>", "<eos>"):
            if special not in word_to_ix:
                raise DataError(f"{path}: the vocabulary lacks {special}")
        return [ix_to_word[i] for i in range(n)], word_to_ix

    def _encode(self, tokens: Any, word_to_ix: dict[str, int]) -> tuple[list[int], str | None]:
        if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
            return [], "not a list of words"
        words = _words(tokens)[: self.params.max_caption_length]
        unknown = sorted({w for w in words if w not in word_to_ix})
        if unknown:
            return [], f"words not in the vocabulary: {', '.join(map(repr, unknown[:5]))}"
        ids = [word_to_ix["<sos>"], *(word_to_ix[w] for w in words), word_to_ix["<eos>"]]
        return ids, None

    # -- targets ---------------------------------------------------------------------------

    def build_targets(self) -> Targets:
        """Final score, the five class fields, captions and the chosen extra targets.

        Captions when ``captions`` is set; ``judge_scores``, ``difficulty`` (open targets,
        :data:`ARRAY_TARGETS`) and the class field ``dive_number`` as ``extra_targets`` says.
        """
        p = self.params
        if p.score_range is not None:
            low, high = p.score_range
        else:
            low, high = min(0.0, self._score_low), self._score_high
            if not high > low:  # also when no score is a number (nan)
                high = low + 1.0
        captions = None
        if p.captions is not None:
            word_to_ix = {w: i for i, w in enumerate(self._words)}
            eos = word_to_ix["<eos>"]
            captions = CaptionTarget(
                words=self._words,
                max_length=p.max_caption_length,
                pad_index=eos,
                sos_index=word_to_ix["<sos>"],
                eos_index=eos,
            )
        classes = {
            name: ClassField(labels=labels, description=desc)
            for name, (labels, desc) in CLASS_FIELDS.items()
        }
        if self._dive_codes:
            classes["dive_number"] = ClassField(
                labels=list(self._dive_codes),
                description="FINA dive code (the distinct codes of the annotation file, sorted)",
            )
        return Targets(
            scores={
                "final_score": ScoreTarget(
                    low=low,
                    high=high,
                    description="Final score: difficulty x sum of the middle three of seven "
                    "judges' marks (points)",
                )
            },
            classes=classes,
            captions=captions,
            arrays={name: ARRAY_TARGETS[name] for name in self._extras if name in ARRAY_TARGETS},
        )
