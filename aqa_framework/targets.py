"""What a dataset provides and what a head consumes (torch-free).

A dataset declares its :class:`Targets`; the builder hands them to every head, which checks
that what it needs is there before any training starts. Samples carry the values under the
same names:

* ``sample["scores"][name]``: a float, in the dataset's own points (e.g. 0-104.5 for diving);
* ``sample["classes"][field]``: an int in ``range(len(labels))``;
* ``sample["caption"]``: a 1-D int64 tensor ``<sos> w1 ... <eos>`` padded with ``pad_index``
  to ``max_length + 2`` tokens, and ``sample["caption_length"]`` its unpadded length;
  optionally ``sample["caption_text"]``, the complete caption as a string (not cut to
  ``max_length``): caption metrics compare with it, as the COCO caption evaluation does;
* ``sample["arrays"][name]``: a float32 tensor of the declared :attr:`ArrayTarget.shape` (a
  0-d tensor for a scalar), for every *open* target (:class:`ArrayTarget`).

Open targets are how a dataset provides anything beyond one score per name, class fields and
captions: the seven judges' marks of a dive, its difficulty degree, the six GRS items of a
surgical trial, or a kind nobody has thought of yet. Each declares a ``kind`` (a free string;
the kinds the built-in plugins use are listed in :data:`WELL_KNOWN_KINDS`, and a plugin may
invent its own, preferably prefixed with its name). Heads say what they need as
:class:`TargetNeed` objects; :meth:`Targets.find` looks targets up by kind and name and
:meth:`Targets.explain` says why a need is not met. Nothing here is reserved for built-ins.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


BUILTIN_KINDS = ("scores", "classes", "captions")
"""The kinds of the three fixed parts of :class:`Targets` (``TaskHead.target_kind`` values
of 0.1); every other kind names :class:`ArrayTarget` objects."""

WELL_KNOWN_KINDS: dict[str, str] = {
    "judge_scores": "a vector of the marks of a judging panel, one entry per judge "
    "(``labels`` names them); ``low``/``high`` bound one mark; ``info['step']`` is the "
    "marking step (0.5 in diving)",
    "difficulty": "a scalar multiplier of a panel's marks (the diving degree of difficulty)",
    "sub_scores": "a vector of named item scores that add up to a total (the six GRS items "
    "of JIGSAWS, 1-5 each); ``labels`` names the items",
}
"""Array target kinds used by the built-in datasets and heads, with what their values mean.
Third-party plugins may use these or declare their own (``myplugin.kind``)."""

_KIND_PATTERN = r"^[a-z0-9][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)?$"


class ArrayTarget(BaseModel):
    """An open target: a real value or a vector of them per sample, of a declared kind.

    Samples carry it as ``sample["arrays"][name]``, a float32 tensor of :attr:`shape`.

    Attributes:
        kind: What the values are (``judge_scores``, ``difficulty``, ``sub_scores``, or a
            plugin's own kind such as ``skating.element_scores``); heads find targets by it.
        shape: Shape of one sample's value; ``()`` for a scalar, ``(7,)`` for seven judges.
        low: Lowest valid value of an entry, or ``None`` for no bound. Values outside
            ``[low, high]`` make a sample bad (reported, never used silently).
        high: Highest valid value of an entry, or ``None`` for no bound.
        labels: For a vector, the name of each entry (``judge_1`` ... or the GRS items).
        description: What the target is, for reports.
        info: Kind-specific facts (e.g. ``{"step": 0.5}`` for marks in half points).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str = Field(pattern=_KIND_PATTERN)
    shape: tuple[int, ...] = ()
    low: float | None = None
    high: float | None = None
    labels: list[str] | None = None
    description: str = ""
    info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 1 for n in shape):
            raise ValueError(f"every dimension of shape must be >= 1 (got {list(shape)})")
        return shape

    @model_validator(mode="after")
    def _consistent(self) -> ArrayTarget:
        if self.low is not None and self.high is not None and not self.high > self.low:
            raise ValueError(f"high ({self.high}) must exceed low ({self.low})")
        if self.labels is not None and (len(self.shape) != 1 or len(self.labels) != self.shape[0]):
            raise ValueError(
                f"labels name the entries of a vector: {len(self.labels)} labels for shape "
                f"{list(self.shape)}"
            )
        return self

    @property
    def size(self) -> int:
        """Number of values per sample (1 for a scalar)."""
        return math.prod(self.shape)

    def problem(self, value: Any) -> str | None:
        """Why one sample's value does not fit this target, or ``None`` if it does.

        Checks the shape, that every entry is a finite number and lies in ``[low, high]``.

        Args:
            value: A number, a nested sequence or an array (numpy or torch).
        """
        import numpy as np

        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return f"{_short(value)} is not numeric"
        if arr.shape != tuple(self.shape):
            return f"has shape {list(arr.shape)}, expected {list(self.shape)}"
        if not np.isfinite(arr).all():
            return f"{_short(arr.tolist())} is not finite"
        bad = [
            float(v)
            for v in arr.reshape(-1)
            if (self.low is not None and v < self.low) or (self.high is not None and v > self.high)
        ]
        if bad:
            return (
                f"{_short(arr.tolist())} has {', '.join(f'{v:g}' for v in bad[:3])} outside "
                f"{_bounds(self.low, self.high)}"
            )
        return None

    def describe(self) -> str:
        """Short text: ``judge_scores[7] 0..10``."""
        dims = f"[{'x'.join(map(str, self.shape))}]" if self.shape else ""
        unbounded = self.low is None and self.high is None
        bounds = "" if unbounded else " " + _bounds(self.low, self.high)
        return f"{self.kind}{dims}{bounds}"


