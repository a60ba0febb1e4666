"""Generate synthetic long routines as clip feature arrays (for GDLT and feature datasets).

The output folder reads through the ``features`` dataset (and ``synthetic-routines``)::

    OUT_DIR/
      features/R0001.npy ...        float32 (L, D) clip features, one file per routine
      train.csv, test.csv           video,difficulty,execution,total (one row per routine)
      synthetic.json                generator settings, every routine's elements
      README.md                     says that the data is synthetic

THE DATA IS SYNTHETIC: no video is rendered; each routine is a sequence of clip features as a
backbone might produce them for a long performance. A routine is several elements (4-8), each
of one of :data:`NUM_ELEMENT_TYPES` types and with its own quality in ``[0, 1]`` (scattered
around the gymnast's skill). The clips of an element show its type (a type prototype vector)
and its quality (a type-specific direction, scaled by quality), plus noise; short transitions
of plain noise separate the elements. Labels, in points:

* ``difficulty``: the sum of the elements' type values (0.5-2.0 each, more and harder
  elements score higher);
* ``execution``: 10 x the mean element quality;
* ``total``: difficulty + execution (about 3-25, like rhythmic gymnastics).

So a model must find the elements along the whole routine and judge each one: a window
shorter than the routine sees only part of the evidence. Generation takes well under a second
per hundred routines and is deterministic for a seed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aqa_framework.errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "MARKER",
    "NUM_ELEMENT_TYPES",
    "Routine",
    "RoutinesSummary",
    "generate_routines",
    "plan_routines",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same settings would produce different data."""

MARKER = "synthetic.json"
NUM_ELEMENT_TYPES = 6
_TRANSITION = 2  # clips of plain noise between two elements
_NOISE = 0.35
_QUALITY_GAIN = 1.5


@dataclass(frozen=True)
class Routine:
    """One synthetic routine.

    Attributes:
        key: ``R0001`` ...
        skill: The gymnast's latent skill in ``[0, 1]``.
        elements: ``(type, quality, clips)`` of each element, in order.
        difficulty: Sum of the element type values.
        execution: 10 x mean element quality.
    """

    key: str
    skill: float
    elements: tuple[tuple[int, float, int], ...]
    difficulty: float
    execution: float

    @property
    def total(self) -> float:
        """The total score: difficulty + execution."""
        return round(self.difficulty + self.execution, 4)

    @property
    def clips(self) -> int:
        """Length of the routine in clips."""
        return sum(n for _, _, n in self.elements) + _TRANSITION * (len(self.elements) - 1)


@dataclass(frozen=True)
class RoutinesSummary:
    """What :func:`generate_routines` wrote.

    Attributes:
        root: The folder.
        train: Routines in ``train.csv``.
        test: Routines in ``test.csv``.
        feature_dim: Features per clip.
        clips: ``(shortest, longest)`` routine in clips.
        seconds: Time taken.
    """

    root: Path
    train: int
    test: int
    feature_dim: int
    clips: tuple[int, int]
    seconds: float


def _type_values(rng: np.random.Generator) -> np.ndarray:
    return np.round(np.linspace(0.5, 2.0, NUM_ELEMENT_TYPES)[rng.permutation(NUM_ELEMENT_TYPES)], 2)


def plan_routines(
    routines: int, seed: int, min_clips: int, max_clips: int
) -> tuple[list[Routine], np.ndarray]:
    """Draw the routines (elements, qualities, lengths) and the element type values.

    Args:
        routines: How many.
        seed: Random seed.
        min_clips: Shortest routine, in clips.
        max_clips: Longest routine, in clips.

    Returns:
        The routines and the value of each element type.
    """
    rng = np.random.default_rng(seed)
    values = _type_values(rng)
    out = []
    for i in range(routines):
        skill = float(rng.uniform(0.0, 1.0))
        count = int(rng.integers(4, 9))
        length = int(rng.integers(min_clips, max_clips + 1)) - _TRANSITION * (count - 1)
        shares = rng.dirichlet(np.full(count, 4.0))
        clips = np.maximum(2, np.floor(shares * length).astype(int))
        elements = []
        for n in clips:
            kind = int(rng.integers(NUM_ELEMENT_TYPES))
            quality = float(np.clip(skill + rng.normal(0.0, 0.15), 0.0, 1.0))
            elements.append((kind, round(quality, 4), int(n)))
        difficulty = round(float(sum(values[k] for k, _, _ in elements)), 4)
        execution = round(10.0 * float(np.mean([q for _, q, _ in elements])), 4)
        out.append(Routine(f"R{i + 1:04d}", round(skill, 4), tuple(elements), difficulty,
                           execution))
    return out, values


