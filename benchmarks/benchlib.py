"""Shared pieces of the benchmark scripts: settings, synthetic batches, models, timing.

Two configurations are defined: ``paper`` (C3D-AVG-MTL at the paper's settings: 6 clips of
16x112x112, captions of 100 words over a 5781-word vocabulary) and ``small`` (the same
architecture scaled down so that a 2-core CPU runs it in seconds). Our model is assembled by
:func:`aqa_framework.builder.build_model` from a spec-like ``model`` section, exactly as
``aqa run`` does; the official-approach reference lives in ``official_reference.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from aqa_framework.targets import CaptionTarget, ClassField, ScoreTarget, Targets

CLASS_FIELDS: dict[str, int] = {
    "position": 3,
    "armstand": 2,
    "rotation_type": 4,
    "ss_no": 10,
    "tw_no": 8,
}
"""The five MTL-AQA class fields and their class counts (paper sec. 3)."""


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark configuration.

    Attributes:
        name: ``paper`` or ``small``.
        width: C3D channel width multiplier.
        clips: Clips per video.
        frames: Frames per clip (C3D's four temporal pools need at least 16).
        size: Crop size (height = width).
        vocab: Caption vocabulary size.
        caption_words: Most words per caption (the caption tensor holds ``+2`` tokens).
        shared_fc: Width of the fc layer shared by the score and classification heads.
        hidden: GRU hidden size of the caption encoder and decoder.
        word_dim: Word embedding size.
        dropout: Dropout between the stacked GRU layers.
        batch: Default training batch for our model.
        ref_batch: Batch of the official approach (3 in the official code).
    """

    name: str
    width: float
    clips: int
    frames: int
    size: int
    vocab: int
    caption_words: int
    shared_fc: int
    hidden: int
    word_dim: int
    dropout: float
    batch: int
    ref_batch: int

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        """One sample's ``(N, C, T, H, W)``."""
        return (self.clips, 3, self.frames, self.size, self.size)

    @property
    def caption_tokens(self) -> int:
        """Length of the padded caption tensor (``<sos>`` words ``<eos>``)."""
        return self.caption_words + 2


PAPER = BenchConfig(
    name="paper", width=1.0, clips=6, frames=16, size=112, vocab=5781, caption_words=100,
    shared_fc=4096, hidden=512, word_dim=512, dropout=0.2, batch=24, ref_batch=3,
)
SMALL = BenchConfig(
    name="small", width=0.25, clips=2, frames=16, size=56, vocab=200, caption_words=20,
    shared_fc=4096, hidden=512, word_dim=512, dropout=0.2, batch=3, ref_batch=3,
)


def get_config(small: bool) -> BenchConfig:
    """The ``small`` or ``paper`` configuration."""
    return SMALL if small else PAPER


