"""The tpt head: the kit, attention-centre ordering and sparsity, CoRe's decoding, learning."""

from __future__ import annotations

import pytest
import torch
from aqa_builtin.heads.core import CoReHead, CoReParams
from aqa_builtin.heads.tpt import TPTHead, TPTParams, attention_centres, order_loss, sparsity

from aqa_framework import testing
from aqa_framework.data.partners import fit_data
from aqa_framework.errors import DataError
from aqa_framework.targets import ArrayTarget

SMALL = {"dim": 16, "ffn": 16, "attention_heads": 2, "head_hidden": 8, "parts": 3}


def targets():
    diff = ArrayTarget(kind="difficulty", shape=(), low=1.0, high=4.0)
    return testing.tiny_targets(captions=False, arrays={"difficulty": diff})


def head(**kw):
    return TPTHead(TPTParams(**{**SMALL, "score_range": 30, **kw}), (6,), targets())


def rows(scores, diffs):
    return [
        {"key": f"k{i}", "scores": {"final_score": s}, "arrays": {"difficulty": d}, "classes": {}}
        for i, (s, d) in enumerate(zip(scores, diffs, strict=True))
    ]


def test_the_kit_with_exemplars():
    metrics = testing.check_head(
        TPTHead,
        targets(),
        {**SMALL, "difficulty": "difficulty", "score_range": 30},
        in_shape=(6,),
        num_clips=8,
        partners={"train": 1, "test": 3, "group_by": None},
    )
    assert "spearman" in metrics


def test_ordered_centres_with_the_margin_cost_nothing_else_the_loss_is_positive():
    t, k = 12, 3
    ordered = torch.zeros(2, t, k)
    ordered[:, [2, 5, 8], [0, 1, 2]] = 1.0  # centres 3, 6, 9: gaps 2, 3, 3, 3 to 1 and 12
    assert attention_centres(ordered)[0].tolist() == [3.0, 6.0, 9.0]
    assert order_loss(ordered, 2.0).item() == 0.0
    # a margin of 3 is missed only by the first centre's distance 2 to position 1
    assert order_loss(ordered, 3.0).item() == pytest.approx(1.0)
    swapped = ordered[:, :, [1, 0, 2]]  # centres 6, 3, 9
    assert order_loss(swapped, 2.0).item() == pytest.approx(5.0)  # 2 - (3 - 6)
    late = torch.zeros(1, t, k)
    late[0, 11, :] = 1.0  # all at the last clip: each gap 0 and T - c = 0
    assert order_loss(late, 1.0).item() == pytest.approx(3.0)  # 1 - 11 <0 : 0, then 1, 1, 1


def test_sparsity_is_the_spread_around_the_centre():
    peaked = torch.zeros(1, 5, 1)
    peaked[0, 2, 0] = 1.0
    assert sparsity(peaked).item() == 0.0
    spread = torch.zeros(1, 5, 1)
    spread[0, [0, 4], 0] = 0.5  # centre 3, each half 2 clips away
    assert sparsity(spread).item() == pytest.approx(2.0)
    uniform = torch.full((1, 5, 1), 0.2)
    assert sparsity(uniform).item() == pytest.approx(1.2)


def test_the_attention_terms_add_to_the_loss_with_their_weights():
    torch.manual_seed(0)
    h = head(dropout=0.0, score_range=100)
    h.fit(fit_data(rows([20.0, 40.0, 60.0, 80.0], [1.0] * 4), None))
    h.eval()
    b, k, n = 2, 2, 8
    partners = {
        "features": torch.randn(b, k, n, 6),
        "scores": {"final_score": torch.full((b, k), 40.0)},
    }
    batch = {"scores": {"final_score": torch.tensor([30.0, 50.0])}}
    out = h(torch.randn(b, n, 6), batch, partners)
    assert out["attention"].shape == (b, 2, n, 3)
    assert out["partner_attention"].shape == (b, k, 2, n, 3)
    assert torch.allclose(out["attention"].sum(-2), torch.ones(b, 2, 3))
    maps = torch.cat([out["attention"], out["partner_attention"].flatten(0, 1)])
    expected = sum(order_loss(maps[:, i], 3.2) + 0.05 * sparsity(maps[:, i]) for i in range(2))
    assert h.attention_loss(out).item() == pytest.approx(expected.item(), rel=1e-5)
    core = CoReHead.loss(h, out, batch)
    assert h.loss(out, batch).item() == pytest.approx(core.item() + expected.item(), rel=1e-5)
    off = head(dropout=0.0, order_weight=0.0, sparsity_weight=0.0)
    assert off.attention_loss(out).item() == 0.0


