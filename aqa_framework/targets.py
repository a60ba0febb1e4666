"""What a dataset provides and what a head consumes (torch-free).

A dataset declares its :class:`Targets`; the builder hands them to every head, which checks
that what it needs is there before any training starts. Samples carry the values under the
same names:

* ``sample["scores"][name]``: a float, in the dataset's own points (e.g. 0-104.5 for diving);
* ``sample["classes"][field]``: an int in ``range(len(labels))``;
* ``sample["caption"]``: a 1-D int64 tensor ``<sos> w1 ... <eos>`` padded with ``pad_index``
  to ``max_length + 2`` tokens, and ``sample["caption_length"]`` its unpadded length;
  optionally ``sample["caption_text"]``, the complete caption as a string (not cut to
  ``max_length``): caption metrics compare with it, as the COCO caption evaluation does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

OUTLIER_FENCE = 5.0
"""Scores more than this many interquartile ranges beyond the quartiles are outliers."""


class ScoreTarget(BaseModel):
    """A real-valued quality score, e.g. the final score of a dive.

    Attributes:
        low: Lowest possible (or observed) score, in points.
        high: Highest possible (or observed) score, in points.
        description: What the score is, for reports.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    low: float
    high: float
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> ScoreTarget:
        if not self.high > self.low:
            raise ValueError(f"high ({self.high}) must exceed low ({self.low})")
        return self


class ClassField(BaseModel):
    """One fine-grained class field, e.g. the diving position.

    Attributes:
        labels: Label of each class, in index order.
        description: What the field is, for reports.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(min_length=2)
    description: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(labels)``)."""
        return len(self.labels)


class CaptionTarget(BaseModel):
    """Commentary captions over a fixed vocabulary.

    Attributes:
        words: The vocabulary, index -> word.
        max_length: Most words kept per caption (longer ones are truncated), excluding
            ``<sos>`` and ``<eos>``.
        pad_index: Index used to pad captions (MTL-AQA uses ``<eos>`` = 0).
        sos_index: Index of the start token.
        eos_index: Index of the end token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    words: list[str] = Field(min_length=3)
    max_length: int = Field(100, ge=1)
    pad_index: int = 0
    sos_index: int = 1
    eos_index: int = 0

    @property
    def vocab_size(self) -> int:
        """Number of words in the vocabulary."""
        return len(self.words)

    def decode(self, tokens: list[int]) -> str:
        """Turn token ids into text, stopping at ``<eos>`` and skipping ``<sos>``.

        Args:
            tokens: Token ids, optionally starting with ``<sos>``.

        Returns:
            The words joined by spaces.
        """
        out: list[str] = []
        for t in tokens:
            if t == self.eos_index:
                break
            if t == self.sos_index:
                continue
            out.append(self.words[t] if 0 <= t < len(self.words) else "<unk>")
        return " ".join(out)


class Targets(BaseModel):
    """Everything a dataset provides for supervision.

    Attributes:
        scores: Score name -> its range.
        classes: Class field name -> its labels.
        captions: The caption vocabulary, or ``None`` if the dataset has no captions.
    """

    model_config = ConfigDict(extra="forbid")

    scores: dict[str, ScoreTarget] = Field(default_factory=dict)
    classes: dict[str, ClassField] = Field(default_factory=dict)
    captions: CaptionTarget | None = None

    def describe(self) -> str:
        """One line saying what is provided, e.g. ``scores (final_score), classes (...)``."""
        parts = []
        if self.scores:
            parts.append(f"scores ({', '.join(self.scores)})")
        if self.classes:
            fields = ", ".join(f"{k}:{v.num_classes}" for k, v in self.classes.items())
            parts.append(f"classes ({fields})")
        if self.captions is not None:
            parts.append(f"captions (vocabulary {self.captions.vocab_size})")
        return ", ".join(parts) or "no targets"


def plausible_range(values: Iterable[float], fence: float = OUTLIER_FENCE) -> tuple[float, float]:
    """The lowest and highest score of a dataset, not counting absurd outliers.

    A dataset that does not state its score range takes it from its annotations. One wrong
    value (a typo of ``1045`` for ``104.5``) would stretch that range and hide the mistake, so
    values more than ``fence`` interquartile ranges below the first or above the third
    quartile are left out (with 10 values or more and a non-zero spread); the dataset then
    warns about the samples outside the range. NaN and infinite values are ignored.

    Args:
        values: The scores of every sample.
        fence: Outlier distance in interquartile ranges (5 keeps every real MTL-AQA and
            AQA-7 score).

    Returns:
        ``(low, high)``, or ``(nan, nan)`` if there is no finite value.
    """
    finite = sorted(v for v in (float(x) for x in values) if math.isfinite(v))
    if not finite:
        return math.nan, math.nan
    if len(finite) >= 10:
        q1, _, q3 = statistics.quantiles(finite, n=4, method="inclusive")
        spread = q3 - q1
        if spread > 0:
            lo, hi = q1 - fence * spread, q3 + fence * spread
            finite = [v for v in finite if lo <= v <= hi]
    return finite[0], finite[-1]

