"""Run every benchmark once and read the speed goals off the results.

Each benchmark runs in a subprocess of its own (a crash or a timeout in one leaves the others
and their results intact) and writes JSON next to its printed output in ``--out``. The summary
compares the figures with the goals of the benchmark plan and prints every goal as met, MISSED
or not measured (a CPU run does not measure the GPU goals, and the other way round):

* CPU (``--small``): our training step and our inference per video >= 3x the official
  approach in the default precision;
* GPU: full C3D-AVG-MTL training at >= 150 samples/s, >= 15x the official approach measured in
  the same run, backbone >= 250 TFLOP/s; the data pipeline sustaining that rate;
* both: whole-video decord reading at least as fast per frame as JPEG folders.

The method families (MUSDL, CoRe, GDLT) and feature extraction have no goal; their ratios to
the official code's way are listed as measured.

Usage::

    python benchmarks/run_all.py --out bench-results            # a GPU machine
    python benchmarks/run_all.py --small --out bench-results    # 2-core CPU, a few minutes

The script exits 0 whatever the verdicts (the figures are the product), and 1 only when a
benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

GPU_GOALS = {"samples_per_s": 150.0, "ratio": 15.0, "tflops": 250.0, "frames_per_sample": 96}
CPU_GOALS = {"train_ratio": 3.0, "infer_ratio": 3.0, "decord_over_jpeg": 1.0}


def native_bf16() -> bool:
    """Whether this machine's CPU computes bf16 natively (see ``engine.precision``)."""
    sys.path.insert(0, str(HERE.parent))
    from aqa_framework.engine.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


def plan(small: bool, gpu: bool, workers: int, bf16: bool = False) -> list[tuple[str, list[str]]]:
    """The benchmark commands to run: ``(name, arguments of the script)``.

    Args:
        small: The 2-core CPU configuration.
        gpu: A GPU is present (and not ``small``).
        workers: DataLoader workers of the data benchmark.
        bf16: The CPU has native bf16, so the default precision there is bf16 and an fp32 run
            is added (without it, CPU bf16 is emulated and far slower: not run).
    """
    size = ["--small"] if small else []
    runs = [
        ("train", ["bench_train.py", *size, *(["--steps", "20"] if small else [])]),
        ("infer", ["bench_infer.py", *size, *(["--steps", "20"] if small else [])]),
        ("methods", ["bench_methods.py", "--method", "all", *size]),
        ("extract", ["bench_extract.py", *size, *(["--threads", "1"] if small else [])]),
        ("data", ["bench_data.py", *size, "--workers", str(workers)]),
    ]
    if small:
        if bf16:
            runs.insert(1, ("train-fp32", ["bench_train.py", "--small", "--steps", "20",
                                           "--precision", "fp32"]))
        # the small videos are 320x180; broadcasts are larger, and there JPEG draft decoding
        # gains on decord, so a CPU run measures both sizes
        runs.append(("data-640x360", ["bench_data.py", "--workers", str(workers)]))
    if gpu:
        runs.insert(1, ("train-batch48", ["bench_train.py", "--batch", "48", "--steps", "30"]))
        runs.insert(2, ("train-compile", ["bench_train.py", "--compile", "--no-reference"]))
    return runs


def run_one(name: str, argv: list[str], out: Path, timeout: float) -> dict[str, Any] | None:
    """Run one benchmark script; keep its output and return its JSON results (or ``None``)."""
    result_file = out / f"{name}.json"
    log_file = out / f"{name}.log"
    cmd = [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(result_file)]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
        log_file.write_text((text or "") + f"\n[timed out after {timeout:.0f} s]\n")
        print(f"   timed out after {timeout:.0f} s (log: {log_file})")
        return None
    log_file.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    tail = [line for line in proc.stdout.splitlines() if "ratio" in line or "samples/s" in line]
    for line in tail[-4:]:
        print(f"   {line.strip()}")
    print(f"   {time.perf_counter() - start:.0f} s, exit {proc.returncode} (log: {log_file})")
    if proc.returncode != 0 or not result_file.is_file():
        return None
    return json.loads(result_file.read_text(encoding="utf-8"))


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return f"{value:.2f} (goal >= {goal:g}): {'met' if value >= goal else 'MISSED'}"


def _ratio(result: dict[str, Any] | None, key: str = "ours/official") -> float | None:
    return ((result or {}).get("ratios") or {}).get(key)


def _cpu_lines(results: dict[str, dict[str, Any] | None], small: bool) -> list[tuple[str, str]]:
    train = results.get("train") if small else None
    infer = results.get("infer") if small else None
    precision = ((train or {}).get("settings") or {}).get("precision", "default")
    verdict = _verdict(_ratio(train), CPU_GOALS["train_ratio"])
    floor = (train or {}).get("backbone_only")
    if floor:
        verdict += (f" (backbone alone {floor['share_of_our_step']:.0%} of our step; "
                    f"{floor['ceiling_ratio']:.2f}x if all else took no time)")
    lines = [
        (f"CPU training step, ours / official ({precision})", verdict),
        ("CPU inference per video, ours / official (batch 1)",
         _verdict(_ratio(infer), CPU_GOALS["infer_ratio"])),
    ]
    if small and "train-fp32" in results:
        lines.append(("CPU training step, ours fp32 / official",
                      _verdict(_ratio(results["train-fp32"]), CPU_GOALS["train_ratio"])))
    for key in ((infer or {}).get("ratios") or {}):
        if key.startswith("ours@batch"):
            lines.append((f"CPU inference per video, {key} (no goal)",
                          f"{infer['ratios'][key]:.2f}x measured"))
    return lines


