"""NaN and infinity in training: skipped steps, a clear stop, strict JSON in the run folder."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from aqa_framework import jsonio, testing
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import load_checkpoint
from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.loop import NonFiniteGuard, NonFiniteLoss, train_one_epoch
from aqa_framework.engine.precision import grad_scaler
from aqa_framework.engine.state_codec import decode, encode
from aqa_framework.errors import TrainingDiverged
from aqa_framework.model import MultitaskModel
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, parse_spec

NAN = float("nan")


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


class Linear(nn.Module):
    """A one-weight model whose loss is scaled by the batch's ``scale`` (NaN to diverge)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, video, batch):
        return {"s": self.lin(video)}

    def loss(self, outputs, batch):
        value = (outputs["s"] - 1).pow(2).mean() * batch["scale"][0]
        return value, {"s": value}


def batches(*scales):
    return [{"video": torch.ones(2, 2), "scale": torch.tensor([s, s])} for s in scales]


def epoch(model, loader, guard, **kw):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    device = torch.device("cpu")
    return train_one_epoch(
        model=model,
        forward=model,
        loader=loader,
        optimizer=optimizer,
        scaler=grad_scaler(device, "fp32"),
        device=device,
        precision="fp32",
        ctx=DistContext(),
        guard=guard,
        **kw,
    )


def test_nonfinite_step_does_not_update_weights():
    torch.manual_seed(0)
    model = Linear()
    ref = copy.deepcopy(model)
    epoch(ref, batches(1.0, 1.0), NonFiniteGuard(3))
    stats = epoch(model, batches(1.0, NAN, float("inf"), 1.0), NonFiniteGuard(3))
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)  # the two bad steps changed nothing
    assert stats.nonfinite_steps == 2
    assert math.isfinite(stats.losses["loss"]) and stats.samples == 8


def test_nonfinite_gradient_with_a_finite_loss_is_skipped():
    model = Linear()
    before = copy.deepcopy(model.state_dict())
    model.lin.weight.register_hook(lambda g: g * NAN)
    stats = epoch(model, batches(1.0), NonFiniteGuard(3))
    assert stats.nonfinite_steps == 1
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_consecutive_nonfinite_steps_stop_and_the_count_spans_epochs():
    model = Linear()
    guard = NonFiniteGuard(3)
    epoch(model, batches(1.0, NAN, NAN), guard)  # 2 in a row: still going
    with pytest.raises(NonFiniteLoss) as info:
        epoch(model, batches(NAN, 1.0), guard)
    assert info.value.steps == 3 and info.value.step == 1
    assert info.value.what == "the loss was nan (s nan)"
    # a finite step resets the count; no limit never stops
    epoch(model, batches(NAN, NAN, 1.0, NAN, NAN), NonFiniteGuard(3))
    assert epoch(model, batches(*[NAN] * 20), NonFiniteGuard(None)).nonfinite_steps == 20


# -- a whole run -------------------------------------------------------------------------------

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average"},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32, "captions": False},
        "batch_size": 3,
    },
    "train": {"epochs": 3, "max_nonfinite_steps": 3},
    "eval": {"split": "test"},
}


def resolved(*overrides):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    raw = apply_overrides(copy.deepcopy(RAW), overrides)
    return resolve(parse_spec(raw), source="tiny.yaml")


def nan_loss_from_call(monkeypatch, first_bad: int) -> None:
    """Make the model's loss NaN from its ``first_bad``-th call on (1-based)."""
    original = MultitaskModel.loss
    calls = {"n": 0}

    def loss(self, outputs, batch):
        calls["n"] += 1
        total, per_task = original(self, outputs, batch)
        if calls["n"] >= first_bad:
            total = total * NAN
            per_task = {k: v * NAN for k, v in per_task.items()}
        return total, per_task

    monkeypatch.setattr(MultitaskModel, "loss", loss)


def test_diverging_run_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, one_intra_op_thread
):
    nan_loss_from_call(monkeypatch, first_bad=3)  # 2 steps per epoch: epoch 2 diverges
    folder = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        runner.run_training(resolved(), run_dir=folder)
    msg = str(info.value)
    assert "training stopped in epoch 3, step 1: the loss was nan (score nan)" in msg
    assert "3 consecutive steps (train.max_nonfinite_steps)" in msg
    assert "The checkpoint of epoch 2" in msg and "is kept" in msg
    ckpt = load_checkpoint(folder / "checkpoints" / "last", training_state=False)
    assert ckpt.epoch == 2
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())
    assert not (folder / "results.json").exists()
    records = [strict_loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert records[1]["train"]["loss"] is None  # every step of epoch 2 was skipped
    assert records[1]["nonfinite_steps"] == 2
    assert records[1][jsonio.NONFINITE_KEY] == ["train.loss", "train.score"]
    strict_loads((folder / "checkpoints" / "last" / "checkpoint.json").read_text())


def test_nonfinite_metrics_are_written_as_null_with_a_note(tmp_path):
    doc = {"metrics": {"score.spearman": NAN, "score.l1": 2.5}, "rows": [1.0, float("-inf")]}
    text = jsonio.dumps(doc, indent=2)
    back = strict_loads(text)
    assert back["metrics"] == {"score.spearman": None, "score.l1": 2.5}
    assert back[jsonio.NONFINITE_KEY] == ["metrics.score.spearman", "rows.1"]
    assert math.isnan(jsonio.number(back["metrics"]["score.spearman"]))


def test_training_state_keeps_infinite_numbers_exactly_in_strict_json():
    state = {"best": float("inf"), "low": float("-inf"), "nan": NAN, "lr": [0.1]}
    tree, tensors = encode(state)
    back = decode(strict_loads(jsonio.dumps(tree)), tensors)
    assert back["best"] == float("inf") and back["low"] == float("-inf")
    assert math.isnan(back["nan"]) and back["lr"] == [0.1]
