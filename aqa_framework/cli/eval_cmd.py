"""``aqa evaluate`` and ``aqa predict``: apply a trained model from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aqa_framework import jsonio
from aqa_framework.cli.options import SetOption

CheckpointArg = Annotated[
    Path,
    typer.Argument(
        help="Run folder (uses checkpoints/best, else last) or checkpoint folder.",
        show_default=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def evaluate(
    checkpoint: CheckpointArg,
    split: Annotated[
        str | None, typer.Option("--split", help="Split to evaluate (default: eval.split).")
    ] = None,
    set_: SetOption = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Evaluation batch size.")
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option("--predictions", help="Also write the predictions to this CSV file."),
    ] = None,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate a trained model on a split of its dataset and print the metrics."""
    from aqa_framework.engine.inference import evaluate_split, load_trained_model

    trained = load_trained_model(checkpoint, set_ or [], device=device)
    split = split or trained.resolved.spec.eval.split
    result = evaluate_split(trained, split, batch_size)
    if predictions is not None:
        from aqa_framework.engine.run_folder import predictions_csv
        from aqa_framework.files import write_text_atomic

        labels = {f: c.labels for f, c in trained.targets.classes.items()}
        write_text_atomic(predictions, predictions_csv(result.columns(labels)))
    doc = {
        "checkpoint": str(trained.checkpoint.path),
        "epoch": trained.checkpoint.epoch,
        "split": split,
        "samples": len(result.keys),
        "skipped": {"count": len(result.skipped), "keys": result.skipped},
        "metrics": result.metrics,
    }
    note = _protocol_note(trained)
    if note:
        doc["note"] = note
    if as_json:
        typer.echo(jsonio.dumps(doc, indent=2))
        return
    from rich.table import Table

    from aqa_framework.cli.console import out

    left_out = f" ({len(result.skipped)} left out)" if result.skipped else ""
    table = Table(
        title=f"{split} split, {len(result.keys)} samples{left_out} - {trained.checkpoint.path} "
        f"(epoch {trained.checkpoint.epoch})",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    if note:
        out.print(f"note: {note}", highlight=False, markup=False)
    if predictions is not None:
        out.print(f"Predictions: {predictions}", highlight=False)


def _protocol_note(trained) -> str | None:  # noqa: ANN001
    """What a re-evaluation is not, for runs whose reported metrics are no single epoch's."""
    train = trained.resolved.spec.train
    if train.select_on != "last_mean":
        return None
    return (
        f"this run reported the mean of the test metrics of its last {train.last_epochs} epochs "
        "(train.select_on: last_mean); aqa evaluate evaluates one checkpoint, the last epoch's, "
        "so its figures are that epoch's, not the run's reported mean"
    )


def predict(
    video: Annotated[Path, typer.Argument(help="Video file or frame folder.", show_default=False)],
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            "-c",
            help="Run folder (uses checkpoints/best, else last) or checkpoint folder.",
            show_default=False,
        ),
    ],
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Score, classify and describe one video with a trained model."""
    from aqa_framework.errors import DataError

    if not video.exists():
        raise DataError(f"video not found: {video}")
    from aqa_framework.engine.inference import load_trained_model, predict_video

    trained = load_trained_model(checkpoint, device=device)
    preds = predict_video(trained, video)
    if as_json:
        doc = {
            "video": str(video),
            "checkpoint": str(trained.checkpoint.path),
            "epoch": trained.checkpoint.epoch,
            "predictions": preds,
        }
        typer.echo(jsonio.dumps(doc, indent=2))
        return
    from rich.table import Table

    from aqa_framework.cli.console import out

    targets = trained.targets
    table = Table(title=f"{video}", title_justify="left")
    for col in ("task", "output", "prediction"):
        table.add_column(col, overflow="fold")
    for task, cols in preds.items():
        for col, value in cols.items():
            if col in targets.scores:
                s = targets.scores[col]
                shown = f"{value:.2f} points (range {s.low:g}-{s.high:g})"
            else:
                shown = str(value)
            table.add_row(task, col, shown)
    out.print(table)
    out.print(
        f"checkpoint: {trained.checkpoint.path} (epoch {trained.checkpoint.epoch})",
        highlight=False,
        markup=False,
    )


COMMANDS = {"evaluate": evaluate, "predict": predict}
"""Command name -> function, registered on the root app by :mod:`aqa_framework.cli.main`."""
