"""Load a trained model back from a checkpoint: ``aqa evaluate`` and ``aqa predict``.

A checkpoint folder holds the resolved spec and the dataset's targets, so a model can be
rebuilt and applied to a new video without the dataset's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aqa_framework.engine.checkpoint import Checkpoint, load_checkpoint, load_weights
from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.loaders import eval_loader, resolve_num_workers
from aqa_framework.engine.loop import EvalResult, evaluate
from aqa_framework.engine.precision import autocast, resolve_device, resolve_precision
from aqa_framework.errors import CheckpointError, DataError, SpecError
from aqa_framework.resolve import ResolvedSpec
from aqa_framework.targets import Targets


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint, in evaluation mode.

    Attributes:
        model: The multitask model with the checkpoint's weights.
        resolved: The checkpoint's spec (after any overrides), resolved.
        targets: The dataset's targets stored in the checkpoint.
        checkpoint: The checkpoint (metadata and path).
        device: Where the model lives.
        precision: ``fp32``, ``bf16`` or ``fp16``.
    """

    model: Any
    resolved: ResolvedSpec
    targets: Targets
    checkpoint: Checkpoint
    device: torch.device
    precision: str


def _without_pretrained(resolved: ResolvedSpec) -> None:
    """Drop ``pretrained`` weight paths: the checkpoint supplies every weight."""
    for comp in (resolved.backbone, resolved.aggregator, *resolved.heads.values()):
        comp.params = comp.cls.without_pretrained(comp.params)


def load_trained_model(
    path: str | Path, overrides: list[str] | None = None, device: str = "auto"
) -> TrainedModel:
    """Rebuild the model of a run folder or checkpoint folder.

    The checkpoint's spec is resolved by :func:`aqa_framework.resolve.load` (its relative
    paths made absolute against the directory the run was started from, then the overrides).

    Args:
        path: Run folder (its ``best`` checkpoint, else ``last``) or checkpoint folder.
        overrides: ``a.b.c=value`` changes to the stored spec (e.g. a new data root).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        CheckpointError: If there is no readable checkpoint, its spec does not resolve or it
            does not fit the model.
        SpecError: If an override is invalid.
    """
    from aqa_framework.builder import build_model
    from aqa_framework.resolve import load, run_base_dir

    ckpt = load_checkpoint(path, training_state=False)
    source = str(ckpt.path / "checkpoint.json")
    try:
        resolved = load(ckpt.spec, overrides or [], base_dir=run_base_dir(ckpt.path), label=source)
    except SpecError as exc:
        if overrides:
            raise
        raise CheckpointError(f"the spec stored in the checkpoint is not valid: {exc}") from None
    spec = resolved.spec
    _without_pretrained(resolved)
    try:
        targets = ckpt.targets
    except ValueError as exc:
        raise CheckpointError(f"the targets stored in {source} are not valid: {exc}") from None
    dev = resolve_device(device)
    model = build_model(resolved, targets, device=dev, input_shape=ckpt.meta.get("input_shape"))
    load_weights(model, ckpt.model_state, ckpt.path)
    if spec.train.channels_last:
        model.to_channels_last()
    model.eval()
    precision = resolve_precision(spec.train.precision, dev)
    return TrainedModel(model, resolved, targets, ckpt, dev, precision)


def evaluate_split(
    trained: TrainedModel, split: str | None = None, batch_size: int | None = None
) -> EvalResult:
    """Evaluate a trained model on a split of its dataset (opened from the stored spec).

    Args:
        trained: The model.
        split: Split name (default: the spec's ``eval.split``).
        batch_size: Evaluation batch size (default: the spec's).

    Raises:
        DataError: If the dataset or split cannot be opened.
        SpecError: If batches of several samples would hold sequences of different lengths
            and the model cannot mask zero padding out
            (:func:`~aqa_framework.data.padding.check_eval_lengths`).
    """
    from aqa_framework.data.open import open_data
    from aqa_framework.data.padding import SequencePadding, check_eval_lengths

    spec = trained.resolved.spec
    bs = batch_size or spec.data.eval_batch_size or spec.data.batch_size
    check_eval_lengths(trained.model, trained.resolved.dataset, bs)
    cls = trained.resolved.dataset.cls
    dataset = open_data(trained.resolved, training=False, split=split or spec.eval.split).test
    if dataset.targets != trained.targets:
        raise DataError(
            f"dataset '{cls.name}' now provides different targets than the model was trained "
            "with (classes, score range or vocabulary changed)"
        )
    workers = resolve_num_workers(spec.data.num_workers, trained.device)
    padding = SequencePadding.for_model(trained.model)
    loader = eval_loader(dataset, bs, workers, DistContext(), padding=padding)
    result = evaluate(
        model=trained.model,
        loader=loader,
        device=trained.device,
        precision=trained.precision,
        ctx=DistContext(),
    )
    # also those left out when the split was opened (on_error: skip)
    result.skipped = sorted({*getattr(dataset, "dropped_keys", []), *result.skipped})
    return result


def load_video(trained: TrainedModel, path: str | Path) -> torch.Tensor:
    """Turn a video file (or frame folder) into one model input ``(N, C, T, H, W)``.

    Every dataset does it through its
    :meth:`~aqa_framework.interfaces.VideoDataset.read_video`, with the params stored in the
    checkpoint and the frame size of the training videos recorded there, so that a video of
    another size gets the field of view the model was trained on (see
    :meth:`~aqa_framework.video.loader.ClipLoader.load_any`); the dataset's files are not
    needed.

    Raises:
        DataError: If the video does not exist or cannot be read.
        PredictNotSupported: If the dataset cannot read arbitrary videos.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    comp = trained.resolved.dataset
    size = trained.checkpoint.meta.get("frame_size")
    frame_size = (int(size[0]), int(size[1])) if size else None
    return comp.cls.read_video(comp.params, path, frame_size=frame_size)


@torch.no_grad()
def predict_video(trained: TrainedModel, path: str | Path) -> dict[str, dict[str, Any]]:
    """Predictions of every task for one video, in words and points.

    Returns:
        ``{task: {column: value}}``: scores in points, class fields as their labels,
        commentary as text.
    """
    video = load_video(trained, path).unsqueeze(0).to(trained.device)
    with autocast(trained.device, trained.precision):
        outputs = trained.model(video, None)
    preds = trained.model.predict(outputs)
    classes = trained.targets.classes
    out: dict[str, dict[str, Any]] = {}
    for task, cols in preds.items():
        out[task] = {}
        for col, values in cols.items():
            value = values[0]
            if col in classes and isinstance(value, int):
                labels = classes[col].labels
                value = labels[value] if 0 <= value < len(labels) else value
            elif isinstance(value, float):
                value = round(value, 4)
            out[task][col] = value
    return out
