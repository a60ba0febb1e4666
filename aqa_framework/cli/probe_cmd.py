"""``aqa probe`` (layer-wise linear probes) and ``aqa baseline svr`` (C3D-SVR)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aqa_framework.cli.options import SetOption

SourceArg = Annotated[
    Path,
    typer.Argument(
        help="A spec file (its backbone, fresh or with its pretrained weights) or a run folder "
        "(its trained backbone).",
        show_default=False,
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="Run or checkpoint folder whose trained backbone is probed (with a spec as SOURCE: "
        "the spec gives the data, the run the model).",
    ),
]
TrainDataOpt = Annotated[
    Path | None,
    typer.Option(
        "--train-data",
        help="YAML with a data mapping (or a whole spec) to fit the regressor on; default: "
        "the spec's data.",
        dir_okay=False,
    ),
]
TestDataOpt = Annotated[
    Path | None,
    typer.Option(
        "--test-data",
        help="YAML with a data mapping (or a whole spec) to score on; default: the spec's data.",
        dir_okay=False,
    ),
]
TrainSplitOpt = Annotated[str, typer.Option("--train-split", help="Split of the train data.")]
TestSplitOpt = Annotated[str, typer.Option("--test-split", help="Split of the test data.")]
ScoreOpt = Annotated[
    str | None,
    typer.Option("--score", help="Score to regress (default: the dataset's first score)."),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Folder for the table (default: the run folder, else output.dir/probe-NAME).",
    ),
]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="File name stem of the table (default: probe).")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Feature cache folder (default: $AQA_FEATURE_CACHE or ~/.cache/aqa-framework).",
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="'auto', 'cpu', 'cuda' or 'cuda:N'.")]


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run(
    source: Path,
    checkpoint: Path | None,
    overrides: list[str] | None,
    layers: list[str] | None,
    train_data: Path | None,
    train_split: str,
    test_data: Path | None,
    test_split: str,
    regressor,
    pool: str | None,
    score: str | None,
    output: Path | None,
    name: str,
    title: str,
    cache_dir: Path | None,
    no_cache: bool,
    device: str,
) -> None:
    from aqa_framework.cli.console import err, out
    from aqa_framework.experiments.features import FeatureCache, Pooling, default_cache_dir
    from aqa_framework.experiments.probe import load_data_choice, load_probe_target, run_probe

    target = load_probe_target(source, checkpoint, overrides or [])
    cache = FeatureCache(None if no_cache else (cache_dir or default_cache_dir()))
    err.print(f"[bold]probe[/] {target.label}", highlight=False)
    result = run_probe(
        target.resolved,
        target.backbone,
        layers=layers,
        train=load_data_choice(train_data, train_split),
        test=load_data_choice(test_data, test_split),
        regressor=regressor,
        pooling=Pooling.parse(pool),
        cache=cache,
        device=_device(device),
        score=score,
        title=title,
        model_label=target.label,
    )
    folder = output or target.run_dir
    if folder is None:
        spec = target.resolved.spec
        stem = Path(target.resolved.source or "spec").stem
        folder = Path(spec.output.dir) / f"probe-{stem}"
    paths = result.write(folder, name)
    out.print(result.rich_table())
    out.print(f"Wrote {', '.join(str(p) for p in paths)}", highlight=False)


def probe(
    source: SourceArg,
    checkpoint: CheckpointOpt = None,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers",
            "-l",
            help="Comma-separated layers (default: the backbone's probe points, e.g. "
            "pool1..pool5 for c3d); 'output' is the backbone's flattened output.",
        ),
    ] = None,
    train_data: TrainDataOpt = None,
    train_split: TrainSplitOpt = "train",
    test_data: TestDataOpt = None,
    test_split: TestSplitOpt = "test",
    regressor: Annotated[
        str, typer.Option("--regressor", "-r", help="'ridge' (RidgeCV) or 'svr'.")
    ] = "ridge",
    pool: Annotated[
        str,
        typer.Option(
            "--pool", help="'avg' (global average) or an adaptive pooling size such as 1,2,2."
        ),
    ] = "avg",
    score: ScoreOpt = None,
    output: OutputOpt = None,
    name: NameOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
    set_: SetOption = None,
) -> None:
    """Fit a linear regressor on each layer's (cached) activations; report Spearman per layer."""
    from aqa_framework.experiments.probe import RegressorConfig

    names = [x.strip() for x in layers.split(",") if x.strip()] if layers else None
    _run(
        source, checkpoint, set_, names, train_data, train_split, test_data, test_split,
        RegressorConfig(regressor), pool, score, output, name or "probe", "Linear probes",
        cache_dir, no_cache, device,
    )


baseline_app = typer.Typer(
    help="Feature baselines of the paper (Table 7).", no_args_is_help=True
)


@baseline_app.command("svr")
def svr(
    source: SourceArg,
    checkpoint: CheckpointOpt = None,
    layer: Annotated[
        str,
        typer.Option(
            "--layer",
            help="Layer whose pooled features feed the SVR; 'output' is the backbone's "
            "flattened output (c3d: pool5, 8192 values per 16x112x112 clip).",
        ),
    ] = "output",
    kernel: Annotated[str, typer.Option("--kernel", help="SVR kernel.")] = "linear",
    c: Annotated[float, typer.Option("--c", help="SVR regularisation C.")] = 1.0,
    epsilon: Annotated[
        float, typer.Option("--epsilon", help="SVR epsilon (standardised score units).")
    ] = 0.1,
    train_data: TrainDataOpt = None,
    train_split: TrainSplitOpt = "train",
    test_data: TestDataOpt = None,
    test_split: TestSplitOpt = "test",
    score: ScoreOpt = None,
    output: OutputOpt = None,
    name: NameOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
    set_: SetOption = None,
) -> None:
    """C3D-SVR: support vector regression on backbone features averaged over clips."""
    from aqa_framework.experiments.probe import RegressorConfig

    reg = RegressorConfig("svr", svr_kernel=kernel, svr_c=c, svr_epsilon=epsilon)
    _run(
        source, checkpoint, set_, [layer], train_data, train_split, test_data, test_split,
        reg, "avg", score, output, name or "svr", "Feature baseline: SVR", cache_dir, no_cache,
        device,
    )


COMMANDS = {"probe": probe}
"""Command name -> function, registered on the root app by :mod:`aqa_framework.cli.main`."""
