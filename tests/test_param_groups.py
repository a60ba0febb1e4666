"""Parameter groups (own learning-rate multiplier and weight decay) and frozen BatchNorm."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from aqa_framework import testing
from aqa_framework.builder import build_model
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import load_checkpoint
from aqa_framework.engine.optim import build_optimizer, build_scheduler
from aqa_framework.errors import SpecError
from aqa_framework.interfaces import Backbone
from aqa_framework.model import MultitaskModel
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import TrainSpec, apply_overrides, parse_spec
from aqa_framework.targets import Targets

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 16}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 3,
    },
    "train": {
        "epochs": 2,
        "optimizer": {"lr": 0.01, "weight_decay": 0.001},
        "param_groups": [{"modules": ["backbone"], "lr_scale": 0.1, "weight_decay": 0.0}],
    },
    "seed": 1,
}


def resolved(*overrides):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    raw = apply_overrides(copy.deepcopy(RAW), list(overrides))
    return resolve(parse_spec(raw), source="tiny.yaml")


def tiny_model(res):
    from aqa_framework.builder import open_dataset

    targets = open_dataset(res, "train").targets
    return build_model(res, targets, device="cpu", input_shape=(1, 3, 16, 32, 32))


def test_backbone_group_trains_at_a_tenth_of_the_rate_and_its_own_decay():
    res = resolved()
    model = tiny_model(res)
    opt = build_optimizer(model, res.spec.train)
    backbone = {id(p) for p in model.backbone.parameters()}
    seen = set()
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        seen |= ids
        if ids <= backbone:
            assert group["lr"] == pytest.approx(0.001) and group["weight_decay"] == 0.0
        else:
            assert not ids & backbone
            assert group["lr"] == pytest.approx(0.01)
    assert seen == {id(p) for p in model.parameters()}
    # the default group comes first: the learning rate a run reports is the base rate
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    # head weights decay, head biases do not (as timm does by default)
    head_groups = [g for g in opt.param_groups if not {id(p) for p in g["params"]} <= backbone]
    decays = {g["weight_decay"] for g in head_groups}
    assert decays == {0.001, 0.0}


def test_a_schedule_keeps_the_ratio():
    res = resolved("train.scheduler.name=cosine", "train.epochs=10")
    model = tiny_model(res)
    opt = build_optimizer(model, res.spec.train)
    sched = build_scheduler(opt, res.spec.train)
    sched.step(5)
    lrs = sorted({round(g["lr"] / opt.param_groups[0]["lr"], 6) for g in opt.param_groups})
    assert lrs == [0.1, 1.0] and opt.param_groups[0]["lr"] < 0.01


def test_a_path_naming_nothing_is_a_spec_error():
    res = resolved('train.param_groups=[{"modules": ["backbones"], "lr_scale": 0.1}]')
    model = tiny_model(res)
    with pytest.raises(SpecError, match=r"train\.param_groups\.0\.modules.*'backbones' names no"):
        build_optimizer(model, res.spec.train)


class _BNBackbone(Backbone):
    """A convolution and a BatchNorm."""

    name = "testing.bn"

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)

    def forward(self, clips):
        return self.bn(self.conv(clips)).mean(dim=(2, 3, 4))


def test_freeze_bn_keeps_running_statistics_while_the_weights_learn():
    torch.manual_seed(0)
    backbone = _BNBackbone()
    model = MultitaskModel(backbone, nn.Identity(), {}, targets=Targets())  # type: ignore[arg-type]
    model.freeze_batchnorm(["backbone"])
    model.train()
    assert model.training and model.backbone.conv.training and not model.backbone.bn.training
    mean = backbone.bn.running_mean.clone()
    out = model.backbone(torch.randn(4, 3, 2, 4, 4) + 3)
    out.sum().backward()
    assert torch.equal(backbone.bn.running_mean, mean)
    assert backbone.bn.weight.grad is not None
    model.freeze_batchnorm(False)
    model.backbone(torch.randn(4, 3, 2, 4, 4) + 3)
    assert not torch.equal(backbone.bn.running_mean, mean)
    with pytest.raises(SpecError, match=r"train\.freeze_bn.*'neck' names no module"):
        model.freeze_batchnorm(["neck"])


def test_freeze_bn_spec_field():
    assert TrainSpec(freeze_bn=["backbone"]).freeze_bn == ["backbone"]
    assert TrainSpec().freeze_bn is False and TrainSpec().param_groups == []


def _history(folder):
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time_s"), r.pop("samples_per_s")
    return rows


def test_resume_restores_the_groups_bit_exactly(tmp_path):
    whole = runner.run_training(resolved(), run_dir=tmp_path / "whole")
    part = tmp_path / "part"
    runner.run_training(resolved("train.epochs=1"), run_dir=part)
    runner.run_training(resolved(), resume=part)
    assert _history(part) == _history(whole)
    a = load_checkpoint(whole / "checkpoints" / "last")
    b = load_checkpoint(part / "checkpoints" / "last")
    for k, v in a.model_state.items():
        assert torch.equal(v, b.model_state[k]), k
    lrs = sorted({g["lr"] for g in a.training_state["optimizer"]["param_groups"]})
    assert lrs == pytest.approx([0.001, 0.01])


@pytest.mark.parametrize("with_groups", [False, True])
def test_decay_all_decays_biases_too_as_torch_optimizers_do(with_groups):
    overrides = ["train.optimizer.decay_all=true"]
    if not with_groups:
        overrides.append("train.param_groups=[]")
    res = resolved(*overrides)
    model = tiny_model(res)
    opt = build_optimizer(model, res.spec.train)
    backbone = {id(p) for p in model.backbone.parameters()}
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        expected = 0.0 if with_groups and ids <= backbone else 0.001
        assert group["weight_decay"] == expected
    bias = model.aggregator.fc.bias
    assert any(id(bias) in {id(p) for p in g["params"]} and g["weight_decay"] == 0.001
               for g in opt.param_groups)


def test_timm_optimizer_names_momentum_is_plain_sgd_and_sgd_is_nesterov():
    model = nn.Linear(2, 2)
    plain = build_optimizer(model, TrainSpec(optimizer={"name": "momentum", "lr": 0.1}))
    nesterov = build_optimizer(model, TrainSpec(optimizer={"name": "sgd", "lr": 0.1}))
    assert isinstance(plain, torch.optim.SGD) and not plain.defaults["nesterov"]
    assert plain.defaults["momentum"] == 0.9
    assert nesterov.defaults["nesterov"]
