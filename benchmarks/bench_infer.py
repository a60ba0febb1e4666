"""Inference latency of C3D-AVG-MTL per video: score, classes and a greedy caption.

Ours: the builder's :class:`~aqa_framework.model.MultitaskModel` in eval mode (all clips in
one backbone call, the encoder GRU in one call, the decoder stepped per token with early stop
once every caption has ended, bf16 + channels_last_3d on a GPU), followed by ``predict``
(text). Official: ``official_reference.py`` (clips one by one, both GRUs stepped per token for
the full length, fp32). Both start from the same weights and decode the same number of steps
at most; the mean decoded caption length is printed so an early stop is visible::

    python benchmarks/bench_infer.py                 # paper settings, batch 1 (use a GPU)
    python benchmarks/bench_infer.py --small         # 2-core CPU
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


def _length(rows: list[list[int]], eos: int) -> float:
    """Mean number of decoded tokens up to and including the first ``<eos>``."""
    total = 0
    for row in rows:
        total += row.index(eos) + 1 if eos in row else len(row)
    return total / max(len(rows), 1)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results (also printed)."""
    from aqa_framework.engine.precision import autocast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument(
        "--throughput-batch", type=int, default=8,
        help="also time ours on batches of this many videos (per-video time, as `aqa evaluate` "
        "with data.eval_batch_size runs); 0: no such row",
    )
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 1
    if args.ref_batch is None:
        args.ref_batch = args.batch
    settings = bl.resolve_settings(args, default_steps=(5, 20), default_warmup=(1, 5))
    cfg, device = settings.cfg, settings.device
    bl.print_header("bench_infer: C3D-AVG-MTL inference per video", settings)

    model = bl.build_ours(cfg, device, seed=settings.seed)
    cap = model.targets.captions
    steps = cfg.caption_words + 1
    reference = None
    if settings.reference:
        reference = official.reference_for(model, cfg.input_shape[1:]).to(device).eval()
        official.copy_weights(reference, model)
    if settings.channels_last:
        model.to_channels_last()
    model.eval()
    forward = torch.compile(model) if settings.compile else model
    results: dict[str, Any] = {
        "benchmark": "infer",
        "environment": bl.environment(device),
        "settings": bl.config_dict(settings),
        "max_decode_steps": steps,
    }
    rows: dict[str, dict[str, Any]] = {}
    seen: dict[str, Any] = {}

    def ours_step(video: torch.Tensor, name: str = "ours") -> dict[str, Any]:
        with torch.no_grad(), autocast(device, settings.precision):
            outputs = forward(video, None)
        seen[name] = outputs["caption"]["tokens"].tolist()
        return model.predict(outputs)

    def ref_step(video: torch.Tensor) -> list[str]:
        out = reference.infer(video, steps)
        seen["official"] = out["tokens"].tolist()
        return [cap.decode(row) for row in seen["official"]]

    def record(name: str, batch: int, timing: bl.Timing) -> None:
        per_video = timing.median / batch
        length = _length(seen[name], cap.eos_index)
        rows[name] = {"batch": batch, "ms_per_video": per_video * 1e3,
                      "videos_per_s": 1 / per_video, "mean_caption_tokens": length,
                      "timing": timing.as_dict()}
        print(f"{name:<10} batch {batch:>3}  {per_video * 1e3:10.1f} ms/video  "
              f"{1 / per_video:9.2f} videos/s  caption tokens decoded {length:6.1f}")

    video = bl.make_batch(cfg, settings.batch, device, seed=settings.seed + 1)["video"]
    contenders: dict[str, tuple[int, Any]] = {
        "ours": (settings.batch, lambda: ours_step(video))
    }
    many = args.throughput_batch
    if many and many != settings.batch:
        videos = bl.make_batch(cfg, many, device, seed=settings.seed + 3)["video"]
        contenders[f"ours@batch{many}"] = (many, lambda: ours_step(videos, f"ours@batch{many}"))
    if reference is not None:
        ref_video = bl.make_batch(cfg, settings.ref_batch, device, seed=settings.seed + 1)["video"]
        contenders["official"] = (settings.ref_batch, lambda: ref_step(ref_video))
    timings = bl.time_interleaved({k: v[1] for k, v in contenders.items()}, settings.steps,
                                  settings.warmup, device)
    for name, (batch, _) in contenders.items():
        record(name, batch, timings[name])
    if reference is not None:
        results["ratios"] = bl.ratios_vs_official(
            rows, "ms_per_video", "videos/s", lower_is_better=True
        )
    results["rows"] = rows
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    run()
