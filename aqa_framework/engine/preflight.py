"""The checks ``aqa run`` makes before it trains, shared with ``aqa validate``.

``aqa run`` finds a bad ``train.device``, ``eval.split``, optimizer or schedule, a missing
``pretrained`` file, a clip too small for the backbone or a sample its video cannot serve.
:func:`preflight` makes the same checks, through the same functions and in the same order, on
a model built on the ``meta`` device (no memory, no weights loaded), so ``aqa validate`` fails
on each of them with the message ``aqa run`` would give. Both also warn
(:class:`InputNormalizationWarning`) when the dataset normalises frames otherwise than the
backbone's pretrained weights expect.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqa_framework.resolve import check_eval_split

if TYPE_CHECKING:
    import torch

    from aqa_framework.interfaces import VideoDataset
    from aqa_framework.model import MultitaskModel
    from aqa_framework.resolve import ResolvedSpec
    from aqa_framework.spec import Spec, TrainSpec

__all__ = [
    "InputNormalizationWarning",
    "Preflight",
    "check_eval_split",
    "check_input_normalization",
    "check_optimization",
    "check_pretrained",
    "check_settings",
    "input_normalization_mismatch",
    "preflight",
    "sizing_input_shape",
]


def check_settings(spec: Spec) -> torch.device:
    """Resolve ``train.device``, ``train.precision`` and the epoch selection as a run does.

    Returns:
        The device a run would use here.

    Raises:
        SpecError: At ``train.device`` (unknown, or a GPU asked for where there is none),
            ``train.precision`` (fp16 without a GPU) or ``train.select_metric`` /
            ``train.select_on``.
    """
    from aqa_framework.engine.precision import resolve_device, resolve_precision
    from aqa_framework.engine.selection import resolve_selection

    device = resolve_device(spec.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    resolve_precision(spec.train.precision, device)
    resolve_selection(spec, has_val=spec.data.val_fraction > 0)
    return device


def check_pretrained(model: MultitaskModel) -> None:
    """Check every ``pretrained`` file (backbone, aggregator, heads) from its header.

    The weights are not loaded.

    Raises:
        CheckpointError: With the message loading it would give (missing, unreadable, not
            plain tensors); see :func:`aqa_framework.weights.check_weight_file`.
    """
    from aqa_framework.builder import pretrained_files
    from aqa_framework.weights import check_weight_file

    for _, _, path in pretrained_files(model):
        check_weight_file(path)


class InputNormalizationWarning(UserWarning):
    """The dataset normalises frames otherwise than the backbone's pretrained weights expect."""


_NORM_TOLERANCE = 1e-3


def _values(v: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(x):g}" for x in v) + "]"


def _differs(given: Sequence[float], expected: Sequence[float]) -> bool:
    return len(given) != len(expected) or any(
        abs(float(a) - float(b)) > _NORM_TOLERANCE for a, b in zip(given, expected, strict=False)
    )


def input_normalization_mismatch(resolved: ResolvedSpec) -> str | None:
    """Why the dataset's frames do not look like what the backbone's weights expect, or ``None``.

    Only a backbone that loads a ``pretrained`` file and declares its
    :meth:`~aqa_framework.interfaces.Backbone.input_normalization` is compared, with a
    dataset whose params have ``mean`` and ``std`` (and ``normalize``, if any); values within
    1e-3 agree.

    Args:
        resolved: A resolved spec.
    """
    backbone, data = resolved.backbone, resolved.dataset
    weights = backbone.cls.pretrained_file(backbone.params)
    declared = getattr(backbone.cls, "input_normalization", None)
    expected = declared(backbone.params) if weights and declared else None
    params = data.params
    if expected is None or not (hasattr(params, "mean") and hasattr(params, "std")):
        return None
    mean, std = expected
    wants = (
        f"backbone '{backbone.name}' loads {weights}, whose weights expect frames normalised "
        f"with mean {_values(mean)} and std {_values(std)}"
    )
    values = f"{data.path}.params.mean: {_values(mean)} and std: {_values(std)}"
    if getattr(params, "normalize", True) is False:
        return (
            f"{wants}, but dataset '{data.name}' does not normalise them "
            f"({data.path}.params.normalize: false); set normalize: true, {values}"
        )
    if _differs(params.mean, mean) or _differs(params.std, std):
        return (
            f"{wants}, but dataset '{data.name}' normalises with mean {_values(params.mean)} "
            f"and std {_values(params.std)}; set {values}"
        )
    return None


