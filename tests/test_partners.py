"""Partners: exemplars drawn from the training samples, heads that compare, fitted state.

The pairwise head here is a third-party plugin written in the test: it uses the same doors
(``uses_partners``, ``fit``, partner features and targets) as the built-in ``core`` head.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_framework import testing
from aqa_framework.data.open import open_data
from aqa_framework.data.partners import PartnerPool, fit_data, partner_keys
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import load_checkpoint
from aqa_framework.engine.inference import evaluate_split, load_trained_model
from aqa_framework.errors import DataError, SpecError
from aqa_framework.interfaces import TaskHead
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import PartnersSpec, apply_overrides, parse_spec


class DiffParams(BaseModel):
    """Parameters of :class:`DiffHead`."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(8, ge=1, description="Hidden width of the MLP.")


class DiffHead(TaskHead):
    """Predicts the score difference of a sample and an exemplar with an MLP; averages votes."""

    name: ClassVar[str] = "testing.diff"
    uses_partners: ClassVar[bool] = True
    Params = DiffParams

    def __init__(self, params: DiffParams, in_shape: tuple[int, ...], targets: Any) -> None:
        super().__init__(params, in_shape, targets)
        self.mlp = nn.Sequential(
            nn.Linear(in_shape[0], params.hidden), nn.ReLU(), nn.Linear(params.hidden, 1)
        )
        self.register_buffer("train_mean", torch.full((), float("nan")))

    def fit(self, data) -> None:
        """Remember the training samples' mean score (a checkpointed buffer)."""
        self.train_mean.fill_(sum(data.scores["final_score"]) / len(data))

    def forward(self, features: Tensor, batch: Mapping | None = None, partners=None) -> dict:
        diff = self.mlp(features.unsqueeze(1) - partners["features"]).squeeze(-1)  # (B, K)
        return {"delta": diff, "base": partners["scores"]["final_score"].float()}

    def loss(self, outputs: dict, batch: Mapping) -> Tensor:
        true = batch["scores"]["final_score"].float().unsqueeze(1) - outputs["base"]
        return nn.functional.mse_loss(outputs["delta"], true / 100)

    def predict(self, outputs: dict) -> dict[str, list]:
        votes = outputs["base"] + 100 * outputs["delta"]
        return {"final_score": votes.mean(1).tolist()}

    def references(self, batch: Mapping) -> dict[str, list]:
        return {"final_score": batch["scores"]["final_score"].float().tolist()}

    def metrics(self, predictions: dict, references: dict) -> dict:
        from aqa_framework.metrics import spearman

        return {"spearman": spearman(predictions["final_score"], references["final_score"])}


RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "testing.diff"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 2,
        "val_fraction": 0.25,
        "partners": {"group_by": "position", "train": 1, "test": 3},
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}, "select_on": "val"},
    "seed": 5,
}


def resolved(*overrides):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset, DiffHead]))
    raw = apply_overrides(copy.deepcopy(RAW), list(overrides))
    return resolve(parse_spec(raw), source="tiny.yaml")


def rows(groups):
    return [
        {"key": f"k{i}", "classes": {"g": g}, "scores": {"s": float(i)}}
        for i, g in enumerate(groups)
    ]


def pool(groups, **kw):
    spec = PartnersSpec(group_by="g", **kw)
    return PartnerPool.of(None, spec, seed=0, rows=rows(groups))


def test_draws_are_deterministic_per_seed_and_epoch_and_never_the_query():
    p = pool([0] * 30 + [1] * 30)
    a = [p.draw("k3", 0, 5, epoch=e) for e in range(4)]
    assert a == [p.draw("k3", 0, 5, epoch=e) for e in range(4)]  # same seed, same draws
    assert len({tuple(x) for x in a}) > 1  # a new draw each epoch
    other = PartnerPool.of(
        None, PartnersSpec(group_by="g", seed=1), seed=0, rows=rows([0] * 30 + [1] * 30)
    )
    assert other.draw("k3", 0, 5) != p.draw("k3", 0, 5)  # the partner seed changes them
    for e in range(20):
        drawn = p.draw("k3", 0, 5, epoch=e)
        assert 3 not in drawn and len(set(drawn)) == 5
        assert all(p.rows[i]["classes"]["g"] == 0 for i in drawn)


