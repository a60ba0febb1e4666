"""The ``jigsaws`` dataset: JIGSAWS surgical skill (GRS) in the files of USDL/MUSDL.

Reads MUSDL's two annotation pickles unchanged (``JIGSAWS/data/info/``):

* ``label.pkl``: ``{trial: [6 ints]}``, e.g. ``'Suturing_B001': [3, 2, 1, 2, 2, 3]``: the six
  modified-OSATS items of the Global Rating Score (GRS), 1-5 each, in the order of the
  JIGSAWS meta files: respect for tissue, suture/needle handling, time and motion, flow of
  operation, overall performance, quality of final product. Their sum is the GRS (6-30);
* ``splits.pkl``: ``{task: [fold 0, fold 1, fold 2, fold 3]}``, each fold a list of trials.

Fold ``fold`` is the test split and the other three folds the train split, as in MUSDL (four
models per task, one per fold). The folds are MUSDL's, not leave-one-user-out.

The pickles hold only dicts, lists, strings and integers; they are read with an unpickler that
refuses any class or function, but should still come from MUSDL's repository.

Targets: the score ``grs`` (6-30) and the open target ``grs_items`` (kind ``sub_scores``,
the six items, 1-5 each, ``info["step"] == 1``). USDL learns ``grs``, MUSDL the six items as
"judges" whose sum is the prediction.

Videos are not part of the pickles. Two layouts are read:

* ``layout: frames`` (default): MUSDL's frame folders ``<videos_dir>/<trial>_capture1/``
  (``videos_dir`` defaults to ``../frames``, MUSDL's ``data/frames`` next to ``data/info``);
  with ``frame_pattern: null`` (default) the folder's image files in sorted name order are the
  frames, as MUSDL lists them; set ``frame_pattern`` (e.g. ``'{index:05d}.jpg'``) and
  ``first_frame_number`` for numbered names;
* ``layout: videos``: the JIGSAWS release's video files
  ``<videos_dir>/<Task>/video/<trial>_capture1.avi`` (``videos_dir`` defaults to ``root``).

``camera`` picks the left (``capture1``, MUSDL's choice) or right (``capture2``) view.

Defaults are MUSDL's: the window is the whole video (``window: null``), 160 frames at
``floor(linspace(0, n - 1, 160))`` (``sampling: uniform``) cut into 10 clips of 16, frames
center-cropped to 224 without resizing (the release videos are 640x480), no flip, no jitter.
"""

from __future__ import annotations

import io
import pickle
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import DataError
from aqa_framework.targets import ArrayTarget, ScoreTarget, Targets
from aqa_framework.video.dataset import ClipDataset, SampleRecord
from aqa_framework.video.params import VideoParams, expand_path
from aqa_framework.yamlio import short_repr

__all__ = [
    "GRS_ITEMS",
    "JIGSAWS_TASKS",
    "JIGSAWSDataset",
    "JIGSAWSFiles",
    "load_musdl_pickle",
    "read_labels",
    "read_splits",
]

JIGSAWS_TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
"""The three JIGSAWS tasks, as ``splits.pkl`` and the trial names spell them."""

GRS_ITEMS = (
    "respect_for_tissue",
    "suture_needle_handling",
    "time_and_motion",
    "flow_of_operation",
    "overall_performance",
    "quality_of_final_product",
)
"""The six modified-OSATS items of the GRS, in the order of the JIGSAWS meta files."""

ITEM_LOW, ITEM_HIGH = 1, 5
GRS_LOW, GRS_HIGH = len(GRS_ITEMS) * ITEM_LOW, len(GRS_ITEMS) * ITEM_HIGH
NUM_FOLDS = 4
_MAX_LISTED = 5


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} (only dicts, lists, strings and numbers belong "
            "in this file)"
        )


