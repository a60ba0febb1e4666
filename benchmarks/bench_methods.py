"""Training speed of MUSDL, CoRe and GDLT: our models against their official step structure.

Ours: the :class:`~aqa_framework.model.MultitaskModel` the builder assembles from the
``model`` section of the method's example spec (``examples/musdl/mtl-aqa-musdl.yaml``,
``examples/core/mtl-aqa-core.yaml``, ``examples/gdlt/rg-ball.yaml``; random weights instead of
the pretrained file), with that spec's optimizer, parameter groups and frozen BatchNorm,
trained the way the engine trains it (``model(video, batch, partners=...)``, ``model.loss``,
autocast, gradient scaler; CoRe's queries and exemplars in ONE backbone call). Official:
``official_methods.py``, the official training step's structure (MUSDL: one I3D call per
segment; CoRe: one call on query + exemplar segments, CPU label loops, batch 1 x 2
accumulated steps; GDLT: attention returning its weights), started from the same weights.
Both losses on one batch are printed (evaluation mode: no dropout, BatchNorm running
statistics) before timing; CoRe also times test-time voting over several exemplars::

    python benchmarks/bench_methods.py --method musdl           # paper settings (use a GPU)
    python benchmarks/bench_methods.py --method all --small     # 2-core CPU, under a minute
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import official_methods as official  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("musdl", "core", "gdlt")
EXAMPLES = {
    "musdl": "examples/musdl/mtl-aqa-musdl.yaml",
    "core": "examples/core/mtl-aqa-core.yaml",
    "gdlt": "examples/gdlt/rg-ball.yaml",
}
"""The example spec whose ``model`` and ``train`` sections each method's model follows."""

TITLES = {"musdl": "MUSDL (I3D, 7 judges)", "core": "CoRe (I3D, regression tree)",
          "gdlt": "GDLT (clip features, grade queries)"}
DIFFICULTIES = (2.0, 2.8, 3.2)
"""The degrees of difficulty of the synthetic dives (CoRe pairs dives of the same one)."""


@dataclass(frozen=True)
class MethodConfig:
    """Sizes of one method's benchmark configuration.

    Attributes:
        method: ``musdl``, ``core`` or ``gdlt``.
        name: ``paper`` or ``small``.
        frames: Frames of a dive's window (MUSDL, CoRe).
        clip_length: Frames per segment.
        starts: First frame of each segment in the window.
        size: Crop size (height = width).
        batch: Our training batch.
        ref_batch: The official step's batch (CoRe: per accumulated micro-batch).
        accumulate: Micro-batches per official update (CoRe's ``step_per_update``).
        voters: Exemplars per query at test (CoRe).
        length: Clips per training window (GDLT).
        feature_dim: Clip feature size (GDLT).
    """

    method: str
    name: str
    frames: int = 0
    clip_length: int = 0
    starts: tuple[int, ...] = ()
    size: int = 0
    batch: int = 1
    ref_batch: int = 1
    accumulate: int = 1
    voters: int = 0
    length: int = 0
    feature_dim: int = 0

    def describe(self) -> str:
        """One line of sizes for the header."""
        if self.method == "gdlt":
            return (f"features {self.length} clips x {self.feature_dim} | batch ours {self.batch}"
                    f" / official {self.ref_batch}")
        segs = ",".join(map(str, self.starts))
        line = (f"window {self.frames} frames {self.size}x{self.size}, {len(self.starts)} segments "
                f"x {self.clip_length} frames (starts {segs}) | batch ours {self.batch} / "
                f"official {self.ref_batch}")
        if self.method == "core":
            line += f" x {self.accumulate} accumulated | 1 exemplar, {self.voters} voters at test"
        return line