def _gpu_lines(results: dict[str, dict[str, Any] | None], gpu: bool) -> list[tuple[str, str]]:
    if not gpu:
        return [(what, "not measured (no GPU in this run)") for what in (
            "GPU training, samples/s", "GPU training, ours / official", "GPU backbone TFLOP/s",
            "GPU data pipeline frames/s for that rate")]
    best = max(
        (r.get("rows", {}).get("ours", {}).get("samples_per_s", 0.0)
         for k, r in results.items() if k.startswith("train") and r),
        default=None,
    )
    ours = ((results.get("train") or {}).get("rows") or {}).get("ours", {})
    need = (best or 0.0) * GPU_GOALS["frames_per_sample"]
    rates = (results.get("data") or {}).get("frames_per_s", {})
    loader = max((v for k, v in rates.items() if "DataLoader" in k), default=None)
    return [
        ("GPU training, samples/s (best of the training runs)",
         _verdict(best, GPU_GOALS["samples_per_s"])),
        ("GPU training, ours / official", _verdict(_ratio(results.get("train")),
                                                   GPU_GOALS["ratio"])),
        ("GPU backbone TFLOP/s", _verdict(ours.get("backbone_tflops"), GPU_GOALS["tflops"])),
        (f"GPU data pipeline frames/s for that rate ({need:,.0f} needed)",
         _verdict(loader, need) if need else "not measured"),
    ]


def _measured_lines(results: dict[str, dict[str, Any] | None]) -> list[tuple[str, str]]:
    """The method families and feature extraction: ratios without a goal."""
    lines = []
    methods = (results.get("methods") or {}).get("methods") or {}
    for name in ("musdl", "core", "gdlt"):
        result = methods.get(name)
        ratio = _ratio(result)
        lines.append((f"{name.upper()} training step, ours / official (no goal)",
                      "not measured" if ratio is None else f"{ratio:.2f}x measured"))
        voting = _ratio((result or {}).get("voting"))
        if voting is not None:
            lines.append((f"{name.upper()} test-time voting, ours / official (no goal)",
                          f"{voting:.2f}x measured"))
    backbones = (results.get("extract") or {}).get("backbones") or {}
    for name, result in backbones.items():
        ratio = _ratio(result)
        lines.append((f"feature extraction clips/s, {name}, ours / official (no goal)",
                      "not measured" if ratio is None else f"{ratio:.2f}x measured"))
    if not backbones:
        lines.append(("feature extraction clips/s (no goal)", "not measured"))
    return lines


def summarise(
    results: dict[str, dict[str, Any] | None], small: bool, gpu: bool | None = None
) -> list[tuple[str, str]]:
    """Goal lines ``(what, verdict)`` from the results of :func:`run_one`.

    Args:
        results: JSON results by benchmark name (``None``: failed or not run).
        small: The CPU configuration ran (CPU goals measured).
        gpu: The GPU configuration ran (GPU goals measured); default ``not small``.
    """
    gpu = (not small) if gpu is None else gpu
    lines = _cpu_lines(results, small) + _gpu_lines(results, gpu)
    for key, label in (("data", ""), ("data-640x360", " at 640x360")):
        if key != "data" and key not in results:
            continue
        ratios = (results.get(key) or {}).get("ratios") or {}
        for jpeg in ("JPEG folder (PIL)", "JPEG folder (PIL, full size)"):
            r = ratios.get(f"decord/{jpeg}", {}).get("pipeline")
            lines.append(
                (f"decord / {jpeg}{label}, per frame", _verdict(r, CPU_GOALS["decord_over_jpeg"]))
            )
    return lines + _measured_lines(results)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print and save the summary; 1 if a benchmark failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="the 2-core CPU configuration")
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers in bench_data (default: 2 with --small, else 8)",
    )
    args = ap.parse_args(argv)

    import torch

    gpu = torch.cuda.is_available() and not args.small
    workers = args.workers or (2 if args.small else min(8, os.cpu_count() or 1))
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        name: run_one(name, argv_, args.out, args.timeout)
        for name, argv_ in plan(args.small, gpu, workers, bf16=native_bf16())
    }
    lines = summarise(results, args.small, gpu)
    width = max(len(what) for what, _ in lines)
    print("\n== goals")
    for what, verdict in lines:
        print(f"   {what.ljust(width)}  {verdict}")
    summary = {
        "small": args.small,
        "gpu": gpu,
        "goals": dict(lines),
        "failed": [k for k, v in results.items() if v is None],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if summary["failed"]:
        print(f"\nfailed or timed out: {', '.join(summary['failed'])} (see their logs)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
