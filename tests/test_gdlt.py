"""The gdlt head, the transformer aggregator, the identity backbone and feature-input models."""

from __future__ import annotations

import pytest
import torch

from aqa_framework.errors import DataError, SpecError
from aqa_framework.targets import ScoreTarget, Targets
from aqa_framework.testing import check_aggregator, check_backbone, check_head


def _targets(*names: str) -> Targets:
    return Targets(scores={n: ScoreTarget(low=0.0, high=25.0) for n in names or ("total",)})


def test_gdlt_head_contract_and_defaults(one_intra_op_thread):
    from aqa_builtin.heads.gdlt import GDLTHead

    metrics = check_head(
        GDLTHead,
        _targets("total"),
        {"in_hidden": 16, "dim": 8, "ffn": 16},
        in_shape=(12,),
        num_clips=5,
    )
    assert {"spearman", "rel_l2", "mse"} <= set(metrics)
    params = GDLTHead.parse_params({})
    # the published settings
    assert (params.score_scale, params.queries, params.dim, params.in_hidden) == (25.0, 4, 256, 512)
    layers = (params.encoder_layers, params.decoder_layers)
    assert layers == (1, 2) and (params.heads, params.ffn) == (1, 768)
    assert params.dropout == 0.3 and params.triplet_weight == 1.0 and params.triplet_margin == 1.0


def test_gdlt_score_is_grade_weighted_and_scaled():
    from aqa_builtin.heads.gdlt import GDLTHead

    head = GDLTHead(GDLTHead.parse_params({"in_hidden": 8, "dim": 8, "ffn": 8, "score_scale": 10}),
                    (6,), _targets("total")).eval()
    out = head(torch.randn(3, 7, 6))
    weights = out["weights"]
    assert torch.allclose(weights.sum(1), torch.ones(3))
    assert torch.allclose(out["score"], (weights * torch.linspace(0, 1, 4)).sum(1))
    assert ((out["score"] >= 0) & (out["score"] <= 1)).all()
    assert out["queries"].shape == (3, 4, 8)
    preds = head.predict(out)["total"]
    assert preds == pytest.approx((out["score"] * 10).tolist())
    # the loss compares with score / score_scale
    batch = {"scores": {"total": out["score"].detach() * 10}}
    head.params = head.params.model_copy(update={"triplet_weight": 0.0})
    assert float(head.loss(out, batch)) == pytest.approx(0.0, abs=1e-10)


def test_gdlt_transformer_weights_start_xavier_uniform():
    """As nn.Transformer (and GDLT's copy of it): every weight matrix xavier-uniform."""
    from aqa_builtin.heads.gdlt import GDLTHead

    torch.manual_seed(0)
    head = GDLTHead(GDLTHead.parse_params({"in_hidden": 8, "dim": 16, "ffn": 48}), (6,),
                    _targets("total"))
    for linear in (head.encoder.layers[0].linear1, head.decoder.layers[1].linear2):
        fan_out, fan_in = linear.weight.shape
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        largest = float(linear.weight.detach().abs().max())
        # nn.Linear's own initialisation stays below 1 / sqrt(fan_in) (0.25 or 0.144 here)
        assert 1.0 / fan_in**0.5 < largest <= bound


def test_gdlt_needs_a_named_score_when_several():
    from aqa_builtin.heads.gdlt import GDLTHead

    several = _targets("difficulty", "execution")
    problem = GDLTHead.check_targets(GDLTHead.parse_params({}), several)
    assert problem and "set score" in problem
    assert GDLTHead.check_targets(GDLTHead.parse_params({"score": "execution"}), several) is None
    missing = GDLTHead.check_targets(GDLTHead.parse_params({"score": "nope"}), several)
    assert missing and "nope" in missing
    head = GDLTHead(GDLTHead.parse_params({"dim": 8, "in_hidden": 8, "ffn": 8}),
                    (4,), _targets("difficulty", "total"))
    assert head.score_name == "total"


