"""CPU precision: bf16 by default only where the CPU computes bf16 natively, and a bf16 step
that follows the fp32 one within the documented tolerance."""

from __future__ import annotations

import copy

import pytest
import torch

from aqa_framework import testing
from aqa_framework.builder import build_model, open_dataset
from aqa_framework.data.skipping import collate
from aqa_framework.engine import precision
from aqa_framework.engine.optim import build_optimizer
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec

#: Relative difference allowed between the bf16 and the fp32 loss over the first steps of
#: the same training (docs/benchmarks.md states the same figure).
BF16_LOSS_TOLERANCE = 5e-3

AVX2_ONLY = "processor : 0\nflags : fpu sse sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
COOPER_LAKE = "flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd atomics\n"


@pytest.mark.parametrize(
    ("text", "native"),
    [(AVX2_ONLY, False), (SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (GRAVITON3, True),
     (GRAVITON2, False), ("", False), ("flags : avx512f avx512bw\n", False)],
)
def test_native_bf16_is_read_off_the_cpu_flags(text, native):
    assert precision.cpuinfo_has_native_bf16(text) is native


def test_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"


RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 32}},
        "heads": {"score": {"name": "score"}, "cls": {"name": "classification"},
                  "caption": {"name": "caption", "params": {"hidden": 16, "word_dim": 8}}},
    },
    "data": {"name": "testing.tiny",
             "params": {"num_samples": 6, "num_clips": 2, "frames": 16, "size": 32},
             "batch_size": 3},
    "train": {"optimizer": {"lr": 1e-3}},
    "seed": 0,
}


def test_a_bf16_training_step_follows_the_fp32_one():
    """The losses of three steps from the same weights on the same batches agree within
    BF16_LOSS_TOLERANCE (bf16 is emulated on CPUs without it: slower, the same rounding)."""
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    res = resolve(parse_spec(copy.deepcopy(RAW)), source="tiny.yaml")
    dataset = open_dataset(res, "train")
    batch = collate([dataset[i] for i in range(3)])
    torch.manual_seed(0)
    model = build_model(res, dataset.targets, device="cpu", input_shape=(2, 3, 16, 32, 32))
    losses = {}
    for name in ("fp32", "bf16"):
        run = copy.deepcopy(model).train()
        optimizer = build_optimizer(run, res.spec.train)
        losses[name] = []
        for _ in range(3):
            with precision.autocast(torch.device("cpu"), name):
                total, _ = run.loss(run(batch["video"], batch), batch)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            assert torch.isfinite(total)
            losses[name].append(float(total.detach()))
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"], strict=True):
        assert abs(bf16 - fp32) / abs(fp32) < BF16_LOSS_TOLERANCE, losses
    assert losses["fp32"] != losses["bf16"]  # bf16 did run in bf16