def load_musdl_pickle(path: str | Path) -> Any:
    """Load one of MUSDL's JIGSAWS pickles (dicts, lists, strings and numbers only).

    Args:
        path: ``label.pkl`` or ``splits.pkl``.

    Raises:
        DataError: If the file is missing, unreadable or holds anything else.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"JIGSAWS annotation file not found: {path}") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise DataError(f"cannot read {path} as a MUSDL JIGSAWS pickle: {exc}") from exc


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def read_splits(path: str | Path, task: str) -> list[list[str]]:
    """The folds of one task from ``splits.pkl``, checked.

    Args:
        path: ``splits.pkl``.
        task: ``Suturing``, ``Needle_Passing`` or ``Knot_Tying``.

    Returns:
        The folds, each a list of trial names.

    Raises:
        DataError: Naming the file: not a dict of fold lists, no such task, a trial that is
            not a string, or a trial in two folds (or twice in one).
    """
    raw = load_musdl_pickle(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a dict task -> folds, found {type(raw).__name__}")
    if task not in raw:
        found = ", ".join(sorted(map(str, raw))) or "none"
        raise DataError(f"{path} has no task {task!r} (tasks in the file: {found})")
    folds = raw[task]
    if not isinstance(folds, list | tuple) or not all(isinstance(f, list | tuple) for f in folds):
        raise DataError(f"{path}: {task} must be a list of folds (lists of trial names)")
    bad = [short_repr(t) for f in folds for t in f if not isinstance(t, str)]
    if bad:
        raise DataError(f"{path}: {task} lists trials that are not names: {_listed(bad)}")
    counts = Counter(t for f in folds for t in f)
    repeated = sorted(t for t, n in counts.items() if n > 1)
    if repeated:
        raise DataError(
            f"{path}: {len(repeated)} {task} trial(s) listed more than once across the folds: "
            f"{_listed(repeated)} (each trial belongs to one fold; a trial in two folds is "
            "tested on what its model was trained on)"
        )
    return [list(f) for f in folds]


def read_labels(path: str | Path) -> dict[str, Any]:
    """``label.pkl``: trial -> the raw value (checked per trial by :func:`label_problem`).

    Raises:
        DataError: If the file is not a dict keyed by trial names.
    """
    raw = load_musdl_pickle(path)
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise DataError(f"{path}: expected a dict trial name -> 6 GRS items")
    return raw


def label_problem(value: Any) -> str | None:
    """Why a ``label.pkl`` value is not six integer items 1-5, or ``None`` if it is."""
    if not isinstance(value, list | tuple) or len(value) != len(GRS_ITEMS):
        return f"{short_repr(value)} is not a list of {len(GRS_ITEMS)} GRS items"
    not_int = [v for v in value if isinstance(v, bool) or not isinstance(v, int)]
    if not_int:
        return (
            f"{short_repr(value)} has {', '.join(map(short_repr, not_int[:3]))}, not an "
            f"integer (GRS items are whole points {ITEM_LOW}-{ITEM_HIGH})"
        )
    outside = [v for v in value if not ITEM_LOW <= v <= ITEM_HIGH]
    if outside:
        return (
            f"{short_repr(value)} has {', '.join(map(str, outside[:3]))} outside "
            f"{ITEM_LOW}-{ITEM_HIGH}"
        )
    return None


class JIGSAWSFiles(BaseModel):
    """Where the JIGSAWS pickles and videos live, which task and fold to read."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder of label.pkl and splits.pkl (MUSDL's JIGSAWS/data/info).",
        json_schema_extra=PATH_PARAM,
    )
    task: Literal["Suturing", "Needle_Passing", "Knot_Tying"] = Field(
        "Suturing", description="The surgical task (one model per task)."
    )
    fold: int = Field(
        0,
        ge=0,
        le=NUM_FOLDS - 1,
        description="Cross-validation fold 0-3: this fold is the test split, the other three "
        "the train split.",
    )
    label_file: str = Field("label.pkl", description="GRS items per trial, relative to root.")
    split_file: str = Field("splits.pkl", description="Folds per task, relative to root.")
    layout: Literal["frames", "videos"] = Field(
        "frames",
        description="'frames': a folder of frame images per trial (MUSDL); 'videos': the "
        "release's video files.",
    )
    videos_dir: str | None = Field(
        None,
        description="Folder of the frame folders or of the task folders, relative to root; "
        "default '../frames' (frames, MUSDL's data/frames) or '.' (videos).",
    )
    video_pattern: str | None = Field(
        None,
        description="Frame folder or video inside videos_dir, formatted with task, trial and "
        "camera; default '{trial}_{camera}' (frames) or '{task}/video/{trial}_{camera}.avi' "
        "(videos, the release's names).",
    )
    camera: Literal["capture1", "capture2"] = Field(
        "capture1", description="'capture1': left view (MUSDL); 'capture2': right view."
    )
    frame_pattern: str | None = Field(
        None,
        description="File name of a frame in a frame folder, formatted with index (e.g. "
        "'{index:05d}.jpg'); null: the folder's .jpg/.jpeg/.png files in sorted name order "
        "(as MUSDL reads them).",
    )
    first_frame_number: int = Field(
        1, ge=0, description="Number in the first frame's file name (with frame_pattern)."
    )