def test_gdlt_mask_hides_padding():
    """With mask_padding, what lies in the padded clips does not change the score."""
    from aqa_builtin.heads.gdlt import GDLTHead

    torch.manual_seed(0)
    head = GDLTHead(GDLTHead.parse_params({"dim": 8, "in_hidden": 8, "ffn": 8, "dropout": 0.0}),
                    (4,), _targets("total")).eval()
    x = torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    y = x.clone()
    y[1, 4:] = 100.0
    a = head(x, {"video_mask": mask})["score"]
    b = head(y, {"video_mask": mask})["score"]
    assert torch.allclose(a, b, atol=1e-5)
    c = head(y, None)["score"]  # unmasked, the padding counts
    assert not torch.allclose(a[1], c[1], atol=1e-4)
    # a mask with nothing padded is dropped (faster attention) and changes nothing
    full = torch.ones(2, 6, dtype=torch.bool)
    torch.testing.assert_close(head(x, {"video_mask": full})["score"], head(x, None)["score"])


def test_hardest_triplet_loss():
    from aqa_builtin.heads.gdlt import hardest_triplet_loss

    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]])
    assert float(hardest_triplet_loss(apart, labels, 1.0, "euclidean")) == pytest.approx(0.0)
    mixed = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.5, 0.0], [3.5, 0.0]])
    # anchor 0: hardest positive 3.0, hardest negative 0.5 -> 3.5
    assert float(hardest_triplet_loss(mixed, labels, 1.0, "euclidean")) > 1.0


