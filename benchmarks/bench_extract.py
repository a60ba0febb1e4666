"""Feature extraction throughput (clips/s) per backbone: ``aqa features extract`` against a loop.

Ours: the function ``aqa features extract`` runs for every video
(``aqa_framework.experiments.extract._video_features``): frames read, normalised and turned
into clips ``--batch-clips`` at a time (32 by default, as the command), one backbone call per
chunk under ``torch.inference_mode``, pooled, copied to the CPU. The video is synthetic and
held in memory (a :class:`~aqa_framework.video.readers.FrameReader` over a uint8 array), so
no decoding is timed, but our frame normalisation is. Official way: the clips normalised
beforehand (as the official scripts' dataset workers do, not timed), then a Python loop of
backbone calls of ``--ref-clips-per-call`` clips under ``torch.no_grad``, each pooled and
copied to the CPU as numpy: 1 clip per call (default) is how the MTL-AQA and MUSDL code
encode clips (one segment per call), 4 how GDLT's ``rg_swintx.py`` extracts its Video Swin
features. Random weights (nothing is downloaded); both outputs are compared before timing::

    python benchmarks/bench_extract.py                       # paper clip sizes (use a GPU)
    python benchmarks/bench_extract.py --small               # 2-core CPU, under a minute
    python benchmarks/bench_extract.py --backbones i3d --ref-clips-per-call 4
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402


@dataclass(frozen=True)
class ExtractConfig:
    """One backbone's benchmark clip.

    Attributes:
        registry: Registered backbone name.
        params: Its params.
        frames: Frames per clip.
        size: Frame size (height = width).
    """

    registry: str
    params: dict[str, Any]
    frames: int
    size: int

    def describe(self) -> str:
        """``c3d {'width': 0.25} 16x56x56``."""
        params = f" {self.params}" if self.params else ""
        return f"{self.registry}{params} {self.frames}x{self.size}x{self.size}"


PAPER = {
    "c3d": ExtractConfig("c3d", {}, 16, 112),
    "i3d": ExtractConfig("i3d", {}, 16, 224),
    "torchvision": ExtractConfig("torchvision-video", {}, 16, 112),
}
SMALL = {
    "c3d": ExtractConfig("c3d", {"width": 0.25}, 16, 56),
    "i3d": ExtractConfig("i3d", {}, 8, 32),
    "torchvision": ExtractConfig("torchvision-video", {}, 8, 32),
}
"""Clip sizes: the backbones' own (paper) and small CPU ones. C3D needs 16 frames."""


def backbone_config(name: str, small: bool) -> ExtractConfig:
    """The clip and params of a backbone given as ``c3d``, ``i3d`` or a torchvision arch."""
    table = SMALL if small else PAPER
    if name in table and name != "torchvision":
        return table[name]
    from aqa_builtin.backbones.torchvision_video import ARCHS

    if name not in ARCHS:
        known = ", ".join(["c3d", "i3d", *ARCHS])
        raise SystemExit(f"unknown backbone {name!r}; choose from {known}")
    base = table["torchvision"]
    frames, size = base.frames, base.size
    if ARCHS[name].fixed_input or name == "s3d" or name.startswith("swin3d"):
        frames, size = ARCHS[name].input_shape[1], ARCHS[name].input_shape[2]
    return ExtractConfig("torchvision-video", {"arch": name}, frames, size)


def build_backbone(cfg: ExtractConfig, seed: int, device: torch.device) -> Any:
    """A randomly initialised backbone in eval mode on ``device``."""
    from aqa_framework.registry import get_registry

    cls = get_registry().get("backbone", cfg.registry)
    torch.manual_seed(seed)
    backbone = cls(cls.parse_params(cfg.params))
    return backbone.eval().to(device)


