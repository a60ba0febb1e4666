"""What the released pairwise-skill datasets (``epic-skills``, ``best``) share.

A release folder ``root`` and a list of the release's tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aqa_framework.data.pairs import PairFeatureDataset
from aqa_framework.video.params import expand_path


def check_tasks(tasks: list[str], known: Sequence[str]) -> list[str]:
    """``tasks`` if each is one of ``known`` and none is listed twice.

    Raises:
        ValueError: Naming the unknown tasks (and the known ones) or the repetition.
    """
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the tasks are {', '.join(known)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError("a task is listed twice")
    return tasks


class ReleasePairDataset(PairFeatureDataset):
    """Base of pair datasets read from a release folder (``params.root``).

    The configured tasks (``params.tasks``) are the labels of the ``task`` class field.
    """

    @classmethod
    def root_folder(cls, params: Any) -> Path | None:
        """The release folder (``root``)."""
        return expand_path(params.root)

    def tasks_of(self) -> list[str]:
        """The configured tasks."""
        return list(self.params.tasks)
