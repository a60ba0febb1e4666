"""The ``synthetic-routines`` dataset: long routines as clip features, generated on first use.

It is ``features`` on a folder written by
:func:`aqa_framework.synth.routines.generate_routines`: one ``(L, D)`` feature file per
routine and ``train.csv`` / ``test.csv`` label tables with ``difficulty``, ``execution`` and
``total``. It exists so that feature inputs, GDLT and long-video specs run anywhere; results
on it say nothing about real sport (NOT real data).

The data is generated the first time a split is opened, into ``root`` or, by default,
``.aqa-cache/synthetic-routines-<hash of the settings>`` under the current directory, and
reused afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aqa_framework.component import PATH_PARAM
from aqa_framework.data.feature_dataset import FeatureParams
from aqa_framework.data.label_table import TableLayout
from aqa_framework.video.cache import settings_hash
from aqa_framework.video.dataset import SampleRecord
from aqa_framework.video.params import expand_path

from .features import FeaturesDataset

__all__ = ["SyntheticRoutinesDataset", "SyntheticRoutinesParams"]

_ABOUT = {
    "difficulty": "sum of the element type values (synthetic)",
    "execution": "10 x mean element quality (synthetic)",
    "total": "difficulty + execution (synthetic)",
}


class SyntheticRoutinesParams(FeatureParams):
    """Generator settings, then the feature-sample settings."""

    model_config = ConfigDict(extra="forbid")

    routines: int = Field(240, ge=8, le=5000, description="Routines in all (train and test).")
    seed: int = Field(0, description="Generator seed (same seed, same routines).")
    feature_dim: int | None = Field(  # type: ignore[assignment]
        64, ge=8, description="Features per clip (D) of the generated routines."
    )
    min_clips: int = Field(40, ge=24, description="Clips of the shortest routine.")
    max_clips: int = Field(80, ge=24, description="Clips of the longest routine.")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="Share of routines in test.")
    root: str | None = Field(
        None,
        description="Where the data lives (generated there if missing); default "
        "'.aqa-cache/synthetic-routines-<hash of the settings>' in the current directory.",
        json_schema_extra=PATH_PARAM,
    )
    features_dir: str = Field(  # type: ignore[assignment]
        "features", description="Folder of the feature files, relative to root."
    )
    train_length: int = Field(
        64, ge=1, description="Clips per training sample (random window, zero-padded)."
    )

    @model_validator(mode="after")
    def _clip_range(self) -> SyntheticRoutinesParams:
        if self.max_clips < self.min_clips:
            raise ValueError(f"max_clips ({self.max_clips}) is below min_clips "
                             f"({self.min_clips})")
        if self.feature_dim is None:
            raise ValueError("feature_dim is the generated feature size; it cannot be null")
        return self


def _wanted(params: Any) -> dict:
    from aqa_framework.synth.routines import GENERATOR_VERSION

    return {
        "version": GENERATOR_VERSION,
        "routines": params.routines,
        "seed": params.seed,
        "feature_dim": params.feature_dim,
        "min_clips": params.min_clips,
        "max_clips": params.max_clips,
        "test_fraction": params.test_fraction,
    }


class SyntheticRoutinesDataset(FeaturesDataset):
    """Synthetic long routines as clip features, generated on first use (not real).

    Each routine is 4-8 elements, each of a type (its difficulty value) and with its own
    quality, written as clip features; scores ``difficulty``, ``execution`` and ``total``
    (3-25 points). For trying feature inputs and GDLT without any download.
    """

    name = "synthetic-routines"
    Params: ClassVar[type[BaseModel]] = SyntheticRoutinesParams  # type: ignore[assignment]

    @classmethod
    def root_folder(cls, params: Any) -> Path:
        """The data folder (explicit ``root`` or the settings-keyed cache folder)."""
        if params.root is not None:
            return expand_path(params.root)
        return (Path(".aqa-cache") / f"synthetic-routines-{settings_hash(**_wanted(params))[:10]}"
                ).absolute()

    def label_file(self, split: str) -> Path:
        """``train.csv`` or ``test.csv`` in the data folder."""
        return self.root_folder(self.params) / f"{split}.csv"

    def layout(self) -> TableLayout:
        """Comma-separated, header names, key ``video``, three scores."""
        return TableLayout(
            columns={n: n for n in _ABOUT}, key_column="video", separator=",", header="names"
        )

    def score_descriptions(self) -> dict[str, str]:
        """What each score is."""
        return dict(_ABOUT)

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """Generate the data if it is missing, then read it like ``features``."""
        self._ensure_generated()
        return super().build_records()

    def _ensure_generated(self) -> None:
        from aqa_framework.synth.first_use import ensure_generated
        from aqa_framework.synth.routines import MARKER, generate_routines

        p = self.params
        root = self.root_folder(p)
        ensure_generated(
            root,
            MARKER,
            _wanted(p),
            lambda: generate_routines(
                root, p.routines, p.seed, feature_dim=int(p.feature_dim),
                min_clips=p.min_clips, max_clips=p.max_clips, test_fraction=p.test_fraction,
            ),
            f"{p.routines} synthetic routines (seed {p.seed})",
        )
