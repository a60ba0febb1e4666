"""``aqa features extract``: clip features of whole videos, one file per video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Pre-extracted clip features for long videos (read by the 'features' dataset).",
    no_args_is_help=True,
)


def _parse_param(text: str) -> tuple[str, object]:
    import yaml

    from aqa_framework.errors import AQAError

    if "=" not in text:
        raise AQAError(f"--param {text!r}: expected NAME=VALUE (e.g. width=0.5)")
    name, value = text.split("=", 1)
    return name.strip(), yaml.safe_load(value)


def _open_splits(source: Path, splits: list[str]) -> tuple[str, dict]:
    from aqa_framework.errors import AQAError, SpecError
    from aqa_framework.registry import get_registry
    from aqa_framework.spec import load_raw

    raw = load_raw(source)
    data = raw.get("data", raw)
    if not isinstance(data, dict) or "name" not in data:
        raise SpecError([("data", "expected a data mapping with 'name' (and 'params')")],
                        str(source))
    cls = get_registry().get("dataset", str(data["name"]))
    if not hasattr(cls, "clip_loader"):
        raise AQAError(f"dataset '{data['name']}' does not read videos (no clip loader); "
                       "extract features from a video dataset")
    params = cls.parse_params(data.get("params") or {})
    wanted = splits or list(cls.splits)
    return str(data["name"]), {s: cls(params, split=s, train=False) for s in wanted}


def extract(
    source: Annotated[
        Path,
        typer.Argument(help="A spec or data YAML whose dataset gives the videos.",
                       show_default=False, exists=True, dir_okay=False),
    ],
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Registered backbone.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Local weight file of the backbone.",
                     exists=True, dir_okay=False),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Backbone param NAME=VALUE (repeatable).",
                     show_default=False),
    ] = None,
    clip_length: Annotated[int, typer.Option("--clip-length", min=1,
                                             help="Frames per clip.")] = 16,
    stride: Annotated[int, typer.Option("--stride", min=1,
                                        help="Frames between clip starts.")] = 16,
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Split to extract (repeatable; default: every split)."),
    ] = None,
    batch_clips: Annotated[int, typer.Option("--batch-clips", min=1,
                                             help="Clips per backbone call.")] = 32,
    device: Annotated[str, typer.Option("--device", help="'auto', 'cpu' or 'cuda[:N]'.")] = "auto",
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Extract only shard i of n (i/n, numbered 0 to n-1), so n "
                     "processes fill one --out folder without overlap.", show_default=False),
    ] = None,
) -> None:
    """Run a backbone over every video in sliding clips; write <key>.npy (clips x features).

    The folder's manifest.json records the backbone, its params, the weight file's SHA-256,
    clip length and stride, and each video's status; running again skips finished videos.
    Each --param NAME=VALUE sets a backbone param. With --shard i/n, n processes (or nodes
    sharing the folder) split the videos; the manifest records each shard and sets
    "complete" once every video is done.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from aqa_framework.cli.console import err
    from aqa_framework.cli.console import out as console
    from aqa_framework.data.feature_files import sha256_file
    from aqa_framework.experiments.extract import ExtractSettings, extract_clip_features
    from aqa_framework.experiments.shards import parse_shard
    from aqa_framework.registry import get_registry

    part = parse_shard(shard)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cls = get_registry().get("backbone", backbone)
    raw_params = dict(_parse_param(p) for p in (param or []))
    field = cls.pretrained_param
    if weights is not None and field in cls.Params.model_fields:
        raw_params[field] = None
    params = cls.parse_params(raw_params)
    model = cls(params)
    if weights is not None:
        model.load_pretrained(weights)
    dataset_name, datasets = _open_splits(source, list(split or []))
    first = next(iter(datasets.values()))
    p = first.params
    settings = ExtractSettings(
        backbone=backbone,
        params=cls.without_pretrained(params).model_dump(mode="json"),
        weights_sha256=sha256_file(weights) if weights is not None else None,
        clip_length=clip_length,
        stride=stride,
        dataset=dataset_name,
        transform={k: dict(p).get(k) for k in ("resize", "crop", "mean", "std")},
    )
    total = sum(len(d) for d in datasets.values())
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[key]}"), console=err) as bar:
        task = bar.add_task(f"{backbone} features", total=total, key="")
        summary = extract_clip_features(
            model, datasets, out, settings, batch_clips=batch_clips, device=device,
            progress=lambda key, done, n: bar.update(task, completed=done, total=n, key=key),
            shard=part,
        )
    where = f"{out}" if part.count == 1 else f"{out} (shard {part.label})"
    console.print(
        f"{where}: {len(summary.written)} written, {len(summary.skipped)} already done, "
        f"{len(summary.failed)} failed; {summary.feature_dim} features per clip"
    )
    for key, why in list(summary.failed.items())[:5]:
        err.print(f"  {key}: {why}")
    if summary.failed:
        raise typer.Exit(1)


app.command("extract")(extract)