# ---------------------------------------------------------------------------------------------
# command line


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark script shares."""
    parser.add_argument("--small", action="store_true",
                        help="small CPU configuration (width 0.25, 2 clips of 16x56x56, "
                        "vocabulary 200, 20-word captions)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="our precision ('auto': bf16 on a GPU and on a CPU with native "
                        "bf16, else fp32); the "
                        "official approach always runs fp32")
    parser.add_argument("--batch", type=int, default=None,
                        help="our batch size (default: 24 paper, 3 small)")
    parser.add_argument("--ref-batch", type=int, default=None,
                        help="batch size of the official approach (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="channels_last_3d convolutions for our model ('auto': on, "
                        "as `aqa run` does by default)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the official-approach reference (ours only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")


@dataclass
class RunSettings:
    """Resolved command-line settings."""

    cfg: BenchConfig
    device: torch.device
    precision: str
    batch: int
    ref_batch: int
    steps: int
    warmup: int
    compile: bool
    channels_last: bool
    reference: bool
    seed: int


def resolve_settings(
    args: argparse.Namespace, default_steps: tuple[int, int], default_warmup: tuple[int, int]
) -> RunSettings:
    """Turn parsed arguments into settings.

    Args:
        args: Parsed arguments (see :func:`add_common_args`).
        default_steps: Timed steps for (small, paper).
        default_warmup: Warm-up steps for (small, paper).
    """
    from aqa_framework.engine.precision import configure_backends, resolve_device, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_config(args.small)
    device = resolve_device(args.device)
    configure_backends(device)
    i = 0 if args.small else 1
    return RunSettings(
        cfg=cfg,
        device=device,
        precision=resolve_precision(args.precision, device),
        batch=args.batch or cfg.batch,
        ref_batch=args.ref_batch or cfg.ref_batch,
        steps=args.steps if args.steps is not None else default_steps[i],
        warmup=args.warmup if args.warmup is not None else default_warmup[i],
        compile=args.compile,
        channels_last=(
            args.channels_last != "off"
        ),
        reference=not args.no_reference,
        seed=args.seed,
    )


def environment(device: torch.device) -> dict[str, Any]:
    """Device and library versions, for the header of every benchmark."""
    import aqa_framework

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "aqa_framework": aqa_framework.__version__,
        "cpu_threads": torch.get_num_threads(),
    }


def print_header(title: str, settings: RunSettings, extra: dict[str, Any] | None = None) -> None:
    """Print what runs where: device, versions and settings."""
    env = environment(settings.device)
    print(f"== {title} ==")
    print("environment: " + " ".join(f"{k}={v}" for k, v in env.items() if v is not None))
    cfg = settings.cfg
    print(
        f"config: {cfg.name} width={cfg.width} clips={cfg.clips}x{cfg.frames}x{cfg.size}x"
        f"{cfg.size} vocab={cfg.vocab} caption_tokens={cfg.caption_tokens} "
        f"shared_fc={cfg.shared_fc} gru_hidden={cfg.hidden}"
    )
    line = (
        f"settings: ours precision={settings.precision} channels_last_3d="
        f"{settings.channels_last} compile={settings.compile} batch={settings.batch} | "
        f"official fp32 batch={settings.ref_batch} | steps={settings.steps} "
        f"warmup={settings.warmup}"
    )
    if extra:
        line += " | " + " ".join(f"{k}={v}" for k, v in extra.items())
    print(line)


def ratios_vs_official(
    rows: dict[str, dict[str, Any]], metric: str, unit: str, lower_is_better: bool = False
) -> dict[str, float]:
    """Speed of every contender relative to the official approach (above 1: faster), printed.

    Args:
        rows: Results by contender; ``rows["official"]`` is the reference.
        metric: The row field compared (``samples_per_s``, ``ms_per_video``).
        unit: What the ratio is of, for the printed line (``samples/s``).
        lower_is_better: Whether ``metric`` is a time rather than a rate.
    """
    base = rows["official"][metric]
    ratios = {
        f"{name}/official": base / row[metric] if lower_is_better else row[metric] / base
        for name, row in rows.items()
        if name != "official"
    }
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.2f}x {unit}")
    return ratios


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Write results as JSON when ``--json`` was given."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# targets, batches and models


def make_targets(cfg: BenchConfig) -> Targets:
    """MTL-AQA-like targets: final score, the five class fields, a caption vocabulary."""
    words = ["<eos>", "<sos>", *(f"w{i}" for i in range(2, cfg.vocab))]
    return Targets(
        scores={"final_score": ScoreTarget(low=0.0, high=104.5)},
        classes={
            f: ClassField(labels=[f"{f}{i}" for i in range(k)]) for f, k in CLASS_FIELDS.items()
        },
        captions=CaptionTarget(words=words, max_length=cfg.caption_words, pad_index=0,
                               sos_index=1, eos_index=0),
    )


def make_batch(
    cfg: BenchConfig, batch: int, device: torch.device, seed: int = 0
) -> dict[str, Any]:
    """A synthetic collated batch in the framework's sample layout, on ``device``.

    Captions have between half and all of ``caption_words`` words, so masking matters.
    """
    g = torch.Generator().manual_seed(seed)
    n, c, t, h, w = cfg.input_shape
    video = torch.randn(batch, n, c, t, h, w, generator=g)
    lengths = torch.randint(cfg.caption_words // 2, cfg.caption_words + 1, (batch,), generator=g)
    caption = torch.zeros(batch, cfg.caption_tokens, dtype=torch.long)
    for i, k in enumerate(lengths.tolist()):
        caption[i, 0] = 1
        caption[i, 1 : k + 1] = torch.randint(2, cfg.vocab, (k,), generator=g)
        caption[i, k + 1] = 0
    out = {
        "key": [f"s{i}" for i in range(batch)],
        "video": video,
        "scores": {"final_score": torch.rand(batch, generator=g) * 80 + 20},
        "classes": {f: torch.randint(0, k, (batch,), generator=g) for f, k in CLASS_FIELDS.items()},
        "caption": caption,
        "caption_length": lengths + 2,
    }
    from aqa_framework.engine.loaders import to_device

    return to_device(out, device)


def model_section(cfg: BenchConfig) -> dict[str, Any]:
    """The ``model`` section of a C3D-AVG-MTL spec (as examples/table4/c3d-avg-cls-caps.yaml)."""
    return {
        "backbone": {"name": "c3d", "params": {"width": cfg.width}},
        "aggregator": {"name": "average", "params": {"shared_fc": cfg.shared_fc}},
        "heads": {
            "score": {"name": "score", "loss_weight": 1.0,
                      "params": {"form": "fc", "target_scale": 17}},
            "cls": {"name": "classification", "loss_weight": 1.0, "params": {"form": "fc"}},
            "caption": {
                "name": "caption",
                "loss_weight": 0.01,
                "params": {"form": "fc", "hidden": cfg.hidden, "word_dim": cfg.word_dim,
                           "layers": 2, "dropout": cfg.dropout, "decoding": "greedy"},
            },
        },
    }


def bench_spec(model: dict[str, Any]) -> dict[str, Any]:
    """A whole raw spec around a ``model`` section, for :func:`aqa_framework.resolve.load`.

    The dataset is ``synthetic-diving`` (never opened: batches are synthetic) and the epoch is
    picked on the first task's first declared metric, so any set of heads resolves.
    """
    from aqa_framework.registry import get_registry

    task, head = next(iter(model["heads"].items()))
    cls = get_registry().get("head", head["name"])
    metric = next(iter(cls.metric_directions), "spearman")
    return {
        "model": model,
        "data": {"name": "synthetic-diving"},
        "train": {"select_metric": f"{task}.{metric}", "select_on": "last"},
    }


def resolve_model(model: dict[str, Any]):
    """Resolve a spec's ``model`` section against the registry (no dataset needed).

    Deprecated: use ``aqa_framework.resolve.load(bench_spec(model))``.
    """
    import warnings

    from aqa_framework.resolve import load

    warnings.warn(
        "benchlib.resolve_model is deprecated; use aqa_framework.resolve.load(bench_spec(model))",
        DeprecationWarning,
        stacklevel=2,
    )
    return load(bench_spec(model))


def build_ours(cfg: BenchConfig, device: torch.device, seed: int = 0):
    """Our C3D-AVG-MTL :class:`~aqa_framework.model.MultitaskModel`, built by the builder."""
    from aqa_framework.builder import build_model

    torch.manual_seed(seed)
    from aqa_framework.resolve import load

    resolved = load(bench_spec(model_section(cfg)))
    return build_model(resolved, make_targets(cfg), device, input_shape=cfg.input_shape)


def backbone_forward_flops(backbone: torch.nn.Module, clip_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one clip through a backbone (2 per multiply-add).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a ``meta`` copy, so no
    memory or compute is spent.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(backbone).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, *clip_shape, device="meta"))
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    """Wall times of the timed steps (seconds)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        """Median step time."""
        return statistics.median(self.seconds)

    @property
    def mean(self) -> float:
        """Mean step time."""
        return statistics.fmean(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {"median_s": self.median, "mean_s": self.mean, "steps": len(self.seconds),
                "min_s": min(self.seconds), "max_s": max(self.seconds)}


def time_interleaved(
    steps_by_name: dict[str, Callable[[], Any]], steps: int, warmup: int, device: torch.device
) -> dict[str, Timing]:
    """Time several step functions in alternation (round-robin), after ``warmup`` rounds.

    Alternating makes the ratios robust to other load on the machine: every contender sees
    the same conditions.
    """
    for _ in range(warmup):
        for step in steps_by_name.values():
            step()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(max(steps, 1)):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: Timing(t) for name, t in times.items()}


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config_dict(settings: RunSettings) -> dict[str, Any]:
    """Settings as JSON-able values."""
    out = asdict(settings)
    out["device"] = str(settings.device)
    return out


def engine_step(
    model: torch.nn.Module,
    data: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    settings: RunSettings,
    inputs: dict[str, Any] | None = None,
) -> Callable[[], torch.Tensor]:
    """Our training step on a fixed batch, as ``aqa_framework.engine.loop`` runs it.

    Forward (``torch.compile``d with ``--compile``) and loss under autocast, then the scaled
    backward pass and the optimizer update.

    Args:
        model: Our model.
        data: The batch (``data["video"]`` is the input).
        optimizer: Its optimizer.
        scaler: Its gradient scaler.
        settings: Device, precision and ``compile``.
        inputs: Further keyword arguments of the forward call (e.g. partners).
    """
    from aqa_framework.engine.precision import autocast

    forward = torch.compile(model) if settings.compile else model
    extra = inputs or {}

    def step() -> torch.Tensor:
        with autocast(settings.device, settings.precision):
            outputs = forward(data["video"], data, **extra)
            total, _ = model.loss(outputs, data)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        return total

    return step
