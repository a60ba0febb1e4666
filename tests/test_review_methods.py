"""Method conventions checked against the published code: CoRe's loss and interval fitting,
non-finite model outputs in arg-max decoding, and difficulties that cannot divide."""

from __future__ import annotations

import math

import pytest
import torch
from aqa_builtin.heads.core import CoReHead, CoReParams
from aqa_builtin.heads.distribution import Bins, MUSDLHead, USDLHead

from aqa_framework import testing
from aqa_framework.data.partners import FitData, fit_data
from aqa_framework.errors import DataError
from aqa_framework.targets import ArrayTarget

EDGES = [[-30.0, -2.0], [-2.0, 0.0], [0.0, 2.0], [2.0, 30.0]]


def core_head(**kw) -> CoReHead:
    diff = ArrayTarget(kind="difficulty", shape=(), low=0.0, high=4.0)
    targets = testing.tiny_targets(captions=False, arrays={"difficulty": diff})
    return CoReHead(CoReParams(**{"hidden": 8, "score_range": 30, **kw}), (6,), targets)


def rows(scores, diffs, groups=None):
    groups = groups or [0] * len(scores)
    return [
        {"key": f"k{i}", "scores": {"final_score": s}, "arrays": {"difficulty": d},
         "classes": {"g": g}}
        for i, (s, d, g) in enumerate(zip(scores, diffs, groups, strict=True))
    ]


# -- CoRe ------------------------------------------------------------------------------------


def test_core_position_loss_is_the_sum_over_leaves_of_each_leafs_mean():
    """CoRe adds, per leaf, the MSE over the pairs of that leaf: with two pairs in two
    leaves that is the sum of their squared errors, with two in one leaf their mean."""
    h = core_head(depth=3)
    h.edges.copy_(torch.tensor(EDGES))
    logp = torch.full((2, 1, 4), math.log(0.25))  # NLL = log 4 whatever the leaf
    offset = torch.zeros(2, 1, 4)
    base = torch.zeros(2, 1)

    def loss(own):
        outputs = {"leaf_logp": logp, "offset": offset, "base": base}
        return float(h.loss(outputs, {"scores": {"final_score": torch.tensor(own)}}))

    # deltas 1 (leaf 2, position 0.5) and 16 (leaf 3, position 0.5): 0.25 + 0.25
    assert loss([1.0, 16.0]) == pytest.approx(math.log(4) + 0.5, abs=1e-6)
    # both in leaf 2 at positions 0.5 and 0.75: mean (0.25 + 0.5625) / 2
    assert loss([1.0, 1.5]) == pytest.approx(math.log(4) + 0.40625, abs=1e-6)


def test_core_intervals_count_each_pair_once():
    """Quantiles over the i < j pairs (CoRe's Group_helper), not both orders of each."""
    h = core_head(score_range=100)  # depth 5: 8 positive leaves, edges at q = 1/8 .. 7/8
    scores = [0.0, 1.0, 3.0, 7.0]
    h.fit(fit_data(rows(scores, [1.0] * 4)))
    pairs = sorted(abs(a - b) for i, a in enumerate(scores) for b in scores[i + 1:])
    assert pairs == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0]
    expected = [pairs[int(i / 8 * (len(pairs) - 1))] for i in range(1, 8)]
    # both orders of each pair would move the 3/8 edge from 2 to 3
    assert expected[2] == 2.0
    assert h.edges[8:15, 1].tolist() == expected
    assert h.edges[9:, 0].tolist() == expected


def test_core_difficulty_must_be_a_finite_positive_divisor():
    h = core_head(difficulty="difficulty", depth=3)
    with pytest.raises(DataError, match=r"finite number > 0, but sample\(s\) k1 \(0\)"):
        h.fit(fit_data(rows([10.0, 20.0, 30.0], [2.0, 0.0, 2.0])))
    h.fit(fit_data(rows([10.0, 20.0, 30.0], [2.0, 2.0, 2.0])))
    partners = {
        "features": torch.randn(1, 2, 6),
        "scores": {"final_score": torch.tensor([[10.0, 20.0]])},
        "arrays": {"difficulty": torch.tensor([[2.0, 0.0]])},
        "key": [["e1", "e2"]],
    }
    with pytest.raises(DataError, match=r"e2 \(0\)"):
        h(torch.randn(1, 6), None, partners)


