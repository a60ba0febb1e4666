"""Metric functions shared by the task heads and the engine.

Scores are compared with rank and linear correlation and the relative L2 distance; class
predictions with accuracy; captions with the COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L,
CIDEr) through ``pycocoevalcap``. Conventions:

* Correlations are in ``[-1, 1]`` (multiply by 100 for the paper's tables); a correlation of
  a constant sequence is undefined and returned as ``nan``.
* :func:`relative_l2` follows the AQA literature (CoRe, MUSDL, TPT): the mean over samples of
  ``((pred - true) / (high - low)) ** 2``, times 100, where ``high`` and ``low`` are the highest
  and lowest true scores of the evaluated samples, unless a fixed range is given.
* Accuracies are fractions in ``[0, 1]``; so is :func:`pairwise_accuracy`, the share of
  (better, worse) pairs whose better video scores higher (ties count as wrong).
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import threading
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

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
    if p.size < 2 or not (np.isfinite(p).all() and np.isfinite(t).all()):
        return float("nan")  # an infinite prediction must not rank as the best one
    if np.all(p == p[0]) or np.all(t == t[0]):
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
        The correlation in ``[-1, 1]``, or ``nan`` if either side is constant or holds a
        non-finite value (an infinite prediction would otherwise rank as the best).
    """
    from scipy import stats

    return _correlation(stats.spearmanr, pred, true)