def routine_features(
    routine: Routine, prototypes: np.ndarray, directions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``float32 (L, D)`` clip features of one routine."""
    dim = prototypes.shape[1]
    parts = []
    for i, (kind, quality, n) in enumerate(routine.elements):
        if i:
            parts.append(rng.normal(0.0, _NOISE, (_TRANSITION, dim)))
        centre = prototypes[kind] + _QUALITY_GAIN * (2.0 * quality - 1.0) * directions[kind]
        parts.append(centre + rng.normal(0.0, _NOISE, (n, dim)))
    return np.concatenate(parts).astype(np.float32)


def _check(out: Path, routines: int, feature_dim: int, clips: tuple[int, int]) -> None:
    if routines < 8:
        raise DataError(f"routines must be at least 8, got {routines}")
    if feature_dim < 8:
        raise DataError(f"feature_dim must be at least 8, got {feature_dim}")
    if clips[0] < 24 or clips[1] < clips[0]:
        raise DataError(f"need 24 <= min_clips <= max_clips, got {clips[0]} and {clips[1]}")
    if out.exists():
        raise DataError(f"output folder exists: {out} (choose another, or delete it)")


def generate_routines(
    out_dir: str | Path,
    routines: int = 240,
    seed: int = 0,
    *,
    feature_dim: int = 64,
    min_clips: int = 40,
    max_clips: int = 80,
    test_fraction: float = 0.25,
) -> RoutinesSummary:
    """Write a synthetic routines dataset (feature files and label tables).

    Built in a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half-written dataset.

    Args:
        out_dir: Output folder (must not exist).
        routines: Routines in all (train and test).
        seed: Random seed; the same seed gives the same routines and features.
        feature_dim: Features per clip (D).
        min_clips: Shortest routine, in clips.
        max_clips: Longest routine, in clips.
        test_fraction: Share of the routines in the test split.

    Returns:
        A :class:`RoutinesSummary`.

    Raises:
        DataError: On bad arguments or if ``out_dir`` exists.
    """
    out = Path(out_dir)
    _check(out, routines, feature_dim, (min_clips, max_clips))
    t_start = time.perf_counter()
    plan, values = plan_routines(routines, seed, min_clips, max_clips)
    rng = np.random.default_rng([seed, 1])
    prototypes = rng.normal(0.0, 1.0, (NUM_ELEMENT_TYPES, feature_dim))
    directions = rng.normal(0.0, 1.0, (NUM_ELEMENT_TYPES, feature_dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True) / np.sqrt(feature_dim) * 2.0
    n_test = max(2, round(routines * test_fraction))
    order = rng.permutation(routines)
    test_keys = {plan[i].key for i in order[:n_test]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "features").mkdir()
        rows: dict[str, list[str]] = {"train": [], "test": []}
        for routine in plan:
            np.save(tmp / "features" / f"{routine.key}.npy",
                    routine_features(routine, prototypes, directions, rng))
            split = "test" if routine.key in test_keys else "train"
            rows[split].append(
                f"{routine.key},{routine.difficulty},{routine.execution},{routine.total}"
            )
        for split, lines in rows.items():
            text = "video,difficulty,execution,total\n" + "\n".join(lines) + "\n"
            (tmp / f"{split}.csv").write_text(text, encoding="utf-8")
        meta = {
            "synthetic": True,
            "generator": "aqa_framework.synth.routines",
            "version": GENERATOR_VERSION,
            "routines": routines,
            "seed": seed,
            "feature_dim": feature_dim,
            "min_clips": min_clips,
            "max_clips": max_clips,
            "test_fraction": test_fraction,
            "type_values": values.tolist(),
            "items": {
                r.key: {"skill": r.skill, "elements": [list(e) for e in r.elements],
                        "clips": r.clips}
                for r in plan
            },
        }
        (tmp / "README.md").write_text(_README.format(**meta), encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            tmp.rename(out)
        except OSError as exc:
            raise DataError(f"output folder appeared while generating: {out} ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lengths = [r.clips for r in plan]
    return RoutinesSummary(
        root=out,
        train=routines - n_test,
        test=n_test,
        feature_dim=feature_dim,
        clips=(min(lengths), max(lengths)),
        seconds=time.perf_counter() - t_start,
    )


_README = """# Synthetic long routines (NOT real gymnastics)

Written by the `synthetic-routines` dataset (aqa_framework.synth.routines, version {version}):
{routines} routines with seed {seed}, {feature_dim} features per clip, {min_clips}-{max_clips}
clips each. No video exists: `features/<key>.npy` holds each routine's clip features, as a
backbone would give them. `train.csv` / `test.csv` hold one row per routine (difficulty =
sum of the element type values, execution = 10 x mean element quality, total = both);
`synthetic.json` lists every routine's elements (type, quality, clips).

Results on this data say nothing about real sport.
"""