def _normalization(backbone: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from aqa_framework.video.transforms import IMAGENET_MEAN, IMAGENET_STD

    found = type(backbone).input_normalization(backbone.params)
    return found if found is not None else (IMAGENET_MEAN, IMAGENET_STD)


def synthetic_loader(frames: np.ndarray, backbone: Any) -> Any:
    """What ``_video_features`` reads a video through: an in-memory reader and a transform."""
    from types import SimpleNamespace

    from aqa_framework.video.readers import FrameReader
    from aqa_framework.video.transforms import FrameTransform

    class MemoryReader(FrameReader):
        """The frames of one synthetic video, held in memory."""

        @property
        def num_frames(self) -> int:
            return len(frames)

        def _read(self, indices: np.ndarray) -> np.ndarray:
            return frames[indices]

    mean, std = _normalization(backbone)
    reader = MemoryReader("synthetic")
    transform = FrameTransform(resize=None, crop=None, mean=mean, std=std)
    return SimpleNamespace(reader=lambda source: reader, transform=transform)


def _settings(cfg: ExtractConfig) -> Any:
    from aqa_framework.experiments.extract import ExtractSettings

    return ExtractSettings(backbone=cfg.registry, params=dict(cfg.params), weights_sha256=None,
                           clip_length=cfg.frames, stride=cfg.frames, dataset="synthetic",
                           transform={})


def ours_step(backbone: Any, loader: Any, cfg: ExtractConfig, batch_clips: int,
              device: torch.device) -> Any:
    """``aqa features extract``'s per-video function over the synthetic video."""
    from aqa_framework.experiments.extract import _video_features

    settings = _settings(cfg)
    return lambda: _video_features(backbone, loader, Path("synthetic"), settings, batch_clips,
                                   str(device))


def official_step(backbone: Any, clips: torch.Tensor, per_call: int,
                  device: torch.device) -> Any:
    """A Python loop of backbone calls on ``per_call`` clips each, results to numpy one by one."""
    from aqa_framework.experiments.features import Pooling

    pooling = Pooling()

    def step() -> np.ndarray:
        feats = []
        with torch.no_grad():
            for i in range(0, len(clips), per_call):
                out = backbone(clips[i : i + per_call].to(device))
                feats.append(pooling(out).cpu().numpy())
        return np.concatenate(feats, 0)

    return step


def bench_backbone(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Compare and time one backbone; print its lines and return its results."""
    cfg = backbone_config(name, args.small)
    backbone = build_backbone(cfg, args.seed, device)
    g = np.random.default_rng(args.seed + 1)
    frames = g.integers(0, 256, (args.clips * cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    loader = synthetic_loader(frames, backbone)
    transform = loader.transform
    clips = transform.finish(transform.prepare(frames), clips=(args.clips, cfg.frames))
    ours = ours_step(backbone, loader, cfg, args.batch_clips, device)
    theirs = official_step(backbone, clips, args.ref_clips_per_call, device)
    a, b = ours(), theirs()
    diff, scale = float(np.abs(a - b).max()), float(np.abs(b).max())
    print(f"{name}: {cfg.describe()}, {args.clips} clips, {a.shape[1]} features per clip; "
          f"features differ by at most {diff:.2e} (largest feature {scale:.2e})")
    timings = bl.time_interleaved({"ours": ours, "official": theirs}, args.steps, args.warmup,
                                  device)
    rows: dict[str, dict[str, Any]] = {}
    calls = {"ours": args.batch_clips, "official": args.ref_clips_per_call}
    for contender, timing in timings.items():
        rate = args.clips / timing.median
        rows[contender] = {"clips_per_call": calls[contender], "clips_per_s": rate,
                           "ms_per_clip": 1e3 / rate, "timing": timing.as_dict()}
        print(f"{name} {contender:<9} {calls[contender]:>3} clips/call  {rate:10.2f} clips/s  "
              f"{1e3 / rate:8.2f} ms/clip")
    ratios = bl.ratios_vs_official(rows, "clips_per_s", f"clips/s ({name})")
    return {
        "backbone": cfg.registry, "params": cfg.params, "clip": [3, cfg.frames, cfg.size, cfg.size],
        "feature_dim": int(a.shape[1]), "max_abs_diff": diff, "max_abs_feature": scale,
        "rows": rows, "ratios": ratios,
    }


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="small CPU clips (C3D width 0.25 16x56x56, I3D and torchvision "
                        "8x32x32) and 8 clips per video")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backbones", default="c3d,i3d,r2plus1d_18",
                        help="comma-separated: c3d, i3d or torchvision video archs")
    parser.add_argument("--clips", type=int, default=None,
                        help="clips per video (default 64, small 8)")
    parser.add_argument("--batch-clips", type=int, default=32,
                        help="our clips per backbone call (aqa features extract's default 32)")
    parser.add_argument("--ref-clips-per-call", type=int, default=1,
                        help="clips per call of the official way (1; GDLT's script: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed videos (3 small, 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed videos (1 small, 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and frames")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    from aqa_framework.engine.precision import configure_backends, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    configure_backends(device)
    args.clips = args.clips or (8 if args.small else 64)
    args.steps = args.steps if args.steps is not None else (3 if args.small else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.small else 2)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    env = bl.environment(device)
    print("== bench_extract: clip feature extraction ==")
    print("environment: " + " ".join(f"{k}={v}" for k, v in env.items() if v is not None))
    print(f"config: {'small' if args.small else 'paper'} backbones={','.join(names)} "
          f"clips/video={args.clips} random weights, fp32")
    print(f"settings: ours batch_clips={args.batch_clips} inference_mode | official "
          f"{args.ref_clips_per_call} clip(s)/call no_grad | steps={args.steps} "
          f"warmup={args.warmup}")
    results: dict[str, Any] = {
        "benchmark": "extract",
        "environment": env,
        "settings": {"small": args.small, "clips": args.clips, "batch_clips": args.batch_clips,
                     "ref_clips_per_call": args.ref_clips_per_call, "steps": args.steps,
                     "warmup": args.warmup, "seed": args.seed, "device": str(device)},
        "backbones": {},
    }
    for name in names:
        results["backbones"][name] = bench_backbone(name, args, device)
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    run()