def test_core_fit_refuses_samples_without_the_difficulty():
    h = core_head(difficulty="difficulty", depth=3)
    data = FitData(["a", "b", "c"])
    data.scores["final_score"] = [10.0, 20.0, 30.0]
    data.arrays["difficulty"] = [2.0, 2.0]  # one sample lacks it
    with pytest.raises(DataError, match="1 of the 3 training samples have no 'difficulty'"):
        h.fit(data)


def test_core_score_range_below_the_differences_is_refused():
    h = core_head(depth=3, score_range=5)
    with pytest.raises(DataError, match="score_range 5 is below"):
        h.fit(fit_data(rows([0.0, 20.0, 40.0, 60.0], [1.0] * 4)))


def test_core_score_range_target_feeds_exemplar_scores_as_cores_normalised_ones():
    """AQA-7 in CoRe: scores normalised to 0-100, exemplar score / 100 in the pair vector;
    on raw scores with score_range 'target' that is (raw - low) / (high - low)."""
    targets = testing.tiny_targets(captions=False, scores={"final_score": (12.3, 16.87)})
    h = CoReHead(CoReParams(hidden=8, score_range="target", depth=3), (6,), targets)
    h.edges.copy_(torch.tensor(EDGES))
    seen = []
    h.first[0].register_forward_pre_hook(lambda module, args: seen.append(args[0][:, -1]))
    partners = {"features": torch.randn(1, 2, 6),
                "scores": {"final_score": torch.tensor([[12.3, 16.87]])}}
    h(torch.randn(1, 6), None, partners)
    assert h.theta == pytest.approx(4.57)
    assert seen[0].tolist() == pytest.approx([0.0, 1.0], abs=1e-5)


def test_core_decodes_a_nan_leaf_probability_as_nan():
    h = core_head(depth=3)
    h.edges.copy_(torch.tensor(EDGES))
    logp = torch.tensor([[0.1, float("nan"), 0.2, 0.3], [-3.0, -2.0, -0.5, -1.0]]).log_softmax(-1)
    offset = torch.full((2, 4), 0.5)
    delta = h.decode(logp, offset)
    assert math.isnan(float(delta[0])) and float(delta[1]) == pytest.approx(1.0)


# -- USDL / MUSDL -------------------------------------------------------------------------------


def test_argmax_decoding_does_not_turn_nan_into_a_score():
    bins = Bins(0.0, 10.0, 11)
    logp = torch.tensor([[0.0, float("nan"), -1.0] + [-5.0] * 8, [-5.0] * 10 + [0.0]])
    values = bins.decode(logp, "argmax")
    assert math.isnan(float(values[0])) and float(values[1]) == 10.0
    # -inf is a probability of 0, not a broken output
    peaked = torch.full((1, 11), float("-inf"))
    peaked[0, 3] = 0.0
    assert bins.decode(peaked, "argmax").tolist() == [3.0]


def test_musdl_sample_with_a_nan_mark_gets_a_nan_score_not_the_other_judges_sum():
    """Sorting would put the nan among the dropped highest marks; the score must be nan."""
    marks_target = ArrayTarget(kind="judge_scores", shape=(7,), low=0, high=10, info={"step": 0.5})
    targets = testing.tiny_targets(
        scores={"final_score": (0.0, 104.5)},
        arrays={"judge_scores": marks_target, "difficulty": ArrayTarget(kind="difficulty")},
    )
    musdl = MUSDLHead(MUSDLHead.parse_params({"rule": "diving", "hidden": [4]}), (8,), targets)
    marks = torch.tensor([[9.0] * 7, [8.0] * 7])
    log_probs = musdl.bins.soft_labels(marks, 0.3).log()
    log_probs[0, 6, 2] = float("nan")
    pred = musdl.predict({"log_probs": log_probs}, {"arrays": {"difficulty": torch.ones(2)}})
    assert math.isnan(pred["final_score"][0])
    assert pred["final_score"][1] == pytest.approx(24.0)
    usdl = USDLHead(USDLHead.parse_params({"hidden": [4]}), (8,), targets)
    out = usdl.predict({"log_probs": torch.full((1, 101), float("nan"))})
    assert math.isnan(out["final_score"][0])