_PAPER_STARTS = (0, 10, 20, 30, 40, 50, 60, 70, 80)
CONFIGS: dict[tuple[str, str], MethodConfig] = {
    ("musdl", "paper"): MethodConfig("musdl", "paper", 103, 16, (*_PAPER_STARTS, 87), 224, 4, 4),
    ("musdl", "small"): MethodConfig("musdl", "small", 20, 8, (0, 6, 12), 32, 2, 2),
    ("core", "paper"): MethodConfig("core", "paper", 103, 16, (*_PAPER_STARTS, 86), 224, 2, 1,
                                    accumulate=2, voters=10),
    ("core", "small"): MethodConfig("core", "small", 20, 8, (0, 6, 12), 32, 2, 1, accumulate=2,
                                    voters=3),
    ("gdlt", "paper"): MethodConfig("gdlt", "paper", batch=32, ref_batch=32, length=68,
                                    feature_dim=1024),
    ("gdlt", "small"): MethodConfig("gdlt", "small", batch=8, ref_batch=8, length=32,
                                    feature_dim=1024),
}
"""Paper settings (the official defaults) and the small CPU ones, per method."""


# ---------------------------------------------------------------------------------------------
# spec, targets and model


def example_spec(method: str) -> dict[str, Any]:
    """The raw spec our model is built from: the example's ``model`` and ``train`` sections.

    The backbone's ``pretrained`` file is dropped (random weights); the dataset is a
    synthetic one that is never opened (batches are synthetic), with the example's
    ``partners`` (CoRe).
    """
    from aqa_framework.yamlio import load_yaml, read_yaml_text

    raw = load_yaml(read_yaml_text(ROOT / EXAMPLES[method]))
    model = copy.deepcopy(raw["model"])
    model["backbone"].get("params", {}).pop("pretrained", None)
    data: dict[str, Any] = {"name": "synthetic-routines" if method == "gdlt" else
                            "synthetic-diving"}
    if "partners" in raw["data"]:
        data["partners"] = raw["data"]["partners"]
    keep = ("optimizer", "param_groups", "freeze_bn", "select_metric")
    train = {k: v for k, v in raw["train"].items() if k in keep}
    return {"model": model, "data": data, "train": train}


def make_targets(method: str):
    """The targets the method's dataset declares (MTL-AQA's, or rhythmic gymnastics' total)."""
    from aqa_builtin.datasets.mtl_aqa import ARRAY_TARGETS

    from aqa_framework.targets import ScoreTarget, Targets

    if method == "gdlt":
        return Targets(scores={"total": ScoreTarget(low=0.0, high=25.0)})
    names = ("judge_scores", "difficulty") if method == "musdl" else ("difficulty",)
    arrays = {name: ARRAY_TARGETS[name] for name in names}
    return Targets(scores={"final_score": ScoreTarget(low=0.0, high=104.5)}, arrays=arrays)


def input_shape(cfg: MethodConfig) -> tuple[int, ...]:
    """One sample's input: ``(N, C, T, H, W)`` clips or ``(L, D)`` clip features."""
    if cfg.method == "gdlt":
        return (cfg.length, cfg.feature_dim)
    return (len(cfg.starts), 3, cfg.clip_length, cfg.size, cfg.size)


def build_ours(cfg: MethodConfig, settings: bl.RunSettings):
    """Our model (prepared as ``aqa run`` prepares it) and the spec's ``train`` section."""
    from aqa_framework.builder import build_model
    from aqa_framework.resolve import load

    torch.manual_seed(settings.seed)
    resolved = load(example_spec(cfg.method))
    model = build_model(resolved, make_targets(cfg.method), settings.device,
                        input_shape=input_shape(cfg))
    train = resolved.spec.train
    if settings.channels_last:
        model.to_channels_last()
    if train.freeze_bn:
        model.freeze_batchnorm(train.freeze_bn)
    return model, train


# ---------------------------------------------------------------------------------------------
# synthetic batches


def _dives(count: int, g: torch.Generator, difficulty: float | None = None) -> dict[str, Any]:
    """Judges' marks (multiples of 0.5), difficulties and final scores of ``count`` dives."""
    marks = torch.randint(10, 21, (count, 7), generator=g).float() / 2
    if difficulty is None:
        pick = torch.randint(0, len(DIFFICULTIES), (count,), generator=g)
        diff = torch.tensor(DIFFICULTIES)[pick]
    else:
        diff = torch.full((count,), difficulty)
    final = marks.sort(dim=1).values[:, 2:5].sum(1) * diff
    return {"marks": marks, "difficulty": diff, "final_score": final}