def test_small_groups_are_topped_up_from_the_nearest_group():
    p = pool([0, 0, 5, 5, 5, 1, 1, 9])  # group 0 holds k0, k1
    drawn = p.draw("k0", 0, 4)
    assert drawn[0] == 1  # the only other of its group first
    assert sorted(drawn[1:]) == [5, 6] or set(drawn[1:]) <= {5, 6, 2, 3, 4}
    assert {5, 6} <= set(drawn)  # group 1 is nearest to 0
    assert 0 not in drawn
    anyp = pool([0, 0, 5, 5, 5, 1, 1, 9], top_up="any")
    assert 0 not in anyp.draw("k0", 0, 7) and len(set(anyp.draw("k0", 0, 7))) == 7
    with pytest.raises(DataError, match=r"k0.*g=0 holds 2 training samples.*top_up"):
        pool([0, 0, 5], top_up="error").draw("k0", 0, 3)
    with pytest.raises(DataError, match="no other sample"):
        pool([0]).draw("k0", 0, 1)


def test_exemplars_come_from_the_training_samples_only():
    res = resolved()
    data = open_data(res)
    train_keys = set(data.partners.keys)
    val_keys = {data.val[i]["key"] for i in range(len(data.val))}
    assert train_keys and not train_keys & val_keys
    assert all(k.startswith("train-") for k in train_keys)
    for split in (data.train, data.val, data.test):
        for i in range(len(split)):
            sample = split[i]
            keys = sample["partners"]["key"]
            assert sample["key"] not in keys and set(keys) <= train_keys
            assert sample["partners"]["video"].shape[1:] == sample["video"].shape
            k = 1 if split is data.train else 3
            assert len(keys) == k and sample["partners"]["scores"]["final_score"].shape == (k,)
    # the training draw changes with the epoch, the evaluation draw does not
    first = [data.train[i]["partners"]["key"] for i in range(len(data.train))]
    data.train.set_epoch(3)
    data.test.set_epoch(3)
    assert first != [data.train[i]["partners"]["key"] for i in range(len(data.train))]
    assert data.test.exemplars(0) == data.test[0]["partners"]["key"]


def test_a_comparing_head_without_partners_is_a_spec_error():
    with pytest.raises(SpecError, match=r"model\.heads\.score\.name.*add data\.partners"):
        resolved("~data.partners")


def test_grouping_by_a_score_is_refused():
    with pytest.raises(SpecError, match=r"data\.partners\.group_by.*'final_score' is a score"):
        open_data(resolved("data.partners.group_by=final_score"))


def test_fit_data_reads_targets_and_groups():
    data = fit_data(rows([2, 2, 7]), "g")
    assert data.keys == ["k0", "k1", "k2"] and data.scores["s"] == [0.0, 1.0, 2.0]
    assert data.groups == [2, 2, 7] and len(data) == 3


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs") / "run"
    runner.run_training(resolved(), run_dir=folder)
    return folder


def test_a_third_party_pairwise_head_trains_votes_and_records_its_exemplars(pair_run):
    rows_ = list(csv.DictReader((pair_run / "predictions.csv").open()))
    assert len(rows_) == 8 and rows_[0]["key"] == "test-0000"
    data = open_data(resolved(), training=False)
    train_keys = set(data.partners.keys)
    for i, row in enumerate(rows_):
        chosen = row["exemplars"].split(";")
        assert len(chosen) == 3 and set(chosen) <= train_keys
        assert chosen == data.test.exemplars(i)
    # fitted state: saved in the checkpoint, restored by aqa evaluate
    ckpt = load_checkpoint(pair_run / "checkpoints" / "last")
    mean = float(ckpt.model_state["heads.score.train_mean"])
    expected = sum(
        data.partners.rows[i]["scores"]["final_score"] for i in range(len(data.partners))
    ) / len(data.partners)
    assert mean == pytest.approx(expected, rel=1e-5)
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset, DiffHead]))
    trained = load_trained_model(pair_run)
    assert float(trained.model.heads["score"].train_mean) == pytest.approx(mean)
    result = evaluate_split(trained, "test")
    assert result.exemplars == [r["exemplars"] for r in rows_]
    final = [float(r["score.final_score"]) for r in rows_]
    assert result.predictions["score"]["final_score"] == pytest.approx(final, rel=1e-4)


def test_the_model_runs_queries_and_exemplars_in_one_backbone_call():
    from aqa_framework.builder import build_model

    res = resolved()
    data = open_data(res, training=False)
    model = build_model(res, data.targets, device="cpu", input_shape=data.input_shape)
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    from aqa_framework.data.skipping import collate

    batch = collate([data.test[0], data.test[1]])
    assert partner_keys(batch) == [data.test.exemplars(0), data.test.exemplars(1)]
    model.eval()
    out = model(batch["video"], None, partners=batch["partners"])
    assert calls == [2 + 2 * 3]  # B queries + B*K exemplars, N = 1 clip each
    assert out["score"]["delta"].shape == (2, 3)
    with pytest.raises(DataError, match="compares each sample with exemplars"):
        model(batch["video"], None)
