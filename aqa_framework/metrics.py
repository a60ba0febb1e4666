"""Metric functions shared by the task heads and the engine.

Scores are compared with rank and linear correlation and the relative L2 distance; class
predictions with accuracy; captions with the COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L,
CIDEr) through ``pycocoevalcap``. Conventions:

* Correlations are in ``[-1, 1]`` (multiply by 100 for the paper's tables); a correlation of
  a constant sequence is undefined and returned as ``nan``.
* :func:`relative_l2` follows the AQA literature (CoRe, MUSDL, TPT): the mean over samples of
  ``((pred - true) / (high - low)) ** 2``, times 100, where ``high`` and ``low`` are the highest
  and lowest true scores of the evaluated samples, unless a fixed range is given.
* Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import functools
import math
import shutil
import threading
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from aqa_framework.errors import AQAError

CAPTION_METRICS: tuple[str, ...] = ("bleu", "meteor", "rouge", "cider")
"""Caption metric families understood by :func:`caption_scores`."""


def _pair(pred: Sequence[float], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} ground-truth values")
    if p.size == 0:
        raise ValueError("no samples to compare")
    return p, t


def _correlation(fn, pred: Sequence[float], true: Sequence[float]) -> float:
    p, t = _pair(pred, true)
    if p.size < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(p, t)[0])


def spearman(pred: Sequence[float], true: Sequence[float]) -> float:
    """Spearman's rank correlation (the main AQA metric).

    Args:
        pred: Predicted scores.
        true: Ground-truth scores, same length.

    Returns:
        The correlation in ``[-1, 1]``, or ``nan`` if either side is constant.
    """
    from scipy import stats

    return _correlation(stats.spearmanr, pred, true)


def pearson(pred: Sequence[float], true: Sequence[float]) -> float:
    """Pearson's linear correlation.

    Args:
        pred: Predicted scores.
        true: Ground-truth scores, same length.

    Returns:
        The correlation in ``[-1, 1]``, or ``nan`` if either side is constant.
    """
    from scipy import stats

    return _correlation(stats.pearsonr, pred, true)


def relative_l2(
    pred: Sequence[float],
    true: Sequence[float],
    low: float | None = None,
    high: float | None = None,
) -> float:
    """Relative L2 distance: ``100 * mean(((pred - true) / (high - low)) ** 2)``.

    By default ``high`` and ``low`` are the highest and lowest of the true scores, the
    literature's convention (CoRe, MUSDL, TPT compute it over the evaluated test set); on
    UNLV-Dive (scores 18-103) a range from 0 would give 0.68x that value.

    Args:
        pred: Predicted scores.
        true: Ground-truth scores, same length.
        low: Lowest score of a fixed range; default ``min(true)``.
        high: Highest score of a fixed range; default ``max(true)``.

    Returns:
        The distance (0 is perfect; lower is better); ``nan`` when the range comes from the
        true scores and they are all equal.

    Raises:
        ValueError: If a fixed range has ``high <= low``, or on mismatched lengths.
    """
    p, t = _pair(pred, true)
    fixed = low is not None or high is not None
    low = float(t.min()) if low is None else low
    high = float(t.max()) if high is None else high
    if not high > low:
        if not fixed:
            return float("nan")
        raise ValueError(f"score range must have high > low (got {low}, {high})")
    return float(np.mean(((p - t) / (high - low)) ** 2) * 100.0)


def score_range(
    true: Sequence[float], fixed: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The ``(low, high)`` that :func:`relative_l2` divides by: ``fixed``, else the true scores'.

    Args:
        true: Ground-truth scores.
        fixed: A fixed ``(low, high)``, or ``None``.
    """
    if fixed is not None:
        return float(fixed[0]), float(fixed[1])
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("no samples to compare")
    return float(t.min()), float(t.max())


def mean_squared_error(pred: Sequence[float], true: Sequence[float]) -> float:
    """Mean squared error in the scores' own units."""
    p, t = _pair(pred, true)
    return float(np.mean((p - t) ** 2))


def accuracy(pred: Sequence[int], true: Sequence[int]) -> float:
    """Fraction of exact matches.

    Args:
        pred: Predicted class indices.
        true: Ground-truth class indices, same length.
    """
    p = np.asarray(pred).reshape(-1)
    t = np.asarray(true).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} ground-truth values")
    if p.size == 0:
        raise ValueError("no samples to compare")
    return float(np.mean(p == t))


def fisher_z_mean(correlations: Sequence[float]) -> float:
    """Average correlations through Fisher's z-transform (as for AQA-7's six actions).

    ``tanh(mean(arctanh(r)))``; values are clipped to ``+-0.9999`` so a perfect correlation
    does not become infinite; ``nan`` entries are ignored.

    Args:
        correlations: Correlation coefficients.

    Returns:
        The average correlation, or ``nan`` if there is none.
    """
    r = np.asarray([c for c in correlations if not math.isnan(c)], dtype=np.float64)
    if r.size == 0:
        return float("nan")
    return float(np.tanh(np.mean(np.arctanh(np.clip(r, -0.9999, 0.9999)))))


# ---------------------------------------------------------------------------------------------
# captions


def _require_java(what: str) -> None:
    if shutil.which("java") is None:
        raise AQAError(
            f"{what} needs Java, but no `java` executable is on PATH. Install a Java runtime "
            "(e.g. `apt-get install default-jre`) or leave it out (caption metrics: bleu, rouge, "
            "cider need no Java)."
        )


_meteor_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def caption_scores(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    metrics: Sequence[str] = CAPTION_METRICS,
    tokenize: bool = False,
) -> dict[str, float]:
    """COCO caption metrics of generated captions against references.

    Args:
        references: Sample key -> one or more reference captions.
        hypotheses: Sample key -> the generated caption (same keys as ``references``).
        metrics: Any of ``bleu`` (BLEU-1..4), ``meteor``, ``rouge`` (ROUGE-L), ``cider``.
        tokenize: Run the PTB tokenizer (lower-cases, strips punctuation; needs Java) first.
            Without it the captions are split on whitespace as they are.

    Returns:
        ``bleu_1`` .. ``bleu_4``, ``meteor``, ``rouge_l``, ``cider`` (those asked for).

    Raises:
        AQAError: If METEOR or the tokenizer is asked for and Java is missing.
        ValueError: On unknown metrics or mismatched keys.
    """
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown:
        raise ValueError(f"unknown caption metrics {unknown}; choose from {list(CAPTION_METRICS)}")
    if set(references) != set(hypotheses):
        raise ValueError("references and hypotheses must have the same keys")
    if not references:
        raise ValueError("no captions to score")
    if "meteor" in metrics:
        _require_java("The METEOR caption metric")
    if tokenize:
        _require_java("The PTB tokenizer (tokenize=True)")

    gts = {k: [str(r) for r in v] for k, v in references.items()}
    res = {k: [str(h)] for k, h in hypotheses.items()}
    if any(not v for v in gts.values()):
        raise ValueError("every sample needs at least one reference caption")
    if tokenize:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
        res = tok.tokenize({k: [{"caption": c} for c in v] for k, v in res.items()})

    out: dict[str, float] = {}
    if "bleu" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"bleu_{i + 1}": float(s) for i, s in enumerate(scores)})
    if "meteor" in metrics:
        with _meteor_lock:
            score, _ = _meteor().compute_score(gts, res)
        out["meteor"] = float(score)
    if "rouge" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    if "cider" in metrics:
        from pycocoevalcap.cider.cider import Cider

        out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out
