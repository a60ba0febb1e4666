"""Training throughput of C3D-AVG-MTL: our fast path against the official approach.

Ours: the :class:`~aqa_framework.model.MultitaskModel` the builder assembles from the
C3D-AVG-MTL spec, trained the way ``aqa run`` trains it (all clips in one backbone call, the
fused teacher-forced caption decoder, bf16 autocast + channels_last_3d + cuDNN autotuning on a
GPU, Adam through timm). Official: ``official_reference.py`` (clips one by one, decoder
stepped per token in Python, fp32, batch 3), started from the same weights.

Prints samples/s, step time and achieved backbone TFLOP/s of both, and their ratio::

    python benchmarks/bench_train.py                 # paper settings (use a GPU)
    python benchmarks/bench_train.py --small         # 2-core CPU, about a minute
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import official_reference as official  # noqa: E402


def _tflops(flops_per_clip: int, clips: int, batch: int, seconds: float) -> float:
    """Backbone training TFLOP/s: 3 x forward FLOPs (forward + backward) per clip."""
    return 3 * flops_per_clip * clips * batch / seconds / 1e12


def _ours(model: torch.nn.Module, settings: bl.RunSettings, batch: int) -> Any:
    """Our training step (as ``aqa_framework.engine.loop.train_one_epoch``) on a fixed batch."""
    from aqa_framework.engine.optim import build_optimizer
    from aqa_framework.engine.precision import grad_scaler
    from aqa_framework.spec import TrainSpec

    optimizer = build_optimizer(model, TrainSpec())
    scaler = grad_scaler(settings.device, settings.precision)
    data = bl.make_batch(settings.cfg, batch, settings.device, seed=settings.seed + 1)
    return bl.engine_step(model, data, optimizer, scaler, settings)


def _backbone_only(model: torch.nn.Module, settings: bl.RunSettings, batch: int) -> Any:
    """Forward and backward of our backbone alone on the same clips (the step's floor).

    The official step runs the same convolutions, so ``official step / this`` bounds the
    ratio any change outside the backbone can reach on this machine.
    """
    from aqa_framework.engine.precision import autocast

    data = bl.make_batch(settings.cfg, batch, settings.device, seed=settings.seed + 1)
    clips = data["video"].flatten(0, 1)
    if settings.channels_last:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(settings.device, settings.precision):
            features = model.backbone(clips)
        features.float().sum().backward()

    return step


def _floor(rows: dict[str, dict[str, Any]], timing: bl.Timing) -> dict[str, Any]:
    """The backbone-only time, its share of our step and the ratio it caps (printed)."""
    backbone_s = timing.median
    out = {
        "step_ms": backbone_s * 1e3,
        "share_of_our_step": backbone_s / (rows["ours"]["step_ms"] / 1e3),
        "ceiling_ratio": rows["official"]["step_ms"] / 1e3 / backbone_s,
        "timing": timing.as_dict(),
    }
    print(f"ours: backbone only (forward + backward of the same clips) {out['step_ms']:.1f} ms "
          f"= {out['share_of_our_step']:.0%} of our step; ratio if all else took no time: "
          f"{out['ceiling_ratio']:.2f}x")
    return out


def _initial_losses(model: Any, reference: Any, settings: bl.RunSettings) -> dict[str, float]:
    """Both losses on one batch from the same weights (eval mode: no dropout)."""
    from aqa_framework.engine.precision import autocast

    data = bl.make_batch(settings.cfg, settings.ref_batch, settings.device, seed=settings.seed + 2)
    model.eval()
    reference.eval()
    with torch.no_grad():
        with autocast(settings.device, settings.precision):
            ours, _ = model.loss(model(data["video"], data), data)
        ref, _ = reference.loss(reference(data["video"], data["caption"]), data)
    model.train()
    reference.train()
    return {"ours": float(ours), "official": float(ref)}


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    args = parser.parse_args(argv)
    settings = bl.resolve_settings(args, default_steps=(5, 20), default_warmup=(2, 5))
    cfg, device = settings.cfg, settings.device
    bl.print_header("bench_train: C3D-AVG-MTL training step", settings)

    model = bl.build_ours(cfg, device, seed=settings.seed)
    clip_shape = cfg.input_shape[1:]
    flops = bl.backbone_forward_flops(model.backbone, clip_shape)
    print(f"backbone: {flops / 1e9:.3f} GFLOP forward per clip; training counted as 3x forward")
    reference = None
    if settings.reference:
        reference = official.reference_for(model, clip_shape).to(device)
        official.copy_weights(reference, model)
    if settings.channels_last:
        model.to_channels_last()
    results: dict[str, Any] = {
        "benchmark": "train",
        "environment": bl.environment(device),
        "settings": bl.config_dict(settings),
        "backbone_gflop_per_clip": flops / 1e9,
    }
    if reference is not None:
        losses = _initial_losses(model, reference, settings)
        rel = abs(losses["ours"] - losses["official"]) / max(abs(losses["official"]), 1e-12)
        results["initial_loss"] = losses | {"relative_difference": rel}
        print(f"same weights, same batch: loss ours={losses['ours']:.6f} "
              f"official={losses['official']:.6f} (relative difference {rel:.2e})")

    rows: dict[str, dict[str, Any]] = {}

    def record(name: str, batch: int, timing: bl.Timing) -> None:
        sps = batch / timing.median
        row = {"batch": batch, "samples_per_s": sps, "step_ms": timing.median * 1e3,
               "backbone_tflops": _tflops(flops, cfg.clips, batch, timing.median)}
        rows[name] = row | {"timing": timing.as_dict()}
        print(f"{name:<22} batch {batch:>3}  {sps:10.2f} samples/s  step {row['step_ms']:9.1f} ms"
              f"  backbone {row['backbone_tflops']:8.3f} TFLOP/s")

    contenders: dict[str, tuple[int, Any]] = {
        "ours": (settings.batch, _ours(model, settings, settings.batch))
    }
    if settings.batch != settings.ref_batch:
        contenders[f"ours@batch{settings.ref_batch}"] = (
            settings.ref_batch, _ours(model, settings, settings.ref_batch))
    if reference is not None:
        optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4)
        data = bl.make_batch(cfg, settings.ref_batch, device, seed=settings.seed + 1)
        contenders["official"] = (
            settings.ref_batch, lambda: reference.train_step(data, optimizer))
    floor = None
    if reference is not None and settings.ref_batch == settings.batch:
        floor = _backbone_only(model, settings, settings.batch)
        contenders_all = {**contenders, "ours: backbone only": (settings.batch, floor)}
    else:
        contenders_all = contenders
    timings = bl.time_interleaved({k: v[1] for k, v in contenders_all.items()}, settings.steps,
                                  settings.warmup, device)
    for name, (batch, _) in contenders.items():
        record(name, batch, timings[name])
    if reference is not None:
        results["ratios"] = bl.ratios_vs_official(rows, "samples_per_s", "samples/s")
    if floor is not None:
        results["backbone_only"] = _floor(rows, timings["ours: backbone only"])
    results["rows"] = rows
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    run()
