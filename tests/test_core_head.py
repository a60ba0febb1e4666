"""The core head: fitted intervals, labels and decoding, both pair orders, voting, usingDD."""

from __future__ import annotations

import pytest
import torch
from aqa_builtin.heads.core import CoReHead, CoReParams

from aqa_framework import testing
from aqa_framework.data.partners import fit_data
from aqa_framework.errors import DataError
from aqa_framework.targets import ArrayTarget


def targets():
    diff = ArrayTarget(kind="difficulty", shape=(), low=1.0, high=4.0)
    return testing.tiny_targets(captions=False, arrays={"difficulty": diff})


def head(**kw):
    params = CoReParams(**{"hidden": 8, "score_range": 30, **kw})
    return CoReHead(params, (6,), targets())


def rows(scores, diffs, groups):
    return [
        {
            "key": f"k{i}",
            "scores": {"final_score": s},
            "arrays": {"difficulty": d},
            "classes": {"g": g},
        }
        for i, (s, d, g) in enumerate(zip(scores, diffs, groups, strict=True))
    ]


def test_intervals_are_mirrored_equal_count_quantiles_from_0_to_theta():
    edges = CoReHead.intervals(torch.arange(0.0, 101.0), 8, 200.0)
    assert edges.shape == (8, 2)
    assert edges[4].tolist() == [0.0, 25.0] and edges[7].tolist() == [75.0, 200.0]
    assert torch.equal(edges[:4], -edges[4:].flip(0).flip(1))


def test_fit_uses_pairs_within_a_group_and_is_a_checkpointed_buffer():
    h = head(depth=3)
    assert torch.isnan(h.edges).all()
    with pytest.raises(DataError, match="no fitted intervals"):
        h.labels(torch.tensor([1.0]))
    h.fit(fit_data(rows([10.0, 12.0, 50.0, 80.0], [1, 1, 1, 1], [0, 0, 1, 1]), "g"))
    # same-group differences: |10-12| = 2 and |50-80| = 30; across groups never
    assert h.edges.tolist() == [[-30.0, -2.0], [-2.0, 0.0], [0.0, 2.0], [2.0, 30.0]]
    assert "edges" in h.state_dict()
    other = head(depth=3)
    other.load_state_dict(h.state_dict())
    assert torch.equal(other.edges, h.edges)


def test_labels_and_decoding_round_trip():
    h = head(depth=3)
    h.edges.copy_(torch.tensor([[-30.0, -2.0], [-2.0, 0.0], [0.0, 2.0], [2.0, 30.0]]))
    delta = torch.tensor([-10.0, -1.0, 0.0, 1.5, 16.0, 45.0])
    leaf, pos = h.labels(delta)
    assert leaf.tolist() == [0, 1, 2, 2, 3, 3]
    logp = torch.nn.functional.one_hot(leaf, 4).float().log()
    offset = pos.unsqueeze(-1).expand(-1, 4)
    assert h.decode(logp, offset).tolist() == pytest.approx(delta.tolist())


def test_training_uses_both_orders_and_prediction_votes_times_difficulty():
    torch.manual_seed(0)
    h = head(difficulty="difficulty")
    h.fit(fit_data(rows([20.0, 40.0, 60.0, 80.0], [2, 2, 2, 2], [0] * 4), "g"))
    b, k = 3, 4
    partners = {
        "features": torch.randn(b, k, 6),
        "scores": {"final_score": torch.full((b, k), 40.0)},
        "arrays": {"difficulty": torch.full((b, k), 2.0)},
    }
    batch = {
        "scores": {"final_score": torch.tensor([30.0, 50.0, 70.0])},
        "arrays": {"difficulty": torch.tensor([2.0, 2.5, 1.0])},
    }
    out = h(torch.randn(b, 6), batch, partners)
    assert out["leaf_logp"].shape == (b, k, 16) and "rev_leaf_logp" in out
    assert torch.allclose(out["leaf_logp"].exp().sum(-1), torch.ones(b, k))
    loss = h.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and h.first[0].weight.grad is not None
    evaluated = h(torch.randn(b, 6), None, partners)
    assert "rev_leaf_logp" not in evaluated
    inputs = {"arrays": {"difficulty": torch.tensor([2.0, 2.5, 1.0])}, "scores": {}}
    pred = h.predict(evaluated, inputs)["final_score"]
    votes = evaluated["base"] + h.decode(evaluated["leaf_logp"], evaluated["offset"])
    expected = (votes.mean(1) * torch.tensor([2.0, 2.5, 1.0])).tolist()
    assert pred == pytest.approx(expected)
    with pytest.raises(DataError, match="multiplies its prediction by the sample's 'difficulty'"):
        h.predict(evaluated)
    assert CoReHead.prediction_inputs(h.params) == ["difficulty"]


def test_score_range_target_is_the_score_range_width():
    assert head(score_range="target").theta == 100.0


def test_check_targets_asks_for_the_difficulty():
    params = CoReParams(difficulty="dd")
    assert "dd" in CoReHead.check_targets(params, targets())
    assert CoReHead.check_targets(CoReParams(difficulty="difficulty"), targets()) is None