def test_hardest_triplet_loss_is_on_cosine_distances_by_default():
    """GDLT's code measures 1 - cosine similarity: only directions count, not lengths."""
    from aqa_builtin.heads.gdlt import GDLTParams, hardest_triplet_loss

    labels = torch.tensor([0, 0, 1, 1])
    # same directions within a label, opposite across: cosine distances 0 and 2
    opposite = torch.tensor([[1.0, 0.0], [5.0, 0.0], [-1.0, 0.0], [-9.0, 0.0]])
    assert float(hardest_triplet_loss(opposite, labels, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(hardest_triplet_loss(opposite, labels, 1.0, "euclidean")) > 0.0
    # orthogonal grades: d(a, n) = 1, d(a, p) = 0 -> relu(0 - 1 + 1.5) = 0.5 for every anchor
    square = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    assert float(hardest_triplet_loss(square, labels, 1.5)) == pytest.approx(0.5, abs=1e-6)
    assert GDLTParams().triplet_distance == "cosine"


def test_transformer_aggregator_contract_and_mask():
    from aqa_builtin.aggregators import TransformerAggregator

    check_aggregator(TransformerAggregator, {"dim": 8, "heads": 2, "ffn": 16}, in_shape=(6,))
    for pooling in ("mean", "cls"):
        agg = TransformerAggregator(
            TransformerAggregator.parse_params(
                {"dim": 8, "heads": 2, "ffn": 16, "dropout": 0.0, "pooling": pooling,
                 "positional": "learned", "max_length": 10}
            ),
            (6,),
        ).eval()
        x = torch.randn(2, 5, 6)
        mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        y = x.clone()
        y[1, 3:] = 50.0
        assert agg(x, mask=mask).shape == (2, 8)
        assert torch.allclose(agg(x, mask=mask), agg(y, mask=mask), atol=1e-5)
        full = torch.ones(2, 5, dtype=torch.bool)
        torch.testing.assert_close(agg(x, mask=full), agg(x))
        with pytest.raises(ValueError, match="max_length"):
            agg(torch.randn(1, 11, 6))
    with pytest.raises(ValueError, match="divisible"):
        TransformerAggregator(TransformerAggregator.parse_params({"dim": 10, "heads": 4}), (6,))


def test_identity_backbone():
    from aqa_builtin.backbones.identity import IdentityBackbone

    bb = IdentityBackbone(IdentityBackbone.parse_params({}))
    x = torch.randn(5, 7)
    assert bb(x) is x
    assert IdentityBackbone.input_kind == "features"
    with pytest.raises(ValueError, match="video backbone"):
        bb(torch.randn(2, 3, 4, 8, 8))
    assert check_backbone(IdentityBackbone, input_shape=(7,)) == (7,)  # (M, D) features
    with pytest.raises(AssertionError, match=r"input_shape=\(D,\)"):
        check_backbone(IdentityBackbone, input_shape=(3, 16, 32, 32))


def _spec(tmp_path, head="gdlt", aggregator="average", backbone="identity"):
    from aqa_framework.resolve import load

    raw = {
        "model": {
            "backbone": {"name": backbone},
            "aggregator": {"name": aggregator, "params": {"dim": 8, "heads": 2, "ffn": 8}}
            if aggregator == "transformer" else {"name": aggregator},
            "heads": {"score": {"name": head, "params": {"dim": 8, "in_hidden": 8, "ffn": 8}}
                      if head == "gdlt" else {"name": head}},
        },
        "data": {"name": "synthetic-routines",
                 "params": {"root": str(tmp_path / "r"), "routines": 16, "feature_dim": 12,
                            "min_clips": 24, "max_clips": 30, "train_length": 20}},
    }
    return load(raw)


def test_model_on_feature_sequences(tmp_path, one_intra_op_thread):
    """identity backbone + transformer aggregator + score head, and gdlt on the clips."""
    from aqa_framework.builder import build_model, open_dataset

    resolved = _spec(tmp_path, head="score", aggregator="transformer")
    train = open_dataset(resolved, "train", train=True)
    assert type(train).input_kind == "features"
    model = build_model(resolved, train.targets, input_shape=(20, 12))
    assert model.aggregator.uses_mask
    batch = torch.utils.data.default_collate([train[0], train[1]])
    assert batch["video"].shape == (2, 20, 12)
    outputs = model(batch["video"], batch)
    total, _ = model.loss(outputs, batch)
    total.backward()
    with pytest.raises(DataError, match="clip feature sequences"):
        model(torch.randn(1, 2, 3, 4, 8, 8))

    resolved = _spec(tmp_path, head="gdlt")
    model = build_model(resolved, train.targets, input_shape=(20, 12)).eval()
    test = open_dataset(resolved, "test")
    sample = test[0]
    assert bool(sample["video_mask"].all())  # the whole routine at test
    preds = model.predict(model(sample["video"][None], None))
    assert set(preds["score"]) == {"total"}


def test_builder_refuses_mismatched_backbone_and_data(tmp_path):
    from aqa_framework.builder import build_model

    resolved = _spec(tmp_path, head="score", backbone="c3d")
    with pytest.raises(SpecError, match="identity"):
        build_model(resolved, _targets("difficulty", "execution", "total"), device="meta",
                    input_shape=(20, 12))
    resolved = _spec(tmp_path, head="score")
    with pytest.raises(SpecError, match="clip features"):
        build_model(resolved, _targets("difficulty", "execution", "total"), device="meta",
                    input_shape=(1, 3, 16, 32, 32))


def test_the_padding_mask_reaches_the_model_at_inference_too(tmp_path, one_intra_op_thread):
    """Evaluation hands the model the video_mask of padded sequences: padding changes nothing."""
    from aqa_framework.builder import build_model, open_dataset

    resolved = _spec(tmp_path, head="gdlt", aggregator="transformer")
    train = open_dataset(resolved, "train", train=True)
    model = build_model(resolved, train.targets, input_shape=(20, 12)).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 20, 12)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    y = x.clone()
    y[1, 15:] = 50.0  # what lies in the padding must not matter
    with torch.no_grad():
        a = model(x, None, mask=mask)["score"]["score"]
        b = model(y, None, mask=mask)["score"]["score"]
        c = model(y, None)["score"]["score"]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a[1], c[1], atol=1e-4)
