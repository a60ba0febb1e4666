"""``aqa data``: prepare datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aqa_framework.cli.options import SetOption, SpecArg

if TYPE_CHECKING:
    from aqa_framework.experiments.shards import Shard

app = typer.Typer(help="Prepare datasets (synthetic data, frame caches).", no_args_is_help=True)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 96x72, got {text!r}") from None
    return w, h


@app.command("synth")
def synth(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder to create (MTL-AQA layout, or JIGSAWS with --kind jigsaws).",
            show_default=False,
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="What to generate: 'diving' (MTL-AQA format) or 'jigsaws' (surgical trials "
            "in MUSDL's JIGSAWS format).",
        ),
    ] = "diving",
    dives: Annotated[
        int | None, typer.Option("--dives", help="Number of dives (diving; default 300).")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", help="Trials per task, 8-200 (jigsaws; default 24)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            help="Frame size WIDTHxHEIGHT (default 96x72 for diving, 64x48 for jigsaws).",
            show_default=False,
        ),
    ] = None,
    dives_per_event: Annotated[
        int | None,
        typer.Option("--dives-per-event", help="Dives per event video (diving; default 30)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="Processes rendering videos (diving; default: CPUs, at most 4)."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an earlier synthetic dataset there (only the files it generated; "
            "files you added are kept, or, for jigsaws, make it refuse).",
        ),
    ] = False,
) -> None:
    """Generate SYNTHETIC videos and annotations: diving (MTL-AQA format) or surgery (JIGSAWS).

    Diving: the folder is read by the `mtl-aqa` dataset (root: OUT_DIR); the
    `synthetic-diving` dataset generates the same data on first use. Jigsaws: MUSDL's
    label.pkl and splits.pkl plus one video per trial and camera, read by the `jigsaws`
    dataset; `synthetic-jigsaws` generates it on first use. Cartoons, not real footage.
    """
    if kind not in ("diving", "jigsaws"):
        raise typer.BadParameter(f"--kind must be 'diving' or 'jigsaws', got {kind!r}")
    if kind == "jigsaws":
        given = [
            o
            for o, v in (("--dives", dives), ("--dives-per-event", dives_per_event))
            if v is not None
        ]
        if given:
            raise typer.BadParameter(f"{', '.join(given)}: only for --kind diving (use --trials)")
        _synth_jigsaws(
            out_dir, 24 if trials is None else trials, seed, _parse_size(size or "64x48"), overwrite
        )
        return
    if trials is not None:
        raise typer.BadParameter("--trials: only for --kind jigsaws (use --dives)")
    _synth_diving(
        out_dir,
        300 if dives is None else dives,
        seed,
        _parse_size(size or "96x72"),
        dives_per_event=30 if dives_per_event is None else dives_per_event,
        workers=workers,
        overwrite=overwrite,
    )


def _synth_diving(
    out_dir: Path,
    dives: int,
    seed: int,
    size: tuple[int, int],
    *,
    dives_per_event: int,
    workers: int | None,
    overwrite: bool,
) -> None:
    """Generate synthetic dives and print a summary."""
    from rich.table import Table

    from aqa_framework.cli.console import out
    from aqa_framework.synth.diving import default_workers, generate_diving

    summary = generate_diving(
        out_dir,
        dives,
        seed,
        size,
        dives_per_event=dives_per_event,
        workers=workers or default_workers(),
        overwrite=overwrite,
    )
    table = Table(title=f"Synthetic diving data (not real) in {summary.root}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("dives", f"{summary.dives} ({summary.train} train / {summary.test} test)")
    table.add_row(
        "videos",
        f"{summary.events} event videos, {summary.frames} frames of "
        f"{summary.size[0]}x{summary.size[1]} ({summary.codec})",
    )
    s = summary.scores
    table.add_row(
        "final_score",
        f"{s['min']:.1f} - {s['max']:.1f} (mean {s['mean']:.1f}, std {s['std']:.1f})",
    )
    for field, counts in summary.classes.items():
        table.add_row(field, " ".join(f"{i}:{c}" for i, c in enumerate(counts)))
    table.add_row("vocabulary", f"{summary.vocab_size} words")
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)
    out.print(f"Read it with: data: {{name: mtl-aqa, params: {{root: {summary.root}}}}}")


def _synth_jigsaws(
    out_dir: Path, trials: int, seed: int, size: tuple[int, int], overwrite: bool
) -> None:
    """Generate synthetic surgical trials and print a summary."""
    from rich.table import Table

    from aqa_framework.cli.console import out
    from aqa_framework.synth.jigsaws import generate_jigsaws

    summary = generate_jigsaws(out_dir, trials, seed, size, overwrite=overwrite)
    table = Table(
        title=f"Synthetic JIGSAWS-format data (not real) in {summary.root}", show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    for task, n in summary.trials.items():
        folds = "/".join(map(str, summary.folds[task]))
        table.add_row(task, f"{n} trials (folds {folds})")
    table.add_row(
        "videos",
        f"{sum(summary.trials.values())} x 2 cameras, {summary.frames} frames per camera of "
        f"{summary.size[0]}x{summary.size[1]} ({summary.codec})",
    )
    g = summary.grs
    table.add_row(
        "grs", f"{g['min']:.0f} - {g['max']:.0f} (mean {g['mean']:.1f}, std {g['std']:.1f})"
    )
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)
    out.print(
        f"Read it with: data: {{name: jigsaws, params: {{root: {summary.root}, layout: videos, "
        "video_pattern: '{task}/video/{trial}_{camera}.mp4', num_clips: 3, clip_length: 16, "
        f"crop: {min(summary.size)}}}}}"
    )


@app.command("cache")
def cache(
    spec: SpecArg,
    set_: SetOption = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Split(s) to cache (default: all).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            min=0,
            help="Processes decoding in parallel (default: the CPU cores, at most 8; 0 decodes "
            "in this process).",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Cache only shard i of n (i/n, numbered 0 to n-1): n processes or nodes fill "
            "one cache without overlap.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fill the decoded-frame cache (data.params.cache_dir) of a spec's dataset ahead of training.

    Every frame a training window can reach (jitter included) is decoded once and stored, so
    no epoch decodes video afterwards. Entries are written atomically, so an interrupted fill
    keeps what it finished and a second run only decodes the rest. With --shard i/n, shard i
    takes samples i, i+n, ... of each split; the cache's manifest.json records, per dataset
    and split, which shards are done and whether the split is complete.
    """
    from rich.progress import track
    from torch.utils.data import DataLoader, Subset

    from aqa_framework.cli.console import err, out
    from aqa_framework.data.open import open_data
    from aqa_framework.engine.loaders import MAX_AUTO_WORKERS
    from aqa_framework.env import usable_cores
    from aqa_framework.errors import AQAError
    from aqa_framework.experiments.shards import parse_shard
    from aqa_framework.resolve import load
    from aqa_framework.video.cache import FrameCache

    part = parse_shard(shard)
    resolved = load(spec, set_ or [])
    cache_dir = resolved.dataset.cls.frame_cache_dir(resolved.dataset.params)
    if not cache_dir:
        raise AQAError(
            f"dataset '{resolved.dataset.name}' has no cache_dir: set data.params.cache_dir "
            "(e.g. --set data.params.cache_dir=.aqa-cache/frames)"
        )
    if workers is None:
        workers = min(MAX_AUTO_WORKERS, usable_cores())
    for name in split or list(resolved.dataset.cls.splits):
        full = open_data(resolved, training=False, split=name).test
        dataset = Subset(full, part.select(range(len(full))))
        job = _cache_job(resolved, name)
        _record_cache_shard(cache_dir, job, part, "running", len(dataset), len(full))
        # one sample per item, nothing collated: the workers only decode and write the cache
        loader = DataLoader(
            dataset, batch_size=None, num_workers=min(workers, len(dataset)), collate_fn=_keep_key
        )
        for _ in track(loader, total=len(dataset), description=f"{name}:", console=err):
            pass
        complete = _record_cache_shard(cache_dir, job, part, "done", len(dataset), len(full))
        which = "" if part.count == 1 else f" (shard {part.label}; split complete: {complete})"
        out.print(f"{name}: {len(dataset)} samples cached{which}")
    size = FrameCache(cache_dir).size_bytes() / 2**20
    out.print(f"Frame cache {cache_dir}: {size:.1f} MiB")


