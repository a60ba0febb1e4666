"""The ``rhythmic-gymnastics`` dataset (RG, Zeng et al. ACM MM 2020) on clip features.

Label files as released with ACTION-NET (``train.txt``: 800 videos, ``test.txt``: 200; 200 and
50 per apparatus): one header line, then one tab-separated row per video::

    Video_Name  Difficulty_Score  Execution_Score  Total_Score  Penalty  Video_length
    Ball_001    10.50             8.30             18.80        0.00     92

The header mixes tabs and spaces while the rows are tab-separated (a reader splitting on tabs
sees 4 header names for 6 fields), so both are split on any whitespace, as the official code
does. The apparatus is the part of ``Video_Name`` before ``_``; as in the public code one
model is trained per apparatus (``apparatus``). Targets, in points: ``difficulty`` (D),
``execution`` (E), ``penalty`` and ``total`` (= D + E - penalty in every row). Features are
``<features_dir>/<Video_Name>.npy`` (GDLT: Video Swin-B, 1024 per 32-frame clip); they are
downloaded separately or written by ``aqa features extract``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.component import PATH_PARAM
from aqa_framework.data.feature_dataset import FeatureParams
from aqa_framework.data.label_table import TableLayout

from .features import FeaturesDataset

__all__ = ["APPARATUS", "RhythmicGymnasticsDataset"]

APPARATUS = ("Ball", "Clubs", "Hoop", "Ribbon")

_COLUMNS = {
    "difficulty": "Difficulty_Score",
    "execution": "Execution_Score",
    "penalty": "Penalty",
    "total": "Total_Score",
}
_ABOUT = {
    "difficulty": "difficulty score D (Difficulty_Score)",
    "execution": "execution score E (Execution_Score)",
    "penalty": "penalty (Penalty)",
    "total": "total score = D + E - penalty (Total_Score)",
}


class RhythmicGymnasticsParams(FeatureParams):
    """The label files, the apparatus and the feature files."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        description="Folder of the release's train.txt and test.txt.",
        json_schema_extra=PATH_PARAM,
    )
    train_labels: str = Field("train.txt", description="Train label file, relative to root.")
    test_labels: str = Field("test.txt", description="Test label file, relative to root.")
    apparatus: Literal["Ball", "Clubs", "Hoop", "Ribbon", "all"] = Field(
        "Ball",
        description="Videos of one apparatus (one model per apparatus, as published), or "
        "'all' of them.",
    )
    features_dir: str = Field(  # type: ignore[assignment]
        "swintx_avg_fps25_clip32",
        description="Folder of the <Video_Name>.npy feature files, relative to root unless "
        "absolute.",
    )
    feature_dim: int | None = Field(
        1024,
        ge=1,
        description="Features per clip (1024: GDLT's Video Swin-B features); null: from the "
        "folder's manifest.json or the first file.",
    )


class RhythmicGymnasticsDataset(FeaturesDataset):
    """Rhythmic gymnastics routines (ball, clubs, hoop, ribbon) as clip features; D/E/total.

    Reads the release's ``train.txt`` / ``test.txt`` (header quirk handled: fields split on
    any whitespace), keeps one apparatus (or all), and loads ``<Video_Name>.npy`` clip
    features. Scores ``difficulty``, ``execution``, ``penalty`` and ``total`` in points; GDLT
    regresses one of them divided by 25 (the ``gdlt`` head's ``score_scale``).
    """

    name = "rhythmic-gymnastics"
    Params: ClassVar[type[BaseModel]] = RhythmicGymnasticsParams  # type: ignore[assignment]

    def layout(self) -> TableLayout:
        """Whitespace-separated, header names, key ``Video_Name``, the four score columns."""
        apparatus = self.params.apparatus
        return TableLayout(
            columns=dict(_COLUMNS),
            key_column="Video_Name",
            separator=None,
            header="names",
            key_filter=None if apparatus == "all" else f"^{apparatus}_",
        )

    @classmethod
    def root_folder(cls, params: Any) -> Path | None:
        """The release folder (``root``)."""
        from aqa_framework.video.params import expand_path

        return expand_path(params.root)

    def score_descriptions(self) -> dict[str, str]:
        """What each score is."""
        return dict(_ABOUT)
