"""The ``best`` dataset: Bristol Everyday Skill Tasks, pairwise skill (Doughty et al., CVPR 2019).

Reads the release's ``data/BEST`` folder (RAAN repository) unchanged:

* ``BEST.csv`` (CRLF): ``task,vid_id,start_seconds,end_seconds``, 100 YouTube videos per
  task; 11 ids start with ``-``;
* ``splits/<task>/{train,test}_vid_list.txt``: the videos of each split (75 / 25, disjoint);
* ``splits/<task>/{train,test}.txt``: ``<better> <worse>`` per line.

Pairs never cross the split: a pair naming a video that is not in its split's video list
(or not in ``BEST.csv`` under its task) is a bad row, an error naming file and line (or left
out with a warning under ``on_error: skip``).

Features: one file per video, ``<features_dir>/<file_pattern>`` formatted with ``task`` and
``video`` (the YouTube id); RAAN's I3D features (``<id>_rgb.npz``, ``arr_0``) are downloaded
separately.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aqa_builtin.datasets.pair_release import ReleasePairDataset, check_tasks
from aqa_framework.component import PATH_PARAM
from aqa_framework.data.pairs import (
    Pair,
    PairParams,
    Problem,
    check_pairs,
    read_order_table,
)
from aqa_framework.errors import DataError

__all__ = ["TASKS", "BESTDataset", "BESTParams"]

TASKS = ("apply_eyeliner", "braid_hair", "origami", "scrambled_eggs", "tie_tie")
"""The five tasks of BEST."""


class BESTParams(PairParams):
    """The release folder, the tasks, and the feature files."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder of BEST.csv and splits/ (the release's data/BEST).",
        json_schema_extra=PATH_PARAM,
    )
    tasks: list[str] = Field(
        default_factory=lambda: list(TASKS),
        min_length=1,
        description="Tasks to read (default all five; RAAN trains one model per task).",
    )

    @field_validator("tasks")
    @classmethod
    def _known(cls, tasks: list[str]) -> list[str]:
        return check_tasks(tasks, TASKS)


def read_best_videos(path: Path) -> dict[str, set[str]]:
    """Task -> its video ids, from ``BEST.csv``.

    Raises:
        DataError: If the file is missing, has another header, or a row lacks its fields.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0][:2]] != ["task", "vid_id"]:
        raise DataError(f"{path}:1: expected the header task,vid_id,start_seconds,end_seconds")
    videos: dict[str, set[str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path}:{number}: expected task,vid_id,...; got {','.join(row)!r}")
        videos.setdefault(row[0].strip(), set()).add(row[1].strip())
    return videos


def read_video_list(path: Path) -> set[str]:
    """The ids of a ``*_vid_list.txt`` (one per line).

    Raises:
        DataError: If the file cannot be read.
    """
    try:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()}
    except OSError as exc:
        raise DataError(f"cannot read video list {path}: {exc}") from None


class BESTDataset(ReleasePairDataset):
    """BEST skill pairs (5 everyday tasks, fixed train/test) on per-video clip features.

    A sample is a (better, worse) pair of one task: the better video, with the worse one as
    its partner. For the ``ranking`` head: pairwise accuracy per task and averaged.
    """

    name = "best"
    Params: ClassVar[type[BaseModel]] = BESTParams

    def read_pairs(self, split: str) -> tuple[list[Pair], list[Problem]]:
        """The split's pairs of every task, checked against the split's video list."""
        root = self.root_folder(self.params)
        assert root is not None
        released = read_best_videos(root / "BEST.csv")
        pairs: list[Pair] = []
        problems: list[Problem] = []
        for task in self.params.tasks:
            folder = root / "splits" / task
            listed = read_video_list(folder / f"{split}_vid_list.txt")
            stray = sorted(listed - released.get(task, set()))
            if stray:
                raise DataError(
                    f"{folder / f'{split}_vid_list.txt'} lists {len(stray)} video(s) that "
                    f"BEST.csv does not have under task {task} (first: {stray[0]}); use the "
                    "release's files unchanged"
                )
            rows, bad = read_order_table(folder / f"{split}.txt", task)
            problems += bad
            rows, bad = check_pairs(rows, {task: listed}, self.params.duplicates,
                                    what=f"{split} split's video list")
            problems += bad
            pairs += rows
        return pairs, problems