class JIGSAWSDataset(ClipDataset):
    """JIGSAWS surgical skill: GRS total and its six items, MUSDL's four folds per task."""

    name: ClassVar[str] = "jigsaws"
    frame_pattern: ClassVar[str | None] = None
    first_frame_number: ClassVar[int] = 1

    class Params(VideoParams, JIGSAWSFiles):
        """Parameters of ``jigsaws``: files, task and fold, then sampling (MUSDL's defaults)."""

        sampling: Literal["clips", "spread", "uniform"] = Field(
            "uniform",
            description="'uniform' (MUSDL): num_clips x clip_length frames at "
            "floor(linspace(0, n-1, ...)) over the window; 'spread' or 'clips' as in "
            "VideoParams.",
        )
        window: int | None = Field(
            None,
            ge=1,
            description="null (MUSDL): the window is the whole trial video; a number: the "
            "last that many frames.",
        )
        num_clips: int = Field(10, ge=1, description="Clips per sample (MUSDL: 10 x 16 = 160).")
        jitter: int = Field(
            0, ge=0, description="Training window shift; 0 (and required by window: null)."
        )
        resize: tuple[int, int] | None = Field(
            None,
            description="Resize every frame to (width, height) first; null keeps the 640x480 "
            "frames, as MUSDL.",
        )
        crop: int | tuple[int, int] | None = Field(
            224, description="Center crop: a side length or (height, width) (MUSDL: 224)."
        )
        flip: bool = Field(False, description="Training only: random horizontal flip (MUSDL: no).")

    params: Params

    @property
    def root(self) -> Path:
        """The folder of the pickles."""
        return expand_path(self.params.root)

    def _videos_dir(self) -> Path:
        p = self.params
        default = "../frames" if p.layout == "frames" else "."
        return expand_path(p.videos_dir or default, self.root)

    def _source(self, trial: str) -> Path:
        p = self.params
        pattern = p.video_pattern or (
            "{trial}_{camera}" if p.layout == "frames" else "{task}/video/{trial}_{camera}.avi"
        )
        try:
            name = pattern.format(task=p.task, trial=trial, camera=p.camera)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(
                f"video_pattern {pattern!r} cannot be formatted (fields: task, trial, "
                f"camera): {exc}"
            ) from exc
        return self._videos_dir() / name

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read the task's folds and labels: the test fold or the other three."""
        p = self.params
        if not self.root.is_dir():
            raise DataError(f"jigsaws root folder not found: {self.root}")
        split_path = expand_path(p.split_file, self.root)
        label_path = expand_path(p.label_file, self.root)
        folds = read_splits(split_path, p.task)
        if not p.fold < len(folds):
            raise DataError(
                f"{split_path}: {p.task} has {len(folds)} fold(s), so there is no fold {p.fold}"
            )
        labels = read_labels(label_path)
        chosen = [p.fold] if self.split == "test" else [i for i in range(len(folds)) if i != p.fold]
        trials = [t for i in chosen for t in folds[i]]
        if not trials:
            raise DataError(f"{split_path}: no {p.task} trials in the {self.split} split")
        records: list[SampleRecord] = []
        problems: list[tuple[str, str]] = []
        for trial in trials:
            problem = self._trial_problem(trial, labels, label_path, split_path)
            if problem:
                problems.append((trial, problem))
                continue
            items = [int(v) for v in labels[trial]]
            records.append(
                SampleRecord(
                    key=trial,
                    source=self._source(trial),
                    scores={"grs": float(sum(items))},
                    arrays={"grs_items": [float(v) for v in items]},
                )
            )
        return records, problems

    def _trial_problem(
        self, trial: str, labels: dict[str, Any], label_path: Path, split_path: Path
    ) -> str | None:
        task = self.params.task
        if not trial.startswith(f"{task}_"):
            return f"listed under {task} in {split_path} but named for another task"
        if trial not in labels:
            return f"listed in {split_path} but has no label in {label_path}"
        problem = label_problem(labels[trial])
        return f"{label_path}: {problem}" if problem else None

    def build_targets(self) -> Targets:
        """The GRS total and its six items."""
        return Targets(
            scores={
                "grs": ScoreTarget(
                    low=GRS_LOW,
                    high=GRS_HIGH,
                    description=f"JIGSAWS {self.params.task} Global Rating Score (sum of 6 items)",
                )
            },
            arrays={
                "grs_items": ArrayTarget(
                    kind="sub_scores",
                    shape=(len(GRS_ITEMS),),
                    low=ITEM_LOW,
                    high=ITEM_HIGH,
                    labels=list(GRS_ITEMS),
                    description="The six modified-OSATS GRS items (1-5 each); their sum is grs",
                    info={"step": 1},
                )
            },
        )
