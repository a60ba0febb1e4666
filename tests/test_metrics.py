import math
import shutil

import numpy as np
import pytest
from scipy import stats

from aqa_framework import metrics as M
from aqa_framework.errors import AQAError

PRED = [81.2, 45.0, 60.3, 92.1, 30.0, 71.5]
TRUE = [79.0, 50.5, 55.0, 95.0, 28.5, 75.0]


def test_correlations_match_scipy():
    assert M.spearman(PRED, TRUE) == pytest.approx(stats.spearmanr(PRED, TRUE)[0])
    assert M.pearson(PRED, TRUE) == pytest.approx(stats.pearsonr(PRED, TRUE)[0])
    assert M.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlation_of_constant_predictions_is_nan():
    assert math.isnan(M.spearman([5, 5, 5], [1, 2, 3]))
    assert math.isnan(M.pearson([1, 2, 3], [4, 4, 4]))


def test_relative_l2_convention():
    p, t = np.array(PRED), np.array(TRUE)
    expected = np.mean(((p - t) / (104.5 - 0.0)) ** 2) * 100
    assert M.relative_l2(PRED, TRUE, 0.0, 104.5) == pytest.approx(expected)
    assert M.relative_l2(TRUE, TRUE, 0, 100) == 0.0
    with pytest.raises(ValueError, match="high > low"):
        M.relative_l2(PRED, TRUE, 10, 10)


def test_relative_l2_divides_by_the_range_of_the_true_scores_by_default():
    # UNLV-Dive scores span 18-103: the literature (CoRe, MUSDL, TPT) divides by 103 - 18
    true = np.array([18.0, 40.0, 77.5, 103.0])
    pred = true + np.array([5.0, -3.0, 2.0, -6.0])
    expected = np.mean(((pred - true) / (103 - 18)) ** 2) * 100
    assert M.relative_l2(pred, true) == pytest.approx(expected)
    assert M.score_range(true) == (18.0, 103.0)
    assert M.score_range(true, (0, 110)) == (0.0, 110.0)
    from_zero = M.relative_l2(pred, true, 0.0, 103.0)  # the old, fixed 0-based range
    assert from_zero / M.relative_l2(pred, true) == pytest.approx((85 / 103) ** 2)  # 0.68x
    assert math.isnan(M.relative_l2([1.0, 2.0], [5.0, 5.0]))  # no spread, no range


def test_accuracy_mse_and_length_checks():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert M.mean_squared_error([1.0, 3.0], [2.0, 1.0]) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="3 predictions but 2"):
        M.accuracy([0, 1, 2], [0, 1])


def test_fisher_z_mean():
    rs = [0.9, 0.5, 0.7]
    assert M.fisher_z_mean(rs) == pytest.approx(np.tanh(np.mean(np.arctanh(rs))))
    assert M.fisher_z_mean([0.6]) == pytest.approx(0.6)
    assert M.fisher_z_mean([1.0, 1.0]) == pytest.approx(0.9999)
    assert M.fisher_z_mean([0.5, float("nan")]) == pytest.approx(0.5)
    assert math.isnan(M.fisher_z_mean([]))


REFS = {
    "a": ["the diver enters the water with a big splash"],
    "b": ["nice tuck position and a clean entry", "a clean entry after the tuck"],
    "c": ["he over rotates on the entry"],
}
HYPS = {"a": "the diver enters with a splash", "b": "a clean entry", "c": ""}


def test_caption_scores_equal_pycocoevalcap_without_java():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    got = M.caption_scores(REFS, HYPS, ["bleu", "rouge", "cider"])
    res = {k: [v] for k, v in HYPS.items()}
    bleu, _ = Bleu(4).compute_score(REFS, res, verbose=0)
    assert [got[f"bleu_{i}"] for i in range(1, 5)] == pytest.approx(bleu)
    assert got["rouge_l"] == pytest.approx(Rouge().compute_score(REFS, res)[0])
    assert got["cider"] == pytest.approx(Cider().compute_score(REFS, res)[0])
    assert "meteor" not in got


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs a Java runtime")
def test_meteor_equals_pycocoevalcap(monkeypatch):
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()  # one Java process (it takes seconds to start) for both paths
    expected, _ = scorer.compute_score(REFS, {k: [v] for k, v in HYPS.items()})
    monkeypatch.setattr(M, "_meteor", lambda: scorer)
    got = M.caption_scores(REFS, HYPS, ["meteor"])
    assert got == {"meteor": pytest.approx(expected)}
    assert 0 < got["meteor"] < 1


def test_meteor_without_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(M.shutil, "which", lambda name: None)
    with pytest.raises(AQAError, match="METEOR caption metric needs Java"):
        M.caption_scores(REFS, HYPS, ["bleu", "meteor"])
    assert "bleu_4" in M.caption_scores(REFS, HYPS, ["bleu"])


@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs a Java runtime")
def test_ptb_tokenize_equals_pycocoevalcap_with_one_java_process(monkeypatch):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = [
        "He's got an 84 1/5, doesn't he?",
        "Nice TUCK -- and a clean entry.",
        "cannot gonna",  # plain words that the tokenizer splits
        "a clean entry . the judges give mostly eights .",  # plain: no Java needed
    ]
    expected = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    calls: list[int] = []
    run = M._run_ptb
    monkeypatch.setattr(M, "_ptb_cache", {})
    monkeypatch.setattr(M, "_run_ptb", lambda todo: (calls.append(len(todo)), run(todo)))
    got = M.ptb_tokenize(texts)
    assert got == [expected[i][0] for i in range(len(texts))]
    assert got[2] == "can not gon na" and calls == [3]  # one process for the three
    scores = M.caption_scores({0: [texts[0]], 1: [texts[1]]}, {0: texts[1], 1: texts[0]},
                              ["bleu"], tokenize=True)
    assert scores["bleu_1"] > 0 and calls == [3]  # remembered: no second process


def test_plain_captions_are_tokenized_without_java(monkeypatch):
    monkeypatch.setattr(M, "_ptb_cache", {})
    monkeypatch.setattr(M.shutil, "which", lambda name: None)
    plain = ["a clean entry .", "  the judges give , mostly eights !", ""]
    assert not M.ptb_needs_java(plain)
    assert M.ptb_tokenize(plain) == ["a clean entry", "the judges give mostly eights", ""]
    assert M.ptb_needs_java(["a clean Entry"]) and M.ptb_needs_java(["cannot"])
    with pytest.raises(AQAError, match="PTB tokenizer .* needs Java"):
        M.ptb_tokenize(["He's got it."])


def test_caption_scores_reject_bad_input():
    with pytest.raises(ValueError, match="unknown caption metrics"):
        M.caption_scores(REFS, HYPS, ["spice"])
    with pytest.raises(ValueError, match="same keys"):
        M.caption_scores(REFS, {"a": "x"}, ["bleu"])


def test_correlations_of_non_finite_values_are_nan_not_a_ranking():
    """scipy would rank +inf as the best prediction: a broken model must not look good."""
    import math

    from aqa_framework.metrics import pearson, spearman

    true = [1.0, 2.0, 3.0, 4.0]
    assert spearman([1.0, 2.0, 3.0, 4.0], true) == 1.0
    assert math.isnan(spearman([1.0, 2.0, 3.0, float("inf")], true))
    assert math.isnan(spearman([1.0, float("nan"), 3.0, 4.0], true))
    assert math.isnan(pearson([1.0, 2.0, 3.0, float("-inf")], true))
