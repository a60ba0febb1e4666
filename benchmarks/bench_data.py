"""Loader benchmark: frames/s of whole-video decord reading, JPEG frame folders and the frame cache.

All three read the same clips: the script generates synthetic event videos (several dives
each) in a temporary folder, extracts the same frames as JPEG folders (the official
``whole_videos_frames/NN/000001.jpg`` layout) and then times, over every sample of the split,

* ``decode``: the reader alone (uint8 frames of each sample's window: video frames at full
  size, JPEGs decoded at PIL's reduced draft size, or at full size as the official code reads
  them);
* ``pipeline``: the full ``mtl-aqa`` sample (read, resize, crop, normalise, (N, C, T, H, W));
  the video reader resizes 16 decoded frames at a time;
* ``cache (cold)`` / ``cache (warm)``: the pipeline with the decoded-frame cache, on the
  first epoch (decodes and writes) and on a later one (memory-mapped reads only).

Usage::

    python benchmarks/bench_data.py                 # 640x360 videos, C3D-AVG sampling
    python benchmarks/bench_data.py --quick         # smaller and faster
    python benchmarks/bench_data.py --workers 4     # also through a DataLoader

Single-process rows run with one torch thread (``--threads``), as a DataLoader worker does:
decord decodes in a thread of its own, and on a small machine torch's intra-op threads
competing with it slow both down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _versions() -> dict[str, str]:
    import av
    import decord
    import numpy
    import PIL
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "decord": decord.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _extract_jpegs(videos: Path, frames: Path, quality: int) -> int:
    import decord
    from PIL import Image

    total = 0
    for video in sorted(videos.glob("*.mp4")):
        out = frames / video.stem
        out.mkdir(parents=True)
        vr = decord.VideoReader(str(video), num_threads=0)
        for start in range(0, len(vr), 256):
            batch = vr.get_batch(list(range(start, min(start + 256, len(vr))))).asnumpy()
            for i, frame in enumerate(batch):
                Image.fromarray(frame).save(out / f"{start + i + 1:06d}.jpg", quality=quality)
        total += len(vr)
    return total


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x360", help="Video frame size WxH (default 640x360).")
    ap.add_argument("--dives", type=int, default=12, help="Synthetic dives (samples) to read.")
    ap.add_argument("--resize", default="171x128", help="Pipeline resize WxH (C3D-AVG).")
    ap.add_argument("--crop", type=int, default=112, help="Pipeline center crop.")
    ap.add_argument("--repeat", type=int, default=3, help="Timed passes (median reported).")
    ap.add_argument("--workers", type=int, default=0, help="Also time a DataLoader with N workers.")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (DataLoader workers use 1)."
    )
    ap.add_argument("--jpeg-quality", type=int, default=90, help="Quality of extracted JPEGs.")
    ap.add_argument(
        "--quick", "--small", action="store_true", help="320x180, 8 dives, 1 pass (CPU smoke run)."
    )
    ap.add_argument("--keep", help="Generate into this folder and keep it.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.dives, args.repeat = "320x180", 8, 1

    import numpy as np
    import torch
    from aqa_builtin.datasets.mtl_aqa import MTLAQADataset

    from aqa_framework.synth.diving import generate_diving

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rw, rh = (int(v) for v in args.resize.lower().split("x"))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aqa-bench-data-"))
    root = work / "synthetic"
    t = time.perf_counter()
    summary = generate_diving(
        root, dives=args.dives, seed=0, size=(width, height), dives_per_event=6, test_fraction=0.25
    )
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    n_jpeg = _extract_jpegs(root / "whole_videos", root / "whole_videos_frames", args.jpeg_quality)
    t_jpeg = time.perf_counter() - t

    common = {"root": str(root), "resize": [rw, rh], "crop": args.crop, "flip": False}

    def dataset(**params):
        return MTLAQADataset(MTLAQADataset.parse_params({**common, **params}), "train", False)

    video_ds = dataset()
    frames_ds = dataset(layout="frames")
    official_ds = dataset(layout="frames")  # PIL at full size, as the official code reads
    draft_reader = official_ds._loader.reader

    def full_size_reader(source):
        reader = draft_reader(source)
        reader.size = None
        return reader

    official_ds._loader.reader = full_size_reader
    cache_ds = dataset(cache_dir=str(work / "cache"))
    n = len(video_ds)
    offsets = video_ds._loader.sampling.offsets()
    per_sample = int(np.unique(offsets).size)  # distinct frames each sample needs

    def decode_only(ds):
        loader = ds._loader

        def run():
            for rec in ds.records:
                reader = loader.reader(rec.source)
                plan = loader.sampling.plan(reader.num_frames, end=rec.end)
                reader.read(np.unique(plan.start + offsets))

        return run

    def pipeline(ds):
        def run():
            for i in range(len(ds)):
                ds[i]

        return run

    rows: list[tuple[str, float]] = []
    for name, fn in [
        ("decord whole video: decode", decode_only(video_ds)),
        ("JPEG folder (PIL): decode", decode_only(frames_ds)),
        ("JPEG folder (PIL, full size): decode", decode_only(official_ds)),
        ("decord whole video: pipeline", pipeline(video_ds)),
        ("JPEG folder (PIL): pipeline", pipeline(frames_ds)),
        ("JPEG folder (PIL, full size): pipeline", pipeline(official_ds)),
    ]:
        fn()  # warm-up: opens readers, fills the OS page cache
        rows.append((name, n * per_sample / _time(fn, args.repeat)))
    t = time.perf_counter()
    pipeline(cache_ds)()
    rows.append(
        ("frame cache: pipeline, cold (decode+write)", n * per_sample / (time.perf_counter() - t))
    )
    rows.append(
        ("frame cache: pipeline, warm", n * per_sample / _time(pipeline(cache_ds), args.repeat))
    )
    if args.workers:
        from torch.utils.data import DataLoader

        for label, ds in [
            ("decord whole video", video_ds),
            ("JPEG folder (PIL)", frames_ds),
            ("frame cache warm", cache_ds),
        ]:
            # persistent workers, timed after a warm-up pass: the steady state of a long
            # epoch, not the start-up of worker processes (which a six-sample pass would time)
            dl = DataLoader(ds, batch_size=4, num_workers=args.workers, persistent_workers=True)
            [None for _ in dl]
            rows.append(
                (
                    f"{label}: DataLoader x{args.workers}",
                    n * per_sample / _time(lambda dl=dl: [None for _ in dl], args.repeat),
                )
            )
            del dl

    cache_mb = sum(p.stat().st_size for p in (work / "cache").rglob("*.npy")) / 2**20
    print("aqa-framework data loader benchmark (synthetic videos)")
    print(f"  device   : {_cpu()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print("  versions : " + ", ".join(f"{k} {v}" for k, v in _versions().items()))
    print(
        f"  videos   : {summary.events} event videos, {summary.frames} frames of "
        f"{width}x{height} ({summary.codec}), generated in {t_gen:.1f} s"
    )
    print(
        f"  JPEGs    : {n_jpeg} frames at quality {args.jpeg_quality}, extracted in {t_jpeg:.1f} s"
    )
    print(
        f"  samples  : {n} (train split), {offsets.shape[0]} clips x {offsets.shape[1]} frames, "
        f"{per_sample} distinct frames per sample"
    )
    print(f"  pipeline : resize {rw}x{rh}, crop {args.crop}, ImageNet normalisation, no flip")
    print(f"  cache    : {cache_mb:.1f} MiB for {n} samples; median of {args.repeat} pass(es)")
    base = rows[0][1]
    width_name = max(len(r[0]) for r in rows)
    print(f"\n  {'method'.ljust(width_name)}  {'frames/s':>10}  {'vs decord decode':>16}")
    for name, fps in rows:
        print(f"  {name.ljust(width_name)}  {fps:10.0f}  {fps / base:15.2f}x")
    rate = dict(rows)
    for jpeg in ("JPEG folder (PIL)", "JPEG folder (PIL, full size)"):
        decode = rate["decord whole video: decode"] / rate[f"{jpeg}: decode"]
        full = rate["decord whole video: pipeline"] / rate[f"{jpeg}: pipeline"]
        print(
            f"\n  ratio decord whole video / {jpeg}, per frame: "
            f"decode {decode:.2f}x, pipeline {full:.2f}x",
            end="",
        )
    print()
    need = 150 * per_sample  # the GPU training goal: 150 samples/s
    decoding = max(fps for name, fps in rows if name.endswith(": pipeline"))
    warm = rate["frame cache: pipeline, warm"]
    print(
        f"  feeding 150 samples/s needs {need:,} frames/s: {math.ceil(need / decoding)} "
        f"decoding process(es) at the best decoding pipeline rate, or "
        f"{math.ceil(need / warm)} reading the warm frame cache"
    )
    if args.json is not None:
        ratios = {
            f"decord/{jpeg}": {
                "decode": rate["decord whole video: decode"] / rate[f"{jpeg}: decode"],
                "pipeline": rate["decord whole video: pipeline"] / rate[f"{jpeg}: pipeline"],
            }
            for jpeg in ("JPEG folder (PIL)", "JPEG folder (PIL, full size)")
        }
        results = {
            "benchmark": "data",
            "environment": {"cpu": _cpu(), "cpus": os.cpu_count(), **_versions()},
            "settings": {
                **vars(args),
                "json": str(args.json),
                "samples": n,
                "frames_per_sample": per_sample,
            },
            "frames_per_s": rate,
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