def _keep_key(sample: dict) -> str:
    """What a cache-filling worker sends back: the key only, not the decoded clips."""
    return sample["key"]


def _cache_job(resolved: Any, split: str) -> dict[str, Any]:
    """What a cache fill covers: the dataset, its params and the split."""
    dataset = resolved.dataset
    return {
        "dataset": dataset.name,
        "params": dataset.params.model_dump(mode="json"),
        "split": split,
    }


def _record_cache_shard(
    cache_dir: str, job: dict[str, Any], part: Shard, status: str, samples: int, total: int
) -> bool:
    """Record a shard's status in ``<cache_dir>/manifest.json``; return whether the job is done.

    Jobs are keyed by a hash of the dataset, its params and the split; a job is complete when
    every shard of its latest shard count is done.
    """
    from aqa_framework.experiments.shards import locked_json_update, shard_entry
    from aqa_framework.video.cache import settings_hash

    key = settings_hash(**job)

    def update(doc: dict[str, Any]) -> bool:
        entry = doc.setdefault("jobs", {}).setdefault(key, {**job, "shards": {}})
        count = part.count
        if entry.get("shard_count") != count:
            entry["shards"] = {}
        entry["shard_count"] = count
        entry["samples"] = total
        entry["shards"][str(part.index)] = shard_entry(status, samples=samples)
        done = sum(1 for s in entry["shards"].values() if s["status"] == "done")
        entry["complete"] = done == count
        return bool(entry["complete"])

    return locked_json_update(Path(cache_dir) / "manifest.json", update)
