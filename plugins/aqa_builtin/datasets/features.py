"""The ``features`` dataset: clip feature files plus a label table, configured in a spec.

Any long-video dataset shipped as one feature file per video (``aqa features extract``
output, or a release's ``.npy`` files) and one label table per split (one row per video,
named score columns) is read by this dataset with a spec alone::

    data:
      name: features
      params:
        root: data/my-routines            # label files are relative to it
        train_labels: train.csv
        test_labels: test.csv
        separator: ","
        key_column: video
        score_columns: {total: total_score}
        features_dir: features/i3d        # relative to root
        train_length: 64
      eval_batch_size: 1                  # whole sequences at test

Score ranges are the lowest and highest value found in the label files of every split,
unless ``score_ranges`` declares them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from aqa_framework.component import PATH_PARAM
from aqa_framework.data.feature_dataset import FeatureDataset, FeatureParams
from aqa_framework.data.label_table import (
    BadRowWarning,
    LabelTable,
    LabelTableParams,
    TableLayout,
    read_label_table,
)
from aqa_framework.errors import DataError
from aqa_framework.targets import ScoreTarget, Targets
from aqa_framework.video.dataset import SampleRecord
from aqa_framework.video.params import expand_path

__all__ = ["FeaturesDataset", "FeaturesParams"]


class FeaturesParams(FeatureParams, LabelTableParams):
    """Label files, their layout, and the feature files (see :class:`FeatureParams`)."""

    root: str | None = Field(
        None,
        description="Folder the label files and a relative features_dir are in; null: the "
        "current directory.",
        json_schema_extra=PATH_PARAM,
    )
    train_labels: str = Field(description="Label table of the train split, relative to root.")
    test_labels: str = Field(description="Label table of the test split, relative to root.")
    score_columns: dict[str, str | int] = Field(  # type: ignore[assignment]
        min_length=1,
        description="Score target name -> its column (header name or 0-based position), e.g. "
        "{total: Total_Score}.",
    )
    score_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Score name -> [low, high] it can take; default: the lowest and highest "
        "value in the label files.",
    )


class FeaturesDataset(FeatureDataset):
    """Pre-extracted clip features with a label table per split, configured in the spec.

    One feature file ``(L, D)`` per video (``.npy``/``.npz``, e.g. written by ``aqa features
    extract``) and, per split, a text table with one row per video: a key column and named
    score columns (separator, header and column names are params). Bad rows raise one error
    naming file and line, or are skipped with a warning under ``on_error: skip``.
    """

    name = "features"
    Params: ClassVar[type[FeaturesParams]] = FeaturesParams

    # --------------------------------------------------------------------- what subclasses set

    def layout(self) -> TableLayout:
        """How the label tables are laid out."""
        return self.params.layout()

    def label_file(self, split: str) -> Path:
        """The label table of a split."""
        p = self.params
        name = p.train_labels if split == "train" else p.test_labels
        return expand_path(name, self.root_folder(p))

    @classmethod
    def root_folder(cls, params: Any) -> Path | None:
        """The folder relative paths start from (``None``: the current directory)."""
        return expand_path(params.root) if params.root else None

    @classmethod
    def features_folder(cls, params: Any) -> Path:
        """``features_dir``, relative to ``root`` when it is relative."""
        return expand_path(params.features_dir, cls.root_folder(params))

    def score_descriptions(self) -> dict[str, str]:
        """Score name -> description, for reports."""
        return {name: f"column {col!r} of the label table" for name, col in
                self.layout().columns.items()}

    # --------------------------------------------------------------------- reading

    def _table(self, split: str) -> LabelTable:
        return read_label_table(self.label_file(split), self.layout(),
                                on_error=self.params.on_error)

    def build_records(self) -> tuple[list[SampleRecord], list[tuple[str, str]]]:
        """One record per row of the split's label table; ``source`` is its feature file."""
        table = self._table(self.split)
        self._tables = {self.split: table}
        records = [
            SampleRecord(key=row.key, source=self.feature_file(row.key), scores=dict(row.scores))
            for row in table.rows
        ]
        return records, []

    def _observed_ranges(self) -> dict[str, tuple[float, float]]:
        values: dict[str, list[float]] = {}
        for split in self.splits:
            if split not in self._tables:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", BadRowWarning)
                    try:
                        self._tables[split] = self._table(split)
                    except DataError:
                        continue  # reported when that split is opened
            for row in self._tables[split].rows:
                for name, value in row.scores.items():
                    values.setdefault(name, []).append(value)
        out = {}
        for name, vals in values.items():
            low, high = min(vals), max(vals)
            out[name] = (low, high if high > low else low + 1.0)
        return out

    def build_targets(self) -> Targets:
        """One score target per score column, with its declared or observed range.

        Observed ranges span every split's label file (rows of other keys left out).
        """
        declared = dict(getattr(self.params, "score_ranges", None) or {})
        unknown = sorted(set(declared) - set(self.layout().columns))
        if unknown:
            raise DataError(
                f"dataset '{self.name}': score_ranges names {unknown}, which are not "
                f"score columns ({', '.join(self.layout().columns)})"
            )
        observed = self._observed_ranges() if set(self.layout().columns) - set(declared) else {}
        about = self.score_descriptions()
        scores = {}
        for name in self.layout().columns:
            low, high = declared.get(name) or observed[name]
            scores[name] = ScoreTarget(low=low, high=high, description=about.get(name, ""))
        return Targets(scores=scores)
