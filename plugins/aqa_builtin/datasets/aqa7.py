"""The ``aqa-7`` dataset: one action of AQA-7 (gymnastic vault by default), final score only.

Reads the split files of the release unchanged: ``consolidated_train_list.mat`` and
``consolidated_test_list.mat`` (variables of the same names), N x 3 matrices with rows
``[action_index (1-6), sample_no (1-based), final_score]``. Some copies store the score x 100
(8415 = 84.15 points); ``score_divisor`` is detected from the file (no AQA-7 score exceeds 200
points) or set explicitly.

Actions (index: name): 1 diving, 2 gym_vault, 3 ski_big_air, 4 snowboard_big_air,
5 sync_diving_3m, 6 sync_diving_10m. The protocol trains one model per action.

Videos are not part of the split files. Two layouts are read:

* ``layout: frames`` (default): ``<videos_dir>/<action>-out/NNN/img_00001.jpg`` (1-based);
* ``layout: videos``: one video per sample, ``<videos_dir>/<action>/NNN.avi`` by default.

The window is the first ``window`` (103) frames of each sample, as in the reference code.
"""

from __future__ import annotations

import operator
from collections import Counter
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import DataError
from aqa_framework.targets import ScoreTarget, Targets, plausible_range
from aqa_framework.video.dataset import ClipDataset, SampleRecord
from aqa_framework.video.params import VideoParams, expand_path

__all__ = ["AQA7_ACTIONS", "AQA7Dataset", "AQA7Files", "read_split_matrix"]

AQA7_ACTIONS = (
    "diving",
    "gym_vault",
    "ski_big_air",
    "snowboard_big_air",
    "sync_diving_3m",
    "sync_diving_10m",
)
"""Action names in index order (index 1 = ``diving``)."""

_MAX_POINTS = 200.0


def read_split_matrix(path: str | Path, variable: str | None = None) -> np.ndarray:
    """Read an AQA-7 split ``.mat`` file as a float ``(N, 3)`` matrix.

    Args:
        path: The ``.mat`` file.
        variable: Name of the matrix; default: the only non-metadata variable.

    Raises:
        DataError: If the file is missing, unreadable or not an N x 3 matrix.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"AQA-7 split file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:
        raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    names = [k for k in mat if not k.startswith("__")]
    if variable is None:
        if len(names) != 1:
            raise DataError(f"{path}: expected one matrix, found {names}")
        variable = names[0]
    if variable not in mat:
        raise DataError(f"{path}: no variable {variable!r} (found {names})")
    arr = np.asarray(mat[variable], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"{path}: {variable} has shape {arr.shape}, expected (N, 3)")
    return arr


def _samples(numbers: list[float], limit: int = 5) -> str:
    shown = ", ".join(
        f"{int(n):03d}" if np.isfinite(n) and n == int(n) else f"{n:g}" for n in numbers[:limit]
    )
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


class AQA7Files(BaseModel):
    """Where the AQA-7 split files and videos live and which action to read."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(description="Folder of the split .mat files.", json_schema_extra=PATH_PARAM)
    action: str | int = Field(
        "gym_vault",
        description="Action by name (diving, gym_vault, ski_big_air, snowboard_big_air, "
        "sync_diving_3m, sync_diving_10m) or 1-based index.",
    )
    train_list: str = Field(
        "consolidated_train_list.mat", description="Train split file, relative to root."
    )
    test_list: str = Field(
        "consolidated_test_list.mat", description="Test split file, relative to root."
    )
    score_divisor: float | None = Field(
        None,
        gt=0,
        description="Divide the file's scores by this; null detects it (100 when the file "
        "stores score x 100).",
    )
    score_range: tuple[float, float] | None = Field(
        None,
        description="(low, high) of final_score; default: the action's range over both splits.",
    )
    layout: Literal["frames", "videos"] = Field(
        "frames", description="'frames': JPEG folders per sample; 'videos': a video per sample."
    )
    videos_dir: str = Field(
        ".", description="Folder of the frame folders or videos, relative to root."
    )
    video_pattern: str | None = Field(
        None,
        description="Sample folder or video inside videos_dir, formatted with action and "
        "sample; default '{action}-out/{sample:03d}' (frames) or '{action}/{sample:03d}.avi'.",
    )
    frame_pattern: str = Field(
        "img_{index:05d}.jpg", description="File name of a frame in a sample folder."
    )
    first_frame_number: int = Field(1, ge=0, description="Number in the first frame's name.")

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str | int) -> str | int:
        if isinstance(value, int):
            if not 1 <= value <= len(AQA7_ACTIONS):
                raise ValueError(f"action index must be 1..{len(AQA7_ACTIONS)}")
        elif value not in AQA7_ACTIONS:
            raise ValueError(f"unknown action {value!r}; choose from {', '.join(AQA7_ACTIONS)}")
        return value

    @property
    def action_index(self) -> int:
        """1-based index of the action."""
        if isinstance(self.action, int):
            return self.action
        return AQA7_ACTIONS.index(self.action) + 1

    @property
    def action_name(self) -> str:
        """Name of the action."""
        return AQA7_ACTIONS[self.action_index - 1]


