"""The ``synthetic-pairs`` dataset: (better, worse) pairs of synthetic routines (NOT real data).

A pair dataset (:mod:`aqa_framework.data.pairs`) on a folder written by
:func:`aqa_framework.synth.pairs.generate_pairs`: synthetic routines as clip features and
``pairs/train.txt`` / ``pairs/test.txt`` ordered by each routine's hidden execution. It
exists so that the ``ranking`` head and pairwise specs run anywhere; results on it say nothing
about real skill.

The data is generated the first time a split is opened, into ``root`` or, by default,
``.aqa-cache/synthetic-pairs-<hash of the settings>`` under the current directory, and
reused afterwards.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.data.pairs import (
    Pair,
    PairFeatureDataset,
    PairParams,
    Problem,
    check_pairs,
    read_order_table,
)
from aqa_framework.errors import DataError
from aqa_framework.video.cache import settings_hash
from aqa_framework.video.params import expand_path

__all__ = ["SyntheticPairsDataset", "SyntheticPairsParams"]

TASK = "routines"


class SyntheticPairsParams(PairParams):
    """Generator settings, then the pair-sample settings."""

    model_config = ConfigDict(extra="forbid")

    routines: int = Field(160, ge=8, le=5000, description="Routines in all (train and test).")
    seed: int = Field(0, description="Generator seed (same seed, same routines and pairs).")
    feature_dim: int | None = Field(  # type: ignore[assignment]
        32, ge=8, description="Features per clip (D) of the generated routines."
    )
    min_clips: int = Field(24, ge=24, description="Clips of the shortest routine.")
    max_clips: int = Field(48, ge=24, description="Clips of the longest routine.")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="Share of routines in test.")
    min_gap: float = Field(
        1.0, ge=0, description="Smallest hidden execution difference (0-10) of a pair."
    )
    pairs_per_video: int = Field(10, ge=1, description="Pairs kept per routine (on average).")
    root: str | None = Field(
        None,
        description="Where the data lives (generated there if missing); default "
        "'.aqa-cache/synthetic-pairs-<hash of the settings>' in the current directory.",
        json_schema_extra=PATH_PARAM,
    )
    file_pattern: str = Field(  # type: ignore[assignment]
        "{video}.npy", description="File of a routine inside features_dir."
    )
    segments: int = Field(
        32, ge=1, description="Clips a routine is read as (evenly spaced over all of it)."
    )

    @model_validator(mode="after")
    def _clip_range(self) -> SyntheticPairsParams:
        if self.max_clips < self.min_clips:
            raise ValueError(f"max_clips ({self.max_clips}) is below min_clips "
                             f"({self.min_clips})")
        if self.feature_dim is None:
            raise ValueError("feature_dim is the generated feature size; it cannot be null")
        return self


def _wanted(params: Any) -> dict:
    from aqa_framework.synth.pairs import PAIRS_VERSION
    from aqa_framework.synth.routines import GENERATOR_VERSION

    return {
        "version": GENERATOR_VERSION,
        "pairs_version": PAIRS_VERSION,
        "routines": params.routines,
        "seed": params.seed,
        "feature_dim": params.feature_dim,
        "min_clips": params.min_clips,
        "max_clips": params.max_clips,
        "test_fraction": params.test_fraction,
        "min_gap": params.min_gap,
        "pairs_per_video": params.pairs_per_video,
    }


class SyntheticPairsDataset(PairFeatureDataset):
    """Synthetic (better, worse) pairs of routines as clip features (not real).

    Routines of 4-8 elements, each with its own quality; a pair orders two routines of one
    split by their hidden execution. For trying the ``ranking`` head without any download.
    """

    name = "synthetic-pairs"
    Params: ClassVar[type[BaseModel]] = SyntheticPairsParams

    @classmethod
    def root_folder(cls, params: Any) -> Path:
        """The data folder (explicit ``root`` or the settings-keyed cache folder)."""
        if params.root is not None:
            return expand_path(params.root)
        return (Path(".aqa-cache") / f"synthetic-pairs-{settings_hash(**_wanted(params))[:10]}"
                ).absolute()

    def tasks_of(self) -> list[str]:
        """One task."""
        return [TASK]

    def read_pairs(self, split: str) -> tuple[list[Pair], list[Problem]]:
        """Generate the data if missing, then read the split's pairs and check its videos."""
        root = self.root_folder(self.params)
        self._ensure_generated(root)
        with (root / f"{split}.csv").open(encoding="utf-8", newline="") as fh:
            videos = {row["video"] for row in csv.DictReader(fh)}
        pairs, problems = read_order_table(root / "pairs" / f"{split}.txt", TASK)
        pairs, bad = check_pairs(pairs, {TASK: videos}, self.params.duplicates,
                                 what=f"{split} split")
        return pairs, problems + bad

    def _ensure_generated(self, root: Path) -> None:
        from aqa_framework.synth.pairs import PAIRS_MARKER, generate_pairs
        from aqa_framework.synth.routines import MARKER

        p = self.params
        if not root.exists():
            print(f"Generating {p.routines} synthetic routines and their pairs (seed {p.seed}) "
                  f"in {root} (first use) ...", file=sys.stderr, flush=True)
            try:
                generate_pairs(
                    root, p.routines, p.seed, feature_dim=int(p.feature_dim),
                    clips=(p.min_clips, p.max_clips), test_fraction=p.test_fraction,
                    min_gap=p.min_gap, pairs_per_video=p.pairs_per_video,
                )
            except DataError:
                if not (root / PAIRS_MARKER).is_file():  # not merely another process first
                    raise
        if not (root / PAIRS_MARKER).is_file():
            raise DataError(
                f"{root} exists but is not a synthetic pairs dataset (no {PAIRS_MARKER}); "
                "delete it or choose another root"
            )
        try:
            routine_meta = json.loads((root / MARKER).read_text(encoding="utf-8"))
            pair_meta = json.loads((root / PAIRS_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the settings in {root}: {exc}") from exc
        found = {k: routine_meta.get(k) for k in _wanted(p) if k in routine_meta}
        found.update(
            pairs_version=pair_meta.get("version"),
            min_gap=pair_meta.get("min_gap"),
            pairs_per_video=pair_meta.get("pairs_per_video"),
        )
        wanted = _wanted(p)
        if found != wanted:
            raise DataError(
                f"{root} holds synthetic data made with other settings ({found}, wanted "
                f"{wanted}); delete it or choose another root"
            )
