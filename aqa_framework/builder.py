"""Assemble datasets and models from a resolved spec.

The builder wires every dimension: the dataset declares its targets, the backbone's clip
feature shape and the aggregator's video feature shape are inferred by a forward pass on the
``meta`` device (no memory, no compute), and each head is built for the features it consumes
and the targets it needs. A head that does not fit the dataset is reported before anything
is trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aqa_framework.errors import AQAError, SpecError

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel
    from torch import nn

    from aqa_framework.interfaces import Backbone, VideoDataset
    from aqa_framework.model import MultitaskModel
    from aqa_framework.resolve import ResolvedComponent, ResolvedSpec
    from aqa_framework.targets import Targets

DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 3, 16, 112, 112)
"""``(N, C, T, H, W)`` used for shape inference when neither the dataset nor the backbone
says what one sample looks like."""


def open_dataset(resolved: ResolvedSpec, split: str = "train", train: bool = False) -> VideoDataset:
    """Open one split of the spec's dataset.

    Args:
        resolved: A resolved spec.
        split: Split name (``train``, ``test`` ...).
        train: Whether to apply training-time augmentation.
    """
    ds = resolved.dataset
    return ds.cls(ds.params, split=split, train=train)


def check_heads(resolved: ResolvedSpec, targets: Targets) -> list[tuple[str, str]]:
    """``(path, message)`` for every head whose targets the dataset does not provide."""
    problems = []
    for task, head in resolved.heads.items():
        unknown = [
            name
            for name in head.cls.prediction_inputs(head.params)
            if name not in targets.scores and name not in targets.arrays
        ]
        problem = head.cls.check_targets(head.params, targets) or (
            f"head '{head.name}' reads {unknown} when predicting, which is neither a score nor "
            f"an open target of the dataset ({targets.describe()})"
            if unknown
            else None
        )
        if problem:
            problems.append((head.path or f"model.heads.{task}", f"{problem} (dataset "
                             f"'{resolved.dataset.name}')"))
    return problems


def _normalize_shape(shape: Any, features: bool = False) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if features:
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2:
            raise ValueError(
                f"a backbone that takes clip features needs samples of clip features (L, D); "
                f"the dataset yields samples of shape {shape} (video clips: use a video "
                "backbone such as c3d, or a feature dataset)"
            )
        return shape
    if len(shape) == 2:
        raise ValueError(
            f"the dataset yields clip feature sequences (L, D) = {shape}, which a video "
            "backbone cannot read; use backbone 'identity' for pre-extracted features"
        )
    if len(shape) == 4:
        shape = (1, *shape)
    if len(shape) != 5:
        raise ValueError(f"input_shape must be (N, C, T, H, W) or (C, T, H, W), got {shape}")
    return shape


def _construct(comp: ResolvedComponent, *args: Any) -> Any:
    try:
        return comp.cls(comp.params, *args)
    except (ValueError, RuntimeError) as exc:
        raise SpecError([(comp.path, f"{comp.kind} '{comp.name}' cannot be built: {exc}")]) from exc


def _input_shape(backbone: Backbone, input_shape: Any) -> tuple[int, ...]:
    features = getattr(backbone, "input_kind", "video") == "features"
    if input_shape is not None:
        return _normalize_shape(input_shape, features)
    default = getattr(backbone, "default_input_shape", None)
    if default is not None:
        return _normalize_shape(default, features)
    return DEFAULT_INPUT_SHAPE


def infer_shapes(
    resolved: ResolvedSpec, input_shape: Any = None
) -> tuple[nn.Module, nn.Module, tuple[int, ...], tuple[int, ...]]:
    """Build backbone and aggregator on the meta device and infer their feature shapes.

    Args:
        resolved: A resolved spec.
        input_shape: One sample's ``(N, C, T, H, W)`` (or ``(C, T, H, W)``), or ``(L, D)``
            clip features for a backbone whose ``input_kind`` is ``"features"``; defaults to
            the backbone's ``default_input_shape``.

    Returns:
        The meta backbone and aggregator, the clip feature shape ``F`` and the video feature
        shape ``G`` (without batch dimensions).

    Raises:
        SpecError: If a component cannot be built or cannot process that input.
    """
    import torch

    with torch.device("meta"):
        backbone = _construct(resolved.backbone)
        try:
            shape = _input_shape(backbone, input_shape)
        except ValueError as exc:
            raise SpecError([(resolved.backbone.path, f"backbone '{resolved.backbone.name}' "
                              f"does not fit the dataset's samples: {exc}")]) from exc
        n = shape[0]
        backbone.eval()
        try:
            feats = backbone(torch.empty(2 * n, *shape[1:]))
        except (RuntimeError, ValueError) as exc:
            raise SpecError([(resolved.backbone.path, f"backbone '{resolved.backbone.name}' "
                              f"cannot process clips of shape {shape[1:]}: {exc}")]) from exc
        clip_shape = tuple(feats.shape[1:])
        aggregator = _construct(resolved.aggregator, clip_shape)
        aggregator.eval()
        try:
            video = aggregator(feats.unflatten(0, (2, n)))
        except (RuntimeError, ValueError, AQAError) as exc:
            raise SpecError([(resolved.aggregator.path, f"aggregator "
                              f"'{resolved.aggregator.name}' cannot pool clip features of "
                              f"shape {clip_shape} ({n} clips per video): {exc}")]) from exc
        video_shape = tuple(video.shape[1:])
    return backbone, aggregator, clip_shape, video_shape


def build_model(
    resolved: ResolvedSpec,
    targets: Targets,
    device: str | torch.device = "cpu",
    *,
    input_shape: Any = None,
) -> MultitaskModel:
    """Assemble the multitask model of a spec for a dataset's targets.

    Heads are checked against ``targets`` first; shapes are inferred on the meta device;
    then the modules are constructed on ``device`` and pretrained weights (the ``pretrained``
    param of the backbone, the aggregator or a head) are loaded. With ``device="meta"`` nothing
    is allocated and no weights are loaded (for validation and parameter counts).

    Args:
        resolved: A resolved spec.
        targets: What the dataset provides.
        device: Where to create the parameters.
        input_shape: One sample's ``(N, C, T, H, W)``; defaults to the backbone's
            ``default_input_shape`` (e.g. 3x16x112x112 for ``c3d``).

    Returns:
        The model, in training mode.

    Raises:
        SpecError: ``model.heads.<task>`` when a head needs targets the dataset lacks, or the
            component's path when it cannot be built for the inferred shapes.
        CheckpointError: When a pretrained file cannot be loaded.
    """
    import torch

    from aqa_framework.model import MultitaskModel

    problems = check_heads(resolved, targets)
    if problems:
        raise SpecError(problems, source=resolved.source)
    device = torch.device(device)
    meta_backbone, meta_aggregator, clip_shape, video_shape = infer_shapes(resolved, input_shape)
    if device.type == "meta":
        backbone, aggregator = meta_backbone, meta_aggregator
    else:
        with device:
            backbone = _construct(resolved.backbone)
            aggregator = _construct(resolved.aggregator, clip_shape)
    heads = {}
    with device:
        for task, head in resolved.heads.items():
            in_shape = clip_shape if head.cls.consumes == "clips" else video_shape
            heads[task] = _construct(head, in_shape, targets)
    model = MultitaskModel(
        backbone,
        aggregator,
        heads,
        loss_weights={task: h.loss_weight for task, h in resolved.heads.items()},
        targets=targets,
    )
    model.train()
    if device.type != "meta":
        for _, component, path in pretrained_files(model):
            component.load_pretrained(path)
    return model


def pretrained_files(model: MultitaskModel) -> list[tuple[str, Any, str]]:
    """``(part, component, file)`` for each component whose ``pretrained`` param names a file.

    Parts are ``backbone``, ``aggregator`` and ``heads.<task>``, in that order; the file is
    the component's :meth:`~aqa_framework.interfaces.PretrainedWeights.pretrained_file`.
    """
    parts = [("backbone", model.backbone), ("aggregator", model.aggregator)]
    parts += [(f"heads.{task}", head) for task, head in model.heads.items()]
    found = []
    for part, component in parts:
        path = type(component).pretrained_file(component.params)
        if path:
            found.append((part, component, path))
    return found


def count_parameters(model: MultitaskModel) -> dict[str, int]:
    """Parameter counts: ``backbone``, ``aggregator``, ``heads.<task>``, ``total``, ``trainable``.

    Works on meta-device models (counts need no memory).
    """
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    out = {"backbone": count(model.backbone), "aggregator": count(model.aggregator)}
    out.update({f"heads.{task}": count(h) for task, h in model.heads.items()})
    out["total"] = count(model)
    out["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return out


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def dataset_input_shape(
    dataset: VideoDataset | type[VideoDataset], params: BaseModel | None = None
) -> tuple[int, ...] | None:
    """One sample's ``(N, C, T, H, W)`` as the dataset declares it, or ``None``.

    The declaration is the class method
    :meth:`~aqa_framework.interfaces.VideoDataset.input_shape` (given the params, no data
    needed). Datasets written for aqa-framework 0.1 may instead have an ``input_shape``
    property; it is read from the instance.

    Args:
        dataset: An opened split, or a dataset class (then ``params`` are needed).
        params: The dataset's params (default: ``dataset.params``).
    """
    import inspect

    instance = None if isinstance(dataset, type) else dataset
    cls = dataset if isinstance(dataset, type) else type(dataset)
    if params is None and instance is not None:
        params = instance.params
    attr = inspect.getattr_static(cls, "input_shape", None)
    if isinstance(attr, classmethod | staticmethod):
        shape = cls.input_shape(params) if params is not None else None
    elif instance is not None:
        shape = getattr(instance, "input_shape", None)  # a 0.1-style property or attribute
        if callable(shape):
            shape = None
    else:
        shape = None
    return tuple(int(s) for s in shape) if shape is not None else None


def check_spec(resolved: ResolvedSpec, *, samples: bool = True) -> str:
    """Make the checks ``aqa run`` makes before training, and summarise the model.

    See :func:`aqa_framework.engine.preflight.preflight`. The model is assembled on the meta
    device for the dataset's sample shape; weights are not loaded (the ``pretrained`` file's
    header is checked).

    Args:
        resolved: A resolved spec.
        samples: Also check every sample of the training and evaluation splits against its
            video (header only).

    Returns:
        A one-line summary: dataset size and targets, input shape, parameter counts.

    Raises:
        SpecError: If a setting, a split, a head or a shape does not fit.
        DataError: If the dataset cannot be opened or a sample cannot be loaded.
        CheckpointError: If the ``pretrained`` file cannot be read.
    """
    from aqa_framework.engine.preflight import preflight

    found = preflight(resolved, samples=samples)
    dataset, model, counts = found.dataset, found.model, found.counts
    heads = ", ".join(f"{t} {_human(counts[f'heads.{t}'])}" for t in model.heads)
    frozen = counts["total"] - counts["trainable"]
    frozen_txt = f", {_human(frozen)} frozen" if frozen else ""
    shape = found.input_shape
    shape_txt = f" of {'x'.join(map(str, shape))}" if shape else ""
    checked = "; every sample's video checked" if found.samples_checked else ""
    if found.val_split:
        checked += f"; {found.val_split}"
    return (
        f"dataset '{resolved.dataset.name}' train split: {len(dataset)} samples{shape_txt} "
        f"with {dataset.targets.describe()}; model {_human(counts['total'])} "
        f"parameters{frozen_txt} (backbone {resolved.backbone.name} "
        f"{_human(counts['backbone'])}, aggregator {resolved.aggregator.name} "
        f"{_human(counts['aggregator'])}, heads: {heads}){checked}"
    )