class AQA7Dataset(ClipDataset):
    """AQA-7, one action (gymnastic vault by default): final score from the split-4 lists."""

    name: ClassVar[str] = "aqa-7"
    frame_pattern: ClassVar[str] = "img_{index:05d}.jpg"
    first_frame_number: ClassVar[int] = 1

    class Params(VideoParams, AQA7Files):
        """Parameters of ``aqa-7``: files and action, then sampling and transforms."""

        jitter: int = Field(
            0, ge=0, description="Training only: random window shift; the reference code uses 0."
        )

    params: Params

    def _rows(self, file: str) -> np.ndarray:
        path = expand_path(file, expand_path(self.params.root))
        arr = read_split_matrix(path)
        divisor = self.params.score_divisor
        if divisor is None:
            divisor = 100.0 if float(np.max(arr[:, 2], initial=0.0)) > _MAX_POINTS else 1.0
        rows = arr[arr[:, 0] == self.params.action_index].copy()
        rows[:, 2] /= divisor
        return rows

    def _source(self, sample: int) -> Path:
        p = self.params
        pattern = p.video_pattern or (
            "{action}-out/{sample:03d}" if p.layout == "frames" else "{action}/{sample:03d}.avi"
        )
        try:
            name = pattern.format(action=p.action_name, sample=sample)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"video_pattern {pattern!r} cannot be formatted: {exc}") from exc
        return expand_path(p.videos_dir, expand_path(p.root)) / name

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Read the split's rows of the chosen action."""
        p = self.params
        if not expand_path(p.root).is_dir():
            raise DataError(f"aqa-7 root folder not found: {expand_path(p.root)}")
        train = self._rows(p.train_list)
        test = self._rows(p.test_list)
        self._check_samples(train, test)
        both = np.concatenate([train, test])
        # the action's range over both splits, absurd outliers left out (they get a warning)
        low, high = plausible_range(both[:, 2].tolist())
        self._range = (low, high) if np.isfinite(low) else None
        rows = train if self.split == "train" else test
        records: list[SampleRecord] = []
        problems: list[tuple[str, str]] = []
        for action, sample, score in rows.tolist():
            key = f"{p.action_name}_{int(sample):03d}"
            if sample != int(sample) or sample < 1 or not np.isfinite(score):
                problems.append((key, f"bad row {[action, sample, score]}"))
                continue
            records.append(
                SampleRecord(
                    key=key,
                    source=self._source(operator.index(int(sample))),
                    start=0,
                    scores={"final_score": float(score)},
                )
            )
        if not records and not problems:
            raise DataError(f"aqa-7: no {self.split} samples of action {p.action_name!r}")
        return records, problems

    def _check_samples(self, train: np.ndarray, test: np.ndarray) -> None:
        """Refuse a sample listed twice in a split, or in both splits.

        Raises:
            DataError: Naming the samples (the release's lists are disjoint, without repeats).
        """
        p = self.params
        sets = {}
        for rows, file in ((train, p.train_list), (test, p.test_list)):
            counts = Counter(rows[:, 1].tolist())
            repeated = sorted(s for s, n in counts.items() if n > 1)
            if repeated:
                raise DataError(
                    f"{file}: {len(repeated)} {p.action_name} sample(s) listed more than once: "
                    f"{_samples(repeated)} (each sample may appear once in a split)"
                )
            sets[file] = set(counts)
        if p.train_list == p.test_list:
            return
        shared = sorted(sets[p.train_list] & sets[p.test_list])
        if shared:
            raise DataError(
                f"{p.train_list} and {p.test_list} share {len(shared)} {p.action_name} "
                f"sample(s): {_samples(shared)} (a sample in both the train and the test split "
                "is tested on what the model was trained on)"
            )

    def build_targets(self) -> Targets:
        """The final score only."""
        low, high = self.params.score_range or self._range or (0.0, 1.0)
        if high <= low:
            high = low + 1.0
        return Targets(
            scores={
                "final_score": ScoreTarget(
                    low=low, high=high, description=f"AQA-7 {self.params.action_name} score"
                )
            }
        )