def pearson(pred: Sequence[float], true: Sequence[float]) -> float:
    """Pearson's linear correlation.

    Args:
        pred: Predicted scores.
        true: Ground-truth scores, same length.

    Returns:
        The correlation in ``[-1, 1]``, or ``nan`` if either side is constant or holds a
        non-finite value (an infinite prediction would otherwise rank as the best).
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


def pairwise_accuracy(better: Sequence[float], worse: Sequence[float]) -> float:
    """Share of pairs ordered correctly: ``score(better) > score(worse)`` (RAAN, EPIC-Skills).

    A tie (equal scores) counts as wrong, so a model that gives every video the same score
    gets 0, not 0.5.

    Args:
        better: Predicted score of each pair's more skilled video.
        worse: Predicted score of each pair's less skilled video.

    Returns:
        The share in ``[0, 1]``, ``nan`` without pairs or if a score is not finite.
    """
    b = np.asarray(better, dtype=np.float64)
    w = np.asarray(worse, dtype=np.float64)
    if b.shape != w.shape:
        raise ValueError(f"better and worse differ in length ({b.size} vs {w.size})")
    if b.size == 0 or not (np.isfinite(b).all() and np.isfinite(w).all()):
        return float("nan")
    return float(np.mean(b > w))


def pairwise_accuracy_by_group(
    better: Sequence[float], worse: Sequence[float], groups: Sequence[Any]
) -> dict[Any, float]:
    """:func:`pairwise_accuracy` of each group of pairs (e.g. per task), in first-seen order."""
    out: dict[Any, float] = {}
    for group in dict.fromkeys(groups):
        chosen = [i for i, g in enumerate(groups) if g == group]
        out[group] = pairwise_accuracy([better[i] for i in chosen], [worse[i] for i in chosen])
    return out


_LOWER_IS_BETTER = re.compile(r"(^|[._])(l1|l2|rel_l2|mse|mae|rmse|error|err|loss)($|[._])")


def direction_from_name(metric: str) -> Literal["max", "min"]:
    """Guess from its name whether a metric is better higher or lower.

    The rule for heads that do not declare their metrics' directions
    (:meth:`aqa_framework.interfaces.TaskHead.metric_direction`): a name with a component
    ``l1``, ``l2``, ``rel_l2``, ``mse``, ``mae``, ``rmse``, ``error``, ``err`` or ``loss``
    (separated by ``.`` or ``_``) is lower-is-better, any other higher-is-better.

    Args:
        metric: Metric name (``rel_l2``, ``final_score_mse``).

    Returns:
        ``"min"`` (lower is better) or ``"max"`` (higher is better).
    """
    return "min" if _LOWER_IS_BETTER.search(metric) else "max"


# ---------------------------------------------------------------------------------------------
# captions


def _require_java(what: str) -> None:
    if shutil.which("java") is None:
        raise AQAError(
            f"{what} needs Java, but no `java` executable is on PATH. Install a Java runtime "
            "(e.g. `apt-get install default-jre`) or leave it out (caption metrics: bleu, rouge, "
            "cider need no Java)."
        )


class CaptionMetricWarning(UserWarning):
    """Caption metrics were computed another way than asked (e.g. no Java for the tokenizer)."""


def java_available() -> bool:
    """Whether a ``java`` executable is on ``PATH`` (METEOR and the PTB tokenizer need it)."""
    return shutil.which("java") is not None


PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-"]
    + [".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
"""Tokens that the COCO caption evaluation drops after PTB tokenization (pycocoevalcap's list)."""

_PTB_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"})
_PTB_PLAIN_PUNCTUATION = frozenset({".", ",", "?", "!", ";", ":"})
_PTB_WORD = re.compile(r"[a-z]+")
_ptb_cache: dict[str, str] = {}
_PTB_CACHE_SIZE = 200_000


def _ptb_plain(text: str) -> str | None:
    """The PTB tokenization of ``text`` if it is plain enough to need no Java, else ``None``.

    Lower-case ASCII words and stand-alone ``. , ? ! ; :`` come out of the PTB tokenizer as
    they are (checked on every such word of the MTL-AQA vocabulary), except the six words it
    splits (``cannot`` -> ``can not``, ``gonna`` -> ``gon na`` ...); the punctuation is then
    dropped, as in the COCO evaluation.
    """
    if not text.strip():
        return ""
    words = []
    for token in text.split(" "):
        if not token or token in _PTB_PLAIN_PUNCTUATION:
            continue
        if token in _PTB_SPLIT_WORDS or not _PTB_WORD.fullmatch(token):
            return None
        words.append(token)
    return " ".join(words)


def _one_line(text: object) -> str:
    """A caption as one line of tokenizer input (line breaks become spaces, as pycocoevalcap)."""
    return str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def ptb_needs_java(texts: Iterable[str]) -> bool:
    """Whether :func:`ptb_tokenize` has to start Java for these texts."""
    lines = (_one_line(t) for t in texts)
    return any(line not in _ptb_cache and _ptb_plain(line) is None for line in lines)


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenize captions as the COCO caption evaluation does (pycocoevalcap's PTBTokenizer).

    Stanford's PTBTokenizer (``-preserveLines -lowerCase``, the jar shipped with
    pycocoevalcap) splits and lower-cases each caption, then the tokens of
    :data:`PTB_PUNCTUATION` are dropped. Every text that needs it goes to ONE Java process
    (a JVM takes about a second to start); plain lower-case texts are tokenized without Java
    (same result), and results are remembered for the process, so the references of a split
    are tokenized once per run.

    Args:
        texts: Captions.

    Returns:
        The tokenized captions, words joined by single spaces.

    Raises:
        AQAError: If Java is needed but missing, or the tokenizer fails.
    """
    if len(_ptb_cache) > _PTB_CACHE_SIZE:
        _ptb_cache.clear()
    lines = [_one_line(t) for t in texts]
    todo = []
    for line in lines:
        if line not in _ptb_cache:
            plain = _ptb_plain(line)
            if plain is None:
                todo.append(line)
            else:
                _ptb_cache[line] = plain
    if todo:
        _run_ptb(list(dict.fromkeys(todo)))
    return [_ptb_cache[line] for line in lines]


def _run_ptb(texts: list[str]) -> None:
    """Tokenize ``texts`` (no newlines) with one Java process into the cache."""
    import subprocess
    from pathlib import Path

    _require_java("The PTB tokenizer of the COCO caption evaluation")
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    cmd = [
        "java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
        "-preserveLines", "-lowerCase", "-encoding", "utf-8",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, input="\n".join(texts).encode("utf-8"), capture_output=True, check=False
        )
    except OSError as exc:
        raise AQAError(f"cannot run the PTB tokenizer (java): {exc}") from None
    lines = proc.stdout.decode("utf-8").split("\n")
    if proc.returncode != 0 or len(lines) < len(texts):
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AQAError(
            f"the PTB tokenizer (java) failed with exit status {proc.returncode}"
            + (f": {err[-1]}" if err else "")
        )
    for text, line in zip(texts, lines, strict=False):
        # split on spaces only, as pycocoevalcap: "84 1/5" is one token "84\xa01/5"
        _ptb_cache[text] = " ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION)


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

    Papers report these numbers with ``tokenize=True`` (the COCO caption evaluation: PTB
    tokenizer on references and hypotheses, see :func:`ptb_tokenize`) and complete
    references; the ``caption`` head does so by default.

    Args:
        references: Sample key -> one or more reference captions.
        hypotheses: Sample key -> the generated caption (same keys as ``references``).
        metrics: Any of ``bleu`` (BLEU-1..4), ``meteor``, ``rouge`` (ROUGE-L), ``cider``.
        tokenize: Run the PTB tokenizer first (lower-cases, splits off punctuation and drops
            it; Java, unless every caption is plain lower-case words). Without it the captions
            are split on whitespace as they are.

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

    gts = {k: [str(r) for r in v] for k, v in references.items()}
    res = {k: [str(h)] for k, h in hypotheses.items()}
    if any(not v for v in gts.values()):
        raise ValueError("every sample needs at least one reference caption")
    if tokenize:
        keys = list(gts)
        flat = [c for k in keys for c in gts[k]] + [res[k][0] for k in keys]
        tokens = iter(ptb_tokenize(flat))
        gts = {k: [next(tokens) for _ in gts[k]] for k in keys}
        res = {k: [next(tokens)] for k in keys}

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