def check_input_normalization(resolved: ResolvedSpec) -> str | None:
    """Warn when the dataset's normalisation differs from what the pretrained backbone expects.

    See :func:`input_normalization_mismatch`; a mismatch is a warning, not an error (the
    model can still learn, worse).

    Returns:
        The warning's message, or ``None`` when nothing was warned.
    """
    message = input_normalization_mismatch(resolved)
    if message:
        warnings.warn(message, InputNormalizationWarning, stacklevel=2)
    return message


def check_optimization(model: torch.nn.Module, train: TrainSpec) -> None:
    """Create the optimizer and the learning-rate schedule for a (meta-device) model.

    Raises:
        SpecError: At ``train.optimizer`` or ``train.scheduler`` when timm refuses them.
    """
    from aqa_framework.engine.optim import build_optimizer, build_scheduler

    build_scheduler(build_optimizer(model, train), train)


def sizing_input_shape(dataset: VideoDataset) -> tuple[int, ...] | None:
    """The sample shape to size a model for: declared, else from the video params, else read.

    The dataset's :meth:`~aqa_framework.interfaces.VideoDataset.input_shape` comes first; a
    dataset that does not declare it is sized from the common video params
    (:func:`~aqa_framework.video.params.video_input_shape`) when its params have them, else
    from its first sample, as ``aqa run`` does.
    """
    from aqa_framework.builder import dataset_input_shape
    from aqa_framework.video.params import video_input_shape

    shape = dataset_input_shape(dataset) or video_input_shape(dataset.params)
    if shape is None and len(dataset) > 0:
        shape = tuple(dataset[0]["video"].shape)
    return shape


@dataclass
class Preflight:
    """What :func:`preflight` found.

    Attributes:
        dataset: The training split (opened without augmentation).
        model: The model, on the ``meta`` device.
        input_shape: One sample's ``(N, C, T, H, W)`` the model was sized for.
        counts: Parameter counts (:func:`aqa_framework.builder.count_parameters`).
        device: The device a run would use here.
        samples_checked: Whether every sample was checked against its video (the dataset
            implements :meth:`~aqa_framework.interfaces.VideoDataset.check_samples`).
        val_split: How a pair dataset's validation split is drawn by video, with its counts
            (``None`` for a plain draw).
    """

    dataset: VideoDataset
    model: MultitaskModel
    input_shape: tuple[int, ...] | None
    counts: dict[str, int] = field(default_factory=dict)
    device: Any = None
    samples_checked: bool = False
    val_split: str | None = None


def preflight(resolved: ResolvedSpec, *, samples: bool = True) -> Preflight:
    """Everything ``aqa run`` checks before training, without training or loading weights.

    In the order a run meets them: device, precision and epoch selection; ``eval.split``; the
    training split and the validation/training subset sizes; the evaluation split; the model
    (heads against the dataset's targets, shapes for the dataset's samples); evaluation
    batches of sequences of different lengths against a model that cannot mask padding out
    (:func:`~aqa_framework.data.padding.check_eval_lengths`); the ``pretrained`` file (its
    header) and the input normalisation its weights expect (a warning,
    :func:`check_input_normalization`); optimizer and schedule; then, with
    ``samples``, each sample of both splits against its video
    (:meth:`VideoDataset.check_samples`).

    Args:
        resolved: A resolved spec.
        samples: Also open every video (header only) to check each sample's window and crop.

    Returns:
        The :class:`Preflight` summary.

    Raises:
        SpecError: For settings, splits, heads or shapes that do not fit.
        DataError: If a split cannot be opened or a sample cannot be loaded.
        CheckpointError: If the ``pretrained`` file cannot be read.
    """
    from aqa_framework.builder import build_model, count_parameters, open_dataset
    from aqa_framework.data.padding import check_eval_lengths
    from aqa_framework.data.subsets import split_indices

    spec = resolved.spec
    device = check_settings(spec)
    check_eval_split(resolved)
    dataset = open_dataset(resolved, "train", train=False)
    split = split_indices(
        dataset, spec.data.val_fraction, spec.data.train_size, spec.data.subset_seed
    )
    evaluation = (
        dataset
        if spec.eval.split == "train"
        else open_dataset(resolved, spec.eval.split, train=False)
    )
    shape = sizing_input_shape(dataset)
    model = build_model(resolved, dataset.targets, device="meta", input_shape=shape)
    check_eval_lengths(
        model, resolved.dataset, spec.data.eval_batch_size or spec.data.batch_size
    )
    check_pretrained(model)
    check_input_normalization(resolved)
    check_optimization(model, spec.train)
    from aqa_framework.interfaces import VideoDataset

    checked = samples and type(dataset).check_samples is not VideoDataset.check_samples
    if checked:
        dataset.check_samples()
        if evaluation is not dataset:
            evaluation.check_samples()
    return Preflight(
        dataset, model, shape, count_parameters(model), device, checked, split.note or None
    )