def test_decoding_and_voting_follow_core():
    core = CoReHead(CoReParams(hidden=8, score_range=30, difficulty="difficulty"), (6,), targets())
    h = head(difficulty="difficulty")
    data = fit_data(rows([20.0, 40.0, 60.0, 80.0, 30.0], [2.0] * 5), None)
    core.fit(data)
    h.fit(data)
    assert torch.equal(core.edges, h.edges)
    torch.manual_seed(1)
    outputs = {
        "leaf_logp": torch.randn(3, 4, 16).log_softmax(-1),
        "offset": torch.rand(3, 4, 16),
        "base": torch.rand(3, 4) * 30,
    }
    inputs = {"arrays": {"difficulty": torch.tensor([2.0, 2.5, 1.0])}, "scores": {}}
    assert h.predict(outputs, inputs) == core.predict(outputs, inputs)
    leaf = outputs["leaf_logp"].argmax(-1)
    lo, hi = h.edges[leaf, 0], h.edges[leaf, 1]
    pos = outputs["offset"].gather(-1, leaf.unsqueeze(-1)).squeeze(-1)
    # CoRe's rule: left + (right - left) * position (a zero-width leaf adds the position)
    votes = outputs["base"] + torch.where(hi > lo, lo + (hi - lo) * pos, lo + pos)
    expected = votes.mean(1) * torch.tensor([2.0, 2.5, 1.0])
    assert h.predict(outputs, inputs)["final_score"] == pytest.approx(expected.tolist(), rel=1e-5)


def test_errors_name_the_head():
    h = head()
    with pytest.raises(DataError, match="head 'tpt' needs exemplars"):
        h(torch.randn(2, 4, 6))
    with pytest.raises(DataError, match="head 'tpt' has no fitted intervals"):
        h.labels(torch.tensor([1.0]))
    bad = torch.randn(1, 4, 6)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(DataError, match="non-finite clip features"):
        h.parse(bad)
    with pytest.raises(ValueError, match="not divisible"):
        head(dim=10, attention_heads=4)


def test_a_tiny_model_learns_scores_relative_to_exemplars():
    """Clip features carry the score in the clips of one phase; ranking must emerge."""
    gen = torch.Generator().manual_seed(0)
    n_train, n_clips = 48, 8
    scores = torch.rand(n_train + 16, generator=gen) * 20 + 5
    feats = torch.randn(len(scores), n_clips, 6, generator=gen) * 0.1
    feats[:, 4:, 0] += (scores[:, None] - 15) / 5
    torch.manual_seed(0)
    h = head(dropout=0.0, score_range=30)
    h.fit(fit_data(rows(scores[:n_train].tolist(), [1.0] * n_train), None))
    opt = torch.optim.Adam(h.parameters(), lr=3e-3)
    h.train()
    for _ in range(150):
        q = torch.randint(0, n_train, (8,), generator=gen)
        e = torch.randint(0, n_train, (8, 1), generator=gen)
        batch = {"scores": {"final_score": scores[q]}}
        partners = {"features": feats[e], "scores": {"final_score": scores[e]}}
        loss = h.loss(h(feats[q], batch, partners), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    h.eval()
    test = torch.arange(n_train, len(scores))
    voters = torch.arange(5).expand(len(test), 5)
    with torch.no_grad():
        out = h(
            feats[test],
            None,
            {"features": feats[voters], "scores": {"final_score": scores[voters]}},
        )
    pred = torch.tensor(h.predict(out)["final_score"])
    rho = rank_correlation(pred, scores[test])
    assert rho > 0.8, rho


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])