def _window(cfg: MethodConfig, count: int, g: torch.Generator) -> torch.Tensor:
    """``(count, C, frames, H, W)`` normalised frames."""
    return torch.randn(count, 3, cfg.frames, cfg.size, cfg.size, generator=g)


def _clips(cfg: MethodConfig, window: torch.Tensor) -> torch.Tensor:
    """Our dataset's ``(B, N, C, T, H, W)`` clips of ``(B, C, frames, H, W)`` windows."""
    return official.musdl_window_to_clips(window.transpose(1, 2), cfg.starts, cfg.clip_length)


def musdl_batches(cfg: MethodConfig, batch: int, seed: int, sigma: float,
                  device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our batch and the official one of the same dives.

    Ours: clips and targets as the ``mtl-aqa`` dataset collates them. Official: the window
    ``(B, T, C, H, W)``, the soft labels its dataset computes, the difficulty.
    """
    from aqa_framework.engine.loaders import to_device

    g = torch.Generator().manual_seed(seed)
    dives = _dives(batch, g)
    window = _window(cfg, batch, g)
    ours = {
        "key": [f"d{i}" for i in range(batch)],
        "video": _clips(cfg, window),
        "scores": {"final_score": dives["final_score"]},
        "arrays": {"judge_scores": dives["marks"], "difficulty": dives["difficulty"]},
    }
    soft = official.gaussian_soft_labels(dives["marks"].numpy(), sigma, 21, 10.0)
    theirs = {
        "window": window.transpose(1, 2).contiguous(),
        "soft_judge_scores": torch.from_numpy(soft),
        "difficulty": dives["difficulty"],
    }
    return to_device(ours, device), to_device(theirs, device)


def core_pool(seed: int, size: int = 48) -> tuple[list[dict[str, Any]], list[float]]:
    """Training samples' targets (for the tree's intervals) and their same-group differences."""
    g = torch.Generator().manual_seed(seed)
    dives = _dives(size, g)
    rows = [
        {"key": f"t{i}", "scores": {"final_score": float(dives["final_score"][i])},
         "arrays": {"difficulty": float(dives["difficulty"][i])}}
        for i in range(size)
    ]
    normal = (dives["final_score"] / dives["difficulty"]).double()
    deltas = []
    for i in range(size):
        for j in range(i + 1, size):
            if dives["difficulty"][i] == dives["difficulty"][j]:
                deltas.append(abs(float(normal[i] - normal[j])))
    return rows, deltas


def core_batches(cfg: MethodConfig, batch: int, exemplars: int, seed: int,
                 device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """A partner batch as the engine collates it, and the official inputs of the same videos.

    Every query has ``exemplars`` exemplars of its own difficulty. Ours: samples with
    ``partners`` (clips, scores, difficulty, keys) collated by the engine's ``collate``.
    Official: the windows ``video_1`` and ``videos_2`` (one per voter), ``label_1``,
    ``labels_2`` (score / difficulty) and ``diff``.
    """
    from aqa_framework.data.skipping import collate
    from aqa_framework.engine.loaders import to_device

    g = torch.Generator().manual_seed(seed)
    queries = _dives(batch, g)
    window = _window(cfg, batch, g)
    samples, ex_windows, ex_scores = [], [], []
    for i in range(batch):
        d = float(queries["difficulty"][i])
        ex = _dives(exemplars, g, difficulty=d)
        ex_window = _window(cfg, exemplars, g)
        ex_windows.append(ex_window)
        ex_scores.append(ex["final_score"])
        samples.append({
            "key": f"q{i}",
            "video": _clips(cfg, window[i : i + 1])[0],
            "scores": {"final_score": queries["final_score"][i]},
            "arrays": {"difficulty": queries["difficulty"][i]},
            "partners": {
                "key": [f"q{i}e{k}" for k in range(exemplars)],
                "video": _clips(cfg, ex_window),
                "scores": {"final_score": ex["final_score"]},
                "arrays": {"difficulty": ex["difficulty"]},
            },
        })
    diff = queries["difficulty"].reshape(-1, 1)
    theirs = {
        "video_1": window,
        "videos_2": [torch.stack([w[k] for w in ex_windows]) for k in range(exemplars)],
        "label_1": queries["final_score"].reshape(-1, 1) / diff,
        "labels_2": [torch.stack([s[k] for s in ex_scores]).reshape(-1, 1) / diff
                     for k in range(exemplars)],
        "diff": diff,
    }
    return to_device(collate(samples), device), to_device(theirs, device)


def gdlt_batches(cfg: MethodConfig, batch: int, seed: int,
                 device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Feature windows as the ``rhythmic-gymnastics`` dataset collates them, and the official."""
    from aqa_framework.engine.loaders import to_device

    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, cfg.length, cfg.feature_dim, generator=g).abs()
    total = torch.rand(batch, generator=g) * 15 + 8
    ours = {
        "key": [f"r{i}" for i in range(batch)],
        "video": feats,
        "video_mask": torch.ones(batch, cfg.length, dtype=torch.bool),
        "scores": {"total": total},
    }
    theirs = {"features": feats.clone(), "label": total / 25.0}
    return to_device(ours, device), to_device(theirs, device)