def _bounds(low: float | None, high: float | None) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{lo}..{hi}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class TargetNeed:
    """What a head needs from the dataset, by kind and optionally by name.

    Attributes:
        kind: ``scores``, ``classes``, ``captions`` or an :class:`ArrayTarget` kind.
        name: The target's name, or ``None`` for any target of that kind.
        shape: For array targets, the value shape the head needs; ``None`` accepts any.
        optional: The head works without it (e.g. a difficulty it multiplies by if present).
        role: What the head uses it for, for messages (``"the marks to learn"``).
    """

    kind: str
    name: str | None = None
    shape: tuple[int, ...] | None = None
    optional: bool = False
    role: str = ""

    def describe(self) -> str:
        """``a 'judge_scores' target named 'judges' (the marks to learn)``."""
        text = f"{self.kind} targets" if self.kind in BUILTIN_KINDS else f"a '{self.kind}' target"
        if self.name:
            text += f" named '{self.name}'"
        if self.shape is not None:
            text += f" of shape {list(self.shape)}"
        return text + (f" ({self.role})" if self.role else "")


class Targets(BaseModel):
    """Everything a dataset provides for supervision.

    Attributes:
        scores: Score name -> its range.
        classes: Class field name -> its labels.
        captions: The caption vocabulary, or ``None`` if the dataset has no captions.
        arrays: Open targets: name -> :class:`ArrayTarget` (judge marks, difficulty, item
            scores, a plugin's own kinds).
    """

    model_config = ConfigDict(extra="forbid")

    scores: dict[str, ScoreTarget] = Field(default_factory=dict)
    classes: dict[str, ClassField] = Field(default_factory=dict)
    captions: CaptionTarget | None = None
    arrays: dict[str, ArrayTarget] = Field(default_factory=dict)

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
        if self.arrays:
            arrays = ", ".join(f"{k}: {v.describe()}" for k, v in self.arrays.items())
            parts.append(f"arrays ({arrays})")
        return ", ".join(parts) or "no targets"

    def find(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The targets of a kind (and name): name -> declaration.

        ``scores``/``classes`` give :attr:`scores`/:attr:`classes`, ``captions`` gives
        ``{"caption": captions}`` when there are captions; any other kind gives the
        :attr:`arrays` of that kind.

        Args:
            kind: A kind, as in :class:`TargetNeed`.
            name: Only the target of this name.
        """
        if kind == "scores":
            found: dict[str, Any] = dict(self.scores)
        elif kind == "classes":
            found = dict(self.classes)
        elif kind == "captions":
            found = {"caption": self.captions} if self.captions is not None else {}
        else:
            found = {k: v for k, v in self.arrays.items() if v.kind == kind}
        if name is not None:
            found = {k: v for k, v in found.items() if k == name}
        return found

    def matching(self, need: TargetNeed) -> dict[str, Any]:
        """The targets that meet a need (kind, name and, for arrays, shape)."""
        found = self.find(need.kind, need.name)
        if need.shape is not None and need.kind not in BUILTIN_KINDS:
            found = {k: v for k, v in found.items() if tuple(v.shape) == tuple(need.shape)}
        return found

    def explain(self, need: TargetNeed, who: str = "the head") -> str | None:
        """Why a need is not met, or ``None`` if it is (optional needs are always met).

        Args:
            need: What is needed.
            who: The component that needs it, for the message (``head 'musdl'``).

        Returns:
            One sentence naming what is missing and what the dataset provides instead, e.g.
            ``head 'musdl' needs a 'judge_scores' target (the marks to learn), but the
            dataset provides scores (final_score), classes (position:3)``.
        """
        if need.optional or self.matching(need):
            return None
        text = f"{who} needs {need.describe()}, but the dataset provides {self.describe()}"
        same_kind = self.find(need.kind)
        if same_kind and need.name is not None and need.name not in same_kind:
            text += f" (its {need.kind} targets are named {', '.join(map(repr, same_kind))})"
        elif same_kind and need.shape is not None:
            shapes = ", ".join(f"{k}: {list(v.shape)}" for k, v in same_kind.items())
            text += f" (shapes {shapes})"
        return text


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

