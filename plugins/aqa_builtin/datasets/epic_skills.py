"""The ``epic-skills`` dataset: pairwise skill ranking of seven tasks (Doughty et al., CVPR 2018).

Reads the authors' annotation release (``EPIC-Skills2018/annotations``) unchanged:

* ``<Task>/<task>_gt.csv``: every annotated pair, ``Vid1,Vid2,<winner>``; the winner column
  is ``Best`` in three tasks and ``Better`` in four, rows may end with a comma, two files are
  CRLF, and Chopstick_Using and Dough_Rolling repeat two pairs (with the same winner);
* ``<Task>/splits/<task>_{train,val}_<fold>.csv``: the four folds, ``Better,Worse`` per row.

The ``train`` split is a fold's train file, the ``test`` split its val file (the paper's
test pairs). Splits are splits of pairs: a video may occur in pairs of both (every test
pair holds at least one video unseen in training). Every split pair must be a pair of the
task's ``gt`` file with the same winner; a video not in ``gt``, a contradicting or malformed
row is an error naming the file and line (or left out with a warning under ``on_error:
skip``). Repeated pairs are kept by default, so the counts are the files' row counts.

Features: one file per video, ``<features_dir>/<file_pattern>`` formatted with ``task`` (the
folder name, e.g. ``Knot_Tying``) and ``video`` (the id in the files, e.g. ``B001``); I3D
features as RAAN uses them are not part of the release.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aqa_builtin.datasets.pair_release import ReleasePairDataset, check_tasks
from aqa_framework.component import PATH_PARAM
from aqa_framework.data.pairs import (
    Pair,
    PairParams,
    Problem,
    check_pairs,
    read_order_table,
    read_winner_table,
)

__all__ = ["TASKS", "EpicSkillsDataset", "EpicSkillsParams"]

TASKS = (
    "Chopstick_Using",
    "Dough_Rolling",
    "Hand_Drawing",
    "Sonic_Drawing",
    "Knot_Tying",
    "Needle_Passing",
    "Suturing",
)
"""The seven task folders of the release."""


class EpicSkillsParams(PairParams):
    """The release folder, the tasks and fold, and the feature files."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder holding the release's annotations/ folder (EPIC-Skills2018).",
        json_schema_extra=PATH_PARAM,
    )
    tasks: list[str] = Field(
        default_factory=lambda: list(TASKS),
        min_length=1,
        description="Task folders to read (default all seven); pairwise accuracy is "
        "reported per task and averaged.",
    )
    fold: Literal[1, 2, 3, 4] = Field(1, description="Which of the four splits.")

    @field_validator("tasks")
    @classmethod
    def _known(cls, tasks: list[str]) -> list[str]:
        return check_tasks(tasks, TASKS)


class EpicSkillsDataset(ReleasePairDataset):
    """EPIC-Skills 2018 skill pairs (7 tasks, 4 folds) on per-video clip features.

    A sample is a (better, worse) pair of one task: the better video, with the worse one as
    its partner. For the ``ranking`` head: pairwise accuracy per task and averaged.
    """

    name = "epic-skills"
    Params: ClassVar[type[BaseModel]] = EpicSkillsParams

    def task_folder(self, task: str) -> Path:
        """``<root>/annotations/<Task>``."""
        return self.root_folder(self.params) / "annotations" / task  # type: ignore[operator]

    def read_pairs(self, split: str) -> tuple[list[Pair], list[Problem]]:
        """The fold's train (or val, for ``test``) pairs of every task, checked against gt."""
        pairs: list[Pair] = []
        problems: list[Problem] = []
        part = "train" if split == "train" else "val"
        for task in self.params.tasks:
            folder = self.task_folder(task)
            gt, bad = read_winner_table(folder / f"{task.lower()}_gt.csv", task)
            problems += bad
            winners = {p.unordered: p for p in gt}
            videos = {task: {v for p in gt for v in p.videos}}
            path = folder / "splits" / f"{task.lower()}_{part}_{self.params.fold}.csv"
            rows, bad = read_order_table(path, task)
            problems += bad
            rows, bad = check_pairs(rows, videos, self.params.duplicates, what="release")
            problems += bad
            for pair in rows:
                known = winners.get(pair.unordered)
                if known is None:
                    problems.append(
                        (pair.where, f"pair {pair.better},{pair.worse} is not in the task's "
                                     f"{task.lower()}_gt.csv; remove it or add it there")
                    )
                elif known.better != pair.better:
                    problems.append(
                        (pair.where, f"says {pair.better} is better, {known.where} says "
                                     f"{known.better}; correct one of them")
                    )
                else:
                    pairs.append(pair)
        return pairs, problems
