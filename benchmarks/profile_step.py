"""Where our C3D-AVG-MTL training step and inference spend their time: torch.profiler's top
operators, per step.

Builds the model ``bench_train.py`` times (same configurations and options), runs a few
untimed steps, then profiles ``--steps`` steps and prints the operators with the most own
time (self CPU, or self CUDA on a GPU), divided by the number of steps::

    python benchmarks/profile_step.py --small                 # 2-core CPU
    python benchmarks/profile_step.py --small --what infer --top 12
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402
import benchlib as bl  # noqa: E402


def top_operators(prof: Any, steps: int, top: int, cuda: bool) -> list[dict[str, Any]]:
    """The ``top`` operators by own time, in milliseconds per step, with their share."""
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {"name": e.key, "ms_per_step": getattr(e, key) / 1e3 / steps,
         "share": getattr(e, key) / total, "calls_per_step": e.count / steps}
        for e in events[:top]
    ]


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Profile and print; return the rows."""
    from torch.profiler import ProfilerActivity, profile

    from aqa_framework.engine.precision import autocast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--what", choices=["train", "infer"], default="train")
    parser.add_argument("--top", type=int, default=10, help="operators to list")
    args = parser.parse_args(argv)
    if args.what == "infer" and args.batch is None:
        args.batch = 1
    settings = bl.resolve_settings(args, default_steps=(3, 5), default_warmup=(2, 3))
    bl.print_header(f"profile_step: C3D-AVG-MTL {args.what}", settings)
    model = bl.build_ours(settings.cfg, settings.device, seed=settings.seed)
    if settings.channels_last:
        model.to_channels_last()
    if args.what == "train":
        step = bench_train._ours(model, settings, settings.batch)
    else:
        model.eval()
        video = bl.make_batch(settings.cfg, settings.batch, settings.device, seed=1)["video"]

        def step() -> None:
            with torch.no_grad(), autocast(settings.device, settings.precision):
                model(video, None)

    for _ in range(settings.warmup):
        step()
    cuda = settings.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(settings.steps):
            step()
            bl.synchronize(settings.device)
    rows = top_operators(prof, settings.steps, args.top, cuda)
    clock = "self CUDA" if cuda else "self CPU"
    print(f"top {len(rows)} operators by {clock} time, per step (batch {settings.batch}):")
    for row in rows:
        print(f"  {row['name']:<46} {row['ms_per_step']:9.1f} ms  {row['share']:6.1%}"
              f"  {row['calls_per_step']:7.1f} calls")
    results = {"benchmark": "profile", "what": args.what, "environment":
               bl.environment(settings.device), "settings": bl.config_dict(settings),
               "top": rows}
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    run()
