"""Run every benchmark once and read the speed goals off the results.

Each benchmark runs in a subprocess of its own (a crash or a timeout in one leaves the others
and their results intact) and writes JSON next to its printed output in ``--out``. The summary
compares the figures with the goals of the benchmark plan:

* GPU: full C3D-AVG-MTL training at >= 150 samples/s, >= 15x the official approach measured in
  the same run, backbone >= 250 TFLOP/s; the data pipeline sustaining that rate;
* CPU (``--small``): our training step >= 2x the official one; whole-video decord reading at
  least as fast per frame as JPEG folders.

Usage::

    python benchmarks/run_all.py --out bench-results            # a GPU machine
    python benchmarks/run_all.py --small --out bench-results    # 2-core CPU, a few minutes

A goal is reported as met, missed or not measured; the script exits 0 either way (the figures
are the product), and 1 only when a benchmark itself failed.
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
CPU_GOALS = {"ratio": 2.0, "decord_over_jpeg": 1.0}


def plan(small: bool, gpu: bool, workers: int) -> list[tuple[str, list[str]]]:
    """The benchmark commands to run: ``(name, arguments of the script)``."""
    size = ["--small"] if small else []
    runs = [
        ("train", ["bench_train.py", *size, *(["--steps", "20"] if small else [])]),
        ("infer", ["bench_infer.py", *size]),
        ("data", ["bench_data.py", *size, "--workers", str(workers)]),
    ]
    if small:
        runs.insert(
            1, ("train-bf16", ["bench_train.py", "--small", "--steps", "20", "--precision", "bf16"])
        )
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


def summarise(results: dict[str, dict[str, Any] | None], small: bool) -> list[tuple[str, str]]:
    """Goal lines ``(what, verdict)`` from the results of :func:`run_one`."""
    train = results.get("train") or {}
    rows = train.get("rows", {})
    ours = rows.get("ours", {})
    ratio = (train.get("ratios") or {}).get("ours/official")
    data = results.get("data") or {}
    lines: list[tuple[str, str]] = []
    if small:
        lines.append(
            (
                "CPU training step, ours / official (default fp32)",
                _verdict(ratio, CPU_GOALS["ratio"]),
            )
        )
        bf16 = (results.get("train-bf16") or {}).get("ratios", {}).get("ours/official")
        lines.append(
            ("CPU training step, ours bf16 / official", _verdict(bf16, CPU_GOALS["ratio"]))
        )
    else:
        best = max(
            (
                r.get("rows", {}).get("ours", {}).get("samples_per_s", 0.0)
                for k, r in results.items()
                if k.startswith("train") and r
            ),
            default=None,
        )
        lines.append(
            (
                "GPU training, samples/s (best of the training runs)",
                _verdict(best, GPU_GOALS["samples_per_s"]),
            )
        )
        lines.append(("GPU training, ours / official", _verdict(ratio, GPU_GOALS["ratio"])))
        lines.append(
            ("GPU backbone TFLOP/s", _verdict(ours.get("backbone_tflops"), GPU_GOALS["tflops"]))
        )
        need = (best or 0.0) * GPU_GOALS["frames_per_sample"]
        rates = data.get("frames_per_s", {})
        loader = max((v for k, v in rates.items() if "DataLoader" in k), default=None)
        lines.append(
            (
                f"data pipeline frames/s for that rate ({need:,.0f} needed)",
                _verdict(loader, need) if need else "not measured",
            )
        )
    for key, label in (("data", ""), ("data-640x360", " at 640x360")):
        if key != "data" and key not in results:
            continue
        ratios = (results.get(key) or {}).get("ratios") or {}
        for jpeg in ("JPEG folder (PIL)", "JPEG folder (PIL, full size)"):
            r = ratios.get(f"decord/{jpeg}", {}).get("pipeline")
            lines.append(
                (f"decord / {jpeg}{label}, per frame", _verdict(r, CPU_GOALS["decord_over_jpeg"]))
            )
    return lines


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
        for name, argv_ in plan(args.small, gpu, workers)
    }
    lines = summarise(results, args.small)
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
