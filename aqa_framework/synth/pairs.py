"""Synthetic pairwise skill labels: (better, worse) pairs over synthetic routines.

:func:`generate_pairs` writes a synthetic routines dataset
(:func:`aqa_framework.synth.routines.generate_routines`) and then, for each split, pair files
in the layout of RAAN's and BEST's lists::

    OUT_DIR/
      features/R0001.npy ...        float32 (L, D) clip features, one file per routine
      train.csv, test.csv           the routines of each split and their hidden scores
      pairs/train.txt, test.txt     '<better> <worse>' per line, within one split
      pairs.json                    the pair settings (written last: the data is complete)

THE DATA IS SYNTHETIC. The hidden skill of a routine is its ``execution`` (10 x the mean
quality of its elements); a pair is two routines of the same split whose execution differs by
at least ``min_gap`` (as annotators label only pairs with a visible difference), the better
one first. Pairs never cross the split. Deterministic for a seed.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import tempfile
from pathlib import Path

from aqa_framework.errors import DataError

__all__ = ["PAIRS_MARKER", "PAIRS_VERSION", "generate_pairs", "pairs_of"]

PAIRS_MARKER = "pairs.json"
PAIRS_VERSION = 1
"""Bumped whenever the same settings would produce different pairs."""


def pairs_of(
    skill: dict[str, float], min_gap: float, per_video: int, seed: int
) -> list[tuple[str, str]]:
    """(better, worse) pairs of routines whose skill differs by at least ``min_gap``.

    Args:
        skill: Routine key -> hidden skill.
        min_gap: Smallest skill difference of a pair.
        per_video: Keep at most ``per_video * len(skill) / 2`` pairs (drawn at random).
        seed: Seed of that draw and of the pair order.

    Returns:
        The pairs, better first, in a random order.
    """
    pairs = [
        (a, b) if skill[a] > skill[b] else (b, a)
        for a, b in itertools.combinations(sorted(skill), 2)
        if abs(skill[a] - skill[b]) >= min_gap
    ]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return pairs[: max(1, per_video * len(skill) // 2)]


def generate_pairs(
    out_dir: str | Path,
    routines: int = 160,
    seed: int = 0,
    *,
    feature_dim: int = 32,
    clips: tuple[int, int] = (24, 48),
    test_fraction: float = 0.25,
    min_gap: float = 1.0,
    pairs_per_video: int = 10,
) -> dict[str, int]:
    """Write synthetic routines and pairwise labels over them.

    Args:
        out_dir: Output folder (must not exist).
        routines: Routines in all (train and test).
        seed: Random seed (routines and pairs).
        feature_dim: Features per clip (D).
        clips: Shortest and longest routine, in clips.
        test_fraction: Share of the routines in the test split.
        min_gap: Smallest difference of hidden execution (0-10) between a pair's routines.
        pairs_per_video: Pairs kept per routine (on average, each pair counting for two).

    Returns:
        Split -> number of pairs written.

    Raises:
        DataError: On bad arguments, if ``out_dir`` exists or a split gets no pair.
    """
    from aqa_framework.synth.routines import generate_routines

    out = Path(out_dir)
    if min_gap < 0:
        raise DataError(f"min_gap must not be negative, got {min_gap}")
    generate_routines(
        out, routines, seed, feature_dim=feature_dim, min_clips=clips[0], max_clips=clips[1],
        test_fraction=test_fraction,
    )
    tmp = Path(tempfile.mkdtemp(prefix=".pairs.tmp-", dir=out))
    counts: dict[str, int] = {}
    try:
        for n, split in enumerate(("train", "test")):
            with (out / f"{split}.csv").open(encoding="utf-8", newline="") as fh:
                skill = {row["video"]: float(row["execution"]) for row in csv.DictReader(fh)}
            pairs = pairs_of(skill, min_gap, pairs_per_video, seed * 2 + n)
            if not pairs:
                raise DataError(
                    f"no {split} pair differs by min_gap {min_gap}; lower min_gap or add routines"
                )
            (tmp / f"{split}.txt").write_text(
                "".join(f"{a} {b}\n" for a, b in pairs), encoding="utf-8"
            )
            counts[split] = len(pairs)
        tmp.rename(out / "pairs")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = {
        "synthetic": True,
        "generator": "aqa_framework.synth.pairs",
        "version": PAIRS_VERSION,
        "min_gap": min_gap,
        "pairs_per_video": pairs_per_video,
        "pairs": counts,
    }
    (out / PAIRS_MARKER).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return counts