def make_batches(cfg: MethodConfig, model: Any, batch: int, seed: int,
                 device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our batch and the official one of the same samples, for any method."""
    if cfg.method == "musdl":
        sigma = next(h for h in model.heads.values() if h.name == "musdl").params.sigma
        return musdl_batches(cfg, batch, seed, sigma, device)
    if cfg.method == "core":
        return core_batches(cfg, batch, 1, seed, device)
    return gdlt_batches(cfg, batch, seed, device)


# ---------------------------------------------------------------------------------------------
# steps


def _ours(model: Any, train: Any, settings: bl.RunSettings, data: dict[str, Any]) -> Any:
    """Our training step (as ``aqa_framework.engine.loop``) on a fixed batch."""
    from aqa_framework.engine.loop import partner_inputs
    from aqa_framework.engine.train_state import TrainState

    state = TrainState.for_model(model, train, settings.device, settings.precision)
    return bl.engine_step(model, data, state.optimizer, state.scaler, settings,
                          partner_inputs(data))


def _official_optimizer(method: str, reference: torch.nn.Module, train: Any):
    """The official optimizer (MUSDL: Adam; CoRe: Adam, backbone at 0.1 x; GDLT: SGD)."""
    opt = train.optimizer
    if method == "gdlt":
        return torch.optim.SGD(reference.parameters(), lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay)
    if method == "core":
        return torch.optim.Adam([
            {"params": reference.backbone.parameters(), "lr": opt.lr * 0.1},
            {"params": reference.regressor.parameters()},
        ], lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.Adam(reference.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)


def _micro_batches(theirs: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """The official CoRe inputs (one exemplar) split into micro-batches of ``size``."""
    first = {"video_1": theirs["video_1"], "video_2": theirs["videos_2"][0],
             "label_1": theirs["label_1"], "label_2": theirs["labels_2"][0],
             "diff": theirs["diff"]}
    count = first["video_1"].shape[0]
    return [{k: v[i : i + size] for k, v in first.items()} for i in range(0, count, size)]


def _official(cfg: MethodConfig, reference: Any, train: Any, theirs: dict[str, Any]) -> Any:
    """The official training step on a fixed batch."""
    optimizer = _official_optimizer(cfg.method, reference, train)
    if cfg.method == "core":
        micro = _micro_batches(theirs, cfg.ref_batch)
        return lambda: reference.train_step(micro, optimizer)
    return lambda: reference.train_step(theirs, optimizer)


def initial_losses(cfg: MethodConfig, model: Any, reference: Any,
                   settings: bl.RunSettings) -> dict[str, float]:
    """Both losses on one batch from the same weights, evaluation mode (no dropout)."""
    from aqa_framework.engine.loop import partner_inputs
    from aqa_framework.engine.precision import autocast

    ours, theirs = make_batches(cfg, model, cfg.batch, settings.seed + 2, settings.device)
    model.eval()
    reference.eval()
    try:
        with torch.no_grad():
            with autocast(settings.device, settings.precision):
                out = model(ours["video"], ours, **partner_inputs(ours))
                mine, _ = model.loss(out, ours)
            ref = _reference_loss(cfg, reference, theirs)
    finally:
        model.train()
        reference.train()
    return {"ours": float(mine), "official": float(ref)}


def _reference_loss(cfg: MethodConfig, reference: Any, theirs: dict[str, Any]) -> torch.Tensor:
    if cfg.method == "musdl":
        probs = reference(theirs["window"].transpose(1, 2))
        return reference.loss(probs, theirs["soft_judge_scores"])
    if cfg.method == "core":
        return reference.pair_loss(_micro_batches(theirs, cfg.batch)[0])[0]
    return reference.loss(reference(theirs["features"]), theirs["label"])


def deltas_for(cfg: MethodConfig, model: Any, seed: int) -> list[float]:
    """Fit our CoRe head's intervals as the engine does; the same pairs' differences."""
    from aqa_framework.data.partners import fit_data

    if cfg.method != "core":
        return []
    rows, deltas = core_pool(seed)
    head = next(h for h in model.heads.values() if h.name == "core")
    head.fit(fit_data(rows, group_by="difficulty"))
    return deltas


# ---------------------------------------------------------------------------------------------
# CoRe voting


def vote(cfg: MethodConfig, model: Any, reference: Any, settings: bl.RunSettings,
         batch: int) -> dict[str, Any]:
    """Test-time voting over ``cfg.voters`` exemplars: ours (one call) against the official.

    Returns:
        ``rows``, ``ratios``, ``voters`` and the largest difference of the two predictions.
    """
    from aqa_framework.engine.precision import autocast

    ours, theirs = core_batches(cfg, batch, cfg.voters, settings.seed + 3, settings.device)
    model.eval()
    reference.eval()

    def ours_step() -> list[float]:
        with torch.inference_mode(), autocast(settings.device, settings.precision):
            outputs = model(ours["video"], None, partners=ours["partners"])
        return model.predict(outputs, ours)["score"]["final_score"]

    def ref_step() -> list[float]:
        return reference.vote(theirs["video_1"], theirs["videos_2"], theirs["labels_2"],
                              theirs["diff"]).tolist()

    diff = max(abs(a - b) for a, b in zip(ours_step(), ref_step(), strict=True))
    print(f"voting, same weights, {cfg.voters} exemplars: predictions differ by at most "
          f"{diff:.2e} points")
    timings = bl.time_interleaved({"ours": ours_step, "official": ref_step}, settings.steps,
                                  settings.warmup, settings.device)
    rows: dict[str, dict[str, Any]] = {}
    for name, timing in timings.items():
        per_video = timing.median / batch
        rows[name] = {"batch": batch, "ms_per_video": per_video * 1e3,
                      "videos_per_s": 1 / per_video, "timing": timing.as_dict()}
        clips = (1 + cfg.voters if name == "ours" else 2 * cfg.voters) * len(cfg.starts)
        print(f"voting {name:<10} batch {batch:>3}  {per_video * 1e3:10.1f} ms/video  "
              f"{1 / per_video:9.2f} videos/s  ({clips} clips encoded per video)")
    ratios = bl.ratios_vs_official(rows, "ms_per_video", "videos/s (voting)",
                                   lower_is_better=True)
    model.train()
    reference.train()
    return {"rows": rows, "ratios": ratios, "voters": cfg.voters, "max_abs_diff": diff}


# ---------------------------------------------------------------------------------------------
# running


def print_header(cfg: MethodConfig, settings: bl.RunSettings) -> None:
    """What runs where: device, versions, the method's configuration and settings."""
    env = bl.environment(settings.device)
    print(f"== bench_methods: {TITLES[cfg.method]} training step ==")
    print("environment: " + " ".join(f"{k}={v}" for k, v in env.items() if v is not None))
    print(f"config: {cfg.name} method={cfg.method} spec={EXAMPLES[cfg.method]} | "
          f"{cfg.describe()}")
    print(f"settings: ours precision={settings.precision} channels_last_3d="
          f"{settings.channels_last} compile={settings.compile} batch={settings.batch} | "
          f"official fp32 batch={settings.ref_batch} | steps={settings.steps} "
          f"warmup={settings.warmup}")


def run_method(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one method with parsed arguments; returns its results (also printed)."""
    cfg = CONFIGS[(method, "small" if args.small else "paper")]
    cfg = replace(cfg, batch=args.batch or cfg.batch, ref_batch=args.ref_batch or cfg.ref_batch,
                  voters=args.voters or cfg.voters)
    local = argparse.Namespace(**{**vars(args), "batch": cfg.batch, "ref_batch": cfg.ref_batch})
    settings = bl.resolve_settings(local, default_steps=(3, 20), default_warmup=(1, 3))
    device = settings.device
    print_header(cfg, settings)
    model, train = build_ours(cfg, settings)
    deltas = deltas_for(cfg, model, settings.seed + 4)
    results: dict[str, Any] = {
        "benchmark": "methods",
        "method": method,
        "environment": bl.environment(device),
        "settings": {**bl.config_dict(settings), "cfg": asdict(cfg)},
        "spec": EXAMPLES[method],
    }
    reference = None
    if settings.reference:
        reference = official.reference_for(method, model, starts=cfg.starts,
                                           clip_length=cfg.clip_length, deltas=deltas).to(device)
        official.copy_weights(reference, model)
        reference.train()
        losses = initial_losses(cfg, model, reference, settings)
        rel = abs(losses["ours"] - losses["official"]) / max(abs(losses["official"]), 1e-12)
        results["initial_loss"] = losses | {"relative_difference": rel}
        print(f"same weights, same batch: loss ours={losses['ours']:.6f} "
              f"official={losses['official']:.6f} (relative difference {rel:.2e})")
    ours, theirs = make_batches(cfg, model, cfg.batch, settings.seed + 1, device)
    contenders: dict[str, tuple[int, Any]] = {"ours": (cfg.batch, _ours(model, train, settings,
                                                                         ours))}
    if reference is not None:
        ref_samples = cfg.ref_batch * cfg.accumulate
        _, ref_data = make_batches(cfg, model, ref_samples, settings.seed + 1, device)
        contenders["official"] = (ref_samples, _official(cfg, reference, train, ref_data))
    del theirs
    timings = bl.time_interleaved({k: v[1] for k, v in contenders.items()}, settings.steps,
                                  settings.warmup, device)
    rows: dict[str, dict[str, Any]] = {}
    for name, (samples, _) in contenders.items():
        timing = timings[name]
        sps = samples / timing.median
        rows[name] = {"batch": samples, "samples_per_s": sps, "step_ms": timing.median * 1e3,
                      "timing": timing.as_dict()}
        print(f"{name:<10} batch {samples:>3}  {sps:10.2f} samples/s  "
              f"step {timing.median * 1e3:9.1f} ms")
    if reference is not None:
        results["ratios"] = bl.ratios_vs_official(rows, "samples_per_s", "samples/s")
    results["rows"] = rows
    if method == "core" and reference is not None:
        results["voting"] = vote(cfg, model, reference, settings, batch=1)
    return results


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark of one method (or all three in turn) and return its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    for action in parser._actions:
        if "--small" in action.option_strings:
            action.help = ("small CPU configuration (I3D on 3 segments of 8x32x32 frames, "
                           "batch 2; GDLT on 32 clips x 1024, batch 8)")
        if "--batch" in action.option_strings:
            action.help = "our batch size (default: the method's, see the header)"
        if "--ref-batch" in action.option_strings:
            action.help = "batch size of the official step (CoRe: per accumulated micro-batch)"
    parser.add_argument("--method", required=True, choices=[*METHODS, "all"],
                        help="the method to benchmark, or all three in turn")
    parser.add_argument("--voters", type=int, default=None,
                        help="CoRe: exemplars per query at test (default 10 paper, 3 small)")
    args = parser.parse_args(argv)
    methods = list(METHODS) if args.method == "all" else [args.method]
    threads = torch.get_num_threads()
    out: dict[str, Any] = {}
    for i, method in enumerate(methods):
        if i:
            print()
        out[method] = run_method(method, args)
        torch.set_num_threads(args.threads or threads)
    results = out[methods[0]] if len(methods) == 1 else {"benchmark": "methods", "methods": out}
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    run()
