"""Contract checks: one per component kind, plus the registry checks.

Every check exercises a contract on tiny CPU shapes and raises :class:`ContractError` (an
``AssertionError``, so pytest shows it as a failed assertion) with a message that names the
component and the broken rule.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor
from torch.utils.data import default_collate

from aqa_framework import hookimpl
from aqa_framework.interfaces import Aggregator, Backbone, TaskHead, VideoDataset
from aqa_framework.kinds import KINDS, component_label, component_problems
from aqa_framework.model import prediction_inputs
from aqa_framework.registry import Registry, RegistryEntry
from aqa_framework.targets import Targets
from aqa_framework.testing.datasets import fake_batch, tiny_targets

__all__ = [
    "ContractError",
    "check_aggregator",
    "check_backbone",
    "check_component_class",
    "check_dataset",
    "check_head",
    "check_registered",
    "registry_with",
]


class ContractError(AssertionError):
    """A component breaks its interface contract."""


_label = component_label


def _require(condition: bool, obj: Any, message: str) -> None:
    if not condition:
        raise ContractError(f"{_label(obj)}: {message}")


def registry_with(plugin: str, classes: Iterable[type], *, builtins: bool = True) -> Registry:
    """A registry with in-memory components as if a plugin called ``plugin`` registered them.

    Handy before a plugin is installed (the names must carry the ``plugin.`` prefix).

    Args:
        plugin: Plugin (prefix) name.
        classes: Component classes of any kind.
        builtins: Whether to include the built-in components.

    Returns:
        A fresh :class:`~aqa_framework.registry.Registry` that loads no installed plugin.
    """
    by_kind: dict[str, list[type]] = {kind: [] for kind in KINDS}
    for cls in classes:
        by_kind[cls.kind].append(cls)
    in_memory = SimpleNamespace(
        **{KINDS[kind].hook: _registering(listed) for kind, listed in by_kind.items()}
    )
    return Registry(
        entry_points=[], builtins=builtins, extra_plugins=[(plugin, in_memory)], strict=True
    )


def _registering(classes: list[type]) -> Any:
    """A hook implementation that registers ``classes``."""

    @hookimpl
    def hook(register: Any) -> None:
        for cls in classes:
            register(cls)

    return hook


# ---------------------------------------------------------------------------------------------
# contract checks


def check_component_class(cls: type, kind: str | None = None) -> None:
    """Check the class-level identity every component carries.

    Rules: a subclass of its kind's interface; a lower-case registry ``name`` (``c3d`` or
    ``plugin.name``); a one-line summary (first docstring line); a pydantic ``Params`` that
    forbids unknown keys and describes every field: those of
    :func:`aqa_framework.kinds.component_problems`, as the registry and the documentation
    generator check them.

    Args:
        cls: The component class.
        kind: Expected kind; defaults to ``cls.kind``.

    Raises:
        ContractError: Naming the rule the class breaks.
    """
    problems = component_problems(cls, kind)
    _require(not problems, cls, problems[0] if problems else "")


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t.detach().float()).all())


def _check_grads(module: torch.nn.Module, obj: Any) -> None:
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        return
    with_grad = [p for p in trainable if p.grad is not None]
    _require(bool(with_grad), obj, "backward reached none of its trainable parameters")
    _require(
        all(_finite(p.grad) for p in with_grad), obj, "backward produced non-finite gradients"
    )


def _on_meta(obj: Any, build):
    try:
        with torch.device("meta"):
            return build()
    except Exception as exc:  # report any failure as a contract problem
        raise ContractError(
            f"{_label(obj)}: cannot be built on the meta device (the builder infers shapes "
            f"there; load files in load_pretrained, not __init__): {type(exc).__name__}: {exc}"
        ) from exc


def check_backbone(
    cls: type[Backbone],
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    input_shape: Sequence[int] = (3, 16, 32, 32),
    batch: int = 2,
    seed: int = 0,
) -> tuple[int, ...]:
    """Check a backbone: identity, meta-device build, forward shape, backward, probe layers.

    Args:
        cls: The backbone class.
        params: Raw or validated params (keep them small; this runs on CPU).
        input_shape: One clip, ``(C, T, H, W)``.
        batch: Number of clips ``M`` in the test batch.
        seed: Seed of the weights and the input.

    Returns:
        The feature shape of one clip, ``F``.

    Raises:
        ContractError: Naming the broken rule.
    """
    check_component_class(cls, "backbone")
    p = cls.parse_params(params)
    torch.manual_seed(seed)
    model = cls(p)
    clips = torch.randn(batch, *input_shape)
    model.train()
    feats = model(clips)
    _require(isinstance(feats, Tensor), cls, f"forward returned {type(feats).__name__}")
    _require(
        feats.ndim >= 2 and feats.shape[0] == batch,
        cls,
        f"forward must return (M, *F) for M={batch} clips, got {tuple(feats.shape)}",
    )
    _require(_finite(feats), cls, "forward produced non-finite features")
    feats.float().square().mean().backward()
    _check_grads(model, cls)
    feat_shape = tuple(feats.shape[1:])
    meta = _on_meta(cls, lambda: cls(p))
    meta_out = meta(torch.empty(batch, *input_shape, device="meta"))
    _require(
        tuple(meta_out.shape[1:]) == feat_shape,
        cls,
        f"meta-device forward gives {tuple(meta_out.shape[1:])}, CPU gives {feat_shape}",
    )
    for layer in cls.layers:
        try:
            model.get_submodule(layer)
        except AttributeError:
            raise ContractError(
                f"{_label(cls)}: layers names {layer!r}, which is not a submodule"
            ) from None
    return feat_shape


def check_aggregator(
    cls: type[Aggregator],
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    in_shape: Sequence[int] = (16,),
    num_clips: int = 3,
    batch: int = 2,
    seed: int = 0,
) -> tuple[int, ...]:
    """Check an aggregator: forward shape, per-sample independence, backward, meta build.

    Args:
        cls: The aggregator class.
        params: Raw or validated params.
        in_shape: Features of one clip, ``F``.
        num_clips: Clips per video ``N``.
        batch: Videos ``B`` in the test batch (at least 2).
        seed: Seed of the weights and the input.

    Returns:
        The video feature shape ``G``.

    Raises:
        ContractError: Naming the broken rule.
    """
    check_component_class(cls, "aggregator")
    p = cls.parse_params(params)
    in_shape = tuple(in_shape)
    torch.manual_seed(seed)
    agg = cls(p, in_shape)
    x = torch.randn(batch, num_clips, *in_shape, requires_grad=True)
    agg.train()
    out = agg(x)
    _require(isinstance(out, Tensor), cls, f"forward returned {type(out).__name__}")
    _require(
        out.ndim >= 2 and out.shape[0] == batch,
        cls,
        f"forward must map (B, N, *F) to (B, *G) with B={batch}, got {tuple(out.shape)}",
    )
    _require(_finite(out), cls, "forward produced non-finite features")
    out.float().square().mean().backward()
    _check_grads(agg, cls)
    _require(
        x.grad is not None and bool(x.grad.abs().sum() > 0),
        cls,
        "gradients do not flow back to the clip features (the backbone would not train)",
    )
    x = x.detach()
    agg.eval()
    with torch.no_grad():
        full, first = agg(x), agg(x[:1])
    _require(
        torch.allclose(full[:1], first, atol=1e-5, rtol=1e-4),
        cls,
        "in eval mode a video's features must not depend on the other videos in the batch",
    )
    meta = _on_meta(cls, lambda: cls(p, in_shape))
    meta_out = meta(torch.empty(batch, num_clips, *in_shape, device="meta"))
    _require(
        tuple(meta_out.shape) == tuple(out.shape),
        cls,
        f"meta-device forward gives {tuple(meta_out.shape)}, CPU gives {tuple(out.shape)}",
    )
    return tuple(out.shape[1:])


def _check_columns(head: type, what: str, columns: Any, batch_size: int) -> None:
    _require(
        isinstance(columns, dict) and bool(columns),
        head,
        f"{what} must return a non-empty dict column -> list, got {type(columns).__name__}",
    )
    for col, values in columns.items():
        _require(
            isinstance(values, list) and len(values) == batch_size,
            head,
            f"{what}()[{col!r}] must be a list with one value per sample ({batch_size})",
        )
        for v in values:
            _require(
                isinstance(v, str | numbers.Number) and not isinstance(v, Tensor),
                head,
                f"{what}()[{col!r}] must hold plain Python values, got {type(v).__name__}",
            )


def check_head(
    cls: type[TaskHead],
    targets: Targets | None = None,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    in_shape: Sequence[int] = (16,),
    num_clips: int = 3,
    batch_size: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Round-trip a head: targets check, forward, loss, backward, predict, references, metrics.

    Args:
        cls: The head class.
        targets: What the dataset provides; defaults to :func:`tiny_targets`.
        params: Raw or validated params.
        in_shape: Shape of the features it consumes (``G`` for video-level heads, ``F`` for
            clip-level heads), without batch and clip dims.
        num_clips: Clips per video for clip-level heads.
        batch_size: Samples per batch (two batches are evaluated).
        seed: Seed of the weights and the data.

    Returns:
        The metrics of the untrained head on two fake batches.

    Raises:
        ContractError: Naming the broken rule.
    """
    check_component_class(cls, "head")
    targets = targets or tiny_targets()
    p = cls.parse_params(params)
    in_shape = tuple(in_shape)
    reason = cls.check_targets(p, targets)
    _require(reason is None, cls, f"rejects the test targets ({targets.describe()}): {reason}")
    empty = cls.check_targets(p, Targets())
    _require(
        isinstance(empty, str) and bool(empty),
        cls,
        "check_targets must explain (return a message) when the dataset provides no targets",
    )
    _require(cls.consumes in ("video", "clips"), cls, f"consumes {cls.consumes!r}")
    torch.manual_seed(seed)
    head = cls(p, in_shape, targets)
    lead = (batch_size,) if cls.consumes == "video" else (batch_size, num_clips)
    batches = [
        fake_batch(targets, batch_size, video_shape=None, seed=seed + i) for i in range(2)
    ]

    head.train()
    features = torch.randn(*lead, *in_shape, requires_grad=True)
    outputs = head(features, batches[0])
    _require(isinstance(outputs, dict), cls, f"forward returned {type(outputs).__name__}")
    loss = head.loss(outputs, batches[0])
    _require(
        isinstance(loss, Tensor) and loss.ndim == 0,
        cls,
        f"loss must be a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}",
    )
    _require(_finite(loss), cls, f"loss is not finite ({float(loss.detach())})")
    _require(loss.requires_grad, cls, "loss does not depend on the head's parameters")
    loss.backward()
    _check_grads(head, cls)
    _require(
        features.grad is not None and bool(features.grad.abs().sum() > 0),
        cls,
        "gradients do not flow back to the features (the backbone would not train)",
    )

    head.eval()
    predictions: dict[str, list] = {}
    references: dict[str, list] = {}
    with torch.no_grad():
        for batch in batches:
            outputs = head(torch.randn(*lead, *in_shape), None)
            names = cls.prediction_inputs(p)
            preds = (
                head.predict(outputs, prediction_inputs(batch, names))
                if names
                else head.predict(outputs)
            )
            refs = head.references(batch)
            _check_columns(cls, "predict", preds, batch_size)
            _check_columns(cls, "references", refs, batch_size)
            _require(
                set(preds) == set(refs),
                cls,
                f"predict columns {sorted(preds)} differ from references columns {sorted(refs)}",
            )
            for col in preds:
                predictions.setdefault(col, []).extend(preds[col])
                references.setdefault(col, []).extend(refs[col])
    metrics = head.metrics(predictions, references)
    _require(
        isinstance(metrics, dict) and bool(metrics), cls, "metrics must return a non-empty dict"
    )
    for key, value in metrics.items():
        _require(
            isinstance(key, str) and "." not in key,
            cls,
            f"metric name {key!r} must be a plain name (the engine adds '<task>.')",
        )
        _require(
            isinstance(value, numbers.Real) and not math.isinf(float(value)),
            cls,
            f"metric {key!r} must be a float (nan allowed, not inf), got {value!r}",
        )
    _on_meta(cls, lambda: cls(p, in_shape, targets))
    return {k: float(v) for k, v in metrics.items()}


def _check_arrays(dataset: VideoDataset, where: str, arrays: Any) -> None:
    """A sample's open targets: one float tensor per declared array, of its shape and range."""
    declared = dataset.targets.arrays
    _require(
        isinstance(arrays, dict) and set(arrays) == set(declared),
        dataset,
        f"{where}: arrays {sorted(arrays) if isinstance(arrays, dict) else arrays!r} differ "
        f"from targets.arrays {sorted(declared)}",
    )
    for name, value in arrays.items():
        target = declared[name]
        _require(
            isinstance(value, Tensor) and value.dtype == torch.float32,
            dataset,
            f"{where}: arrays[{name!r}] must be a float32 tensor, got "
            f"{getattr(value, 'dtype', type(value).__name__)}",
        )
        problem = target.problem(value.numpy())
        _require(problem is None, dataset, f"{where}: arrays[{name!r}] {problem}")


def _check_sample(dataset: VideoDataset, index: int, sample: Any) -> None:
    targets = dataset.targets
    where = f"sample {index}"
    _require(isinstance(sample, dict), dataset, f"{where} is a {type(sample).__name__}, not dict")
    _require(
        sample.get("key") == dataset.keys[index],
        dataset,
        f"{where}: key {sample.get('key')!r} differs from keys[{index}] {dataset.keys[index]!r}",
    )
    video = sample.get("video")
    _require(isinstance(video, Tensor), dataset, f"{where}: 'video' must be a tensor")
    if getattr(dataset, "input_kind", "video") == "features":
        _require(
            video.ndim == 2 and video.is_floating_point(),
            dataset,
            f"{where}: 'video' of a feature dataset must be a float (L, D) tensor, got "
            f"{video.dtype} {tuple(video.shape)}",
        )
        mask = sample.get("video_mask")
        _require(
            isinstance(mask, Tensor) and mask.dtype == torch.bool
            and tuple(mask.shape) == tuple(video.shape[:1]),
            dataset,
            f"{where}: 'video_mask' must be a bool tensor of shape ({video.shape[0]},)",
        )
    else:
        _require(
            video.ndim == 5 and video.is_floating_point(),
            dataset,
            f"{where}: 'video' must be a float (N, C, T, H, W) tensor, got {video.dtype} "
            f"{tuple(video.shape)}",
        )
    _require(_finite(video), dataset, f"{where}: 'video' has non-finite values")
    scores = sample.get("scores", {})
    _require(
        set(scores) == set(targets.scores),
        dataset,
        f"{where}: scores {sorted(scores)} differ from targets.scores {sorted(targets.scores)}",
    )
    for name, value in scores.items():
        t = targets.scores[name]
        _require(
            isinstance(value, numbers.Real) and not isinstance(value, bool),
            dataset,
            f"{where}: scores[{name!r}] must be a float, got {type(value).__name__}",
        )
        _require(
            t.low <= float(value) <= t.high,
            dataset,
            f"{where}: scores[{name!r}] = {value} is outside [{t.low}, {t.high}]",
        )
    classes = sample.get("classes", {})
    _require(
        set(classes) == set(targets.classes),
        dataset,
        f"{where}: classes {sorted(classes)} differ from targets.classes "
        f"{sorted(targets.classes)}",
    )
    for field, value in classes.items():
        n = targets.classes[field].num_classes
        _require(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n,
            dataset,
            f"{where}: classes[{field!r}] = {value!r} must be an int in range({n})",
        )
    _check_arrays(dataset, where, sample.get("arrays", {}))
    cap = targets.captions
    if cap is None:
        _require("caption" not in sample, dataset, f"{where}: has a caption but no vocabulary")
        return
    tokens, length = sample.get("caption"), sample.get("caption_length")
    _require(
        isinstance(tokens, Tensor)
        and tokens.dtype == torch.int64
        and tuple(tokens.shape) == (cap.max_length + 2,),
        dataset,
        f"{where}: 'caption' must be an int64 tensor of shape ({cap.max_length + 2},)",
    )
    _require(
        isinstance(length, int) and 2 <= length <= cap.max_length + 2,
        dataset,
        f"{where}: 'caption_length' must be an int in [2, {cap.max_length + 2}], got {length!r}",
    )
    _require(int(tokens[0]) == cap.sos_index, dataset, f"{where}: caption must start with <sos>")
    _require(
        int(tokens[length - 1]) == cap.eos_index,
        dataset,
        f"{where}: caption token {length - 1} must be <eos> (caption_length = {length})",
    )
    _require(
        bool((tokens[length:] == cap.pad_index).all()),
        dataset,
        f"{where}: caption tokens after caption_length must be pad_index {cap.pad_index}",
    )
    _require(
        bool(((tokens >= 0) & (tokens < cap.vocab_size)).all()),
        dataset,
        f"{where}: caption tokens must lie in [0, {cap.vocab_size})",
    )


def check_dataset(dataset: VideoDataset, max_samples: int = 2) -> dict[str, Any]:
    """Check an opened dataset split: targets, keys and the first samples, then collate them.

    Args:
        dataset: An opened split.
        max_samples: How many samples to load (from the start).

    Returns:
        The collated batch of the checked samples.

    Raises:
        ContractError: Naming the broken rule and the sample.
    """
    check_component_class(type(dataset), "dataset")
    _require(
        isinstance(dataset.targets, Targets), dataset, "targets must be an aqa Targets object"
    )
    n = len(dataset)
    _require(isinstance(n, int) and n > 0, dataset, f"split '{dataset.split}' is empty")
    keys = dataset.keys
    _require(len(keys) == n, dataset, f"{len(keys)} keys for {n} samples")
    _require(
        all(isinstance(k, str) for k in keys) and len(set(keys)) == n,
        dataset,
        "keys must be unique strings",
    )
    samples = []
    for i in range(min(max_samples, n)):
        sample = dataset[i]
        _check_sample(dataset, i, sample)
        samples.append(sample)
    shapes = {tuple(s["video"].shape) for s in samples}
    _require(len(shapes) == 1, dataset, f"samples have different video shapes {sorted(shapes)}")
    from aqa_framework.builder import dataset_input_shape

    declared = dataset_input_shape(dataset)
    _require(
        declared is None or shapes == {declared},
        dataset,
        f"input_shape(params) declares {declared}, but the samples' videos are "
        f"{next(iter(shapes))}",
    )
    try:
        return default_collate(samples)
    except Exception as exc:
        raise ContractError(
            f"{_label(dataset)}: samples do not collate with default_collate: {exc}"
        ) from exc


def check_registered(name: str, kind: str) -> RegistryEntry:
    """Load the installed plugins in a fresh registry and check a component is there.

    Args:
        name: Registry name, e.g. ``"skating.tcn"``.
        kind: Its kind.

    Returns:
        The registry entry (with the providing distribution and version).

    Raises:
        ContractError: If it is missing (with the plugins that failed to load) or its class
            breaks :func:`check_component_class`.
    """
    registry = Registry(strict=False)
    names = registry.names(kind)
    if name not in names:
        failed = "; ".join(f"{p.name}: {p.error}" for p in registry.failed) or "none"
        raise ContractError(
            f"{kind} '{name}' is not registered. Registered {kind}s: {', '.join(names)}. "
            f"Plugins that failed to load: {failed}. Is the plugin installed "
            "(pip install -e .) with an entry point in the 'aqa' group?"
        )
    entry = registry.entry(kind, name)
    _require(entry.plugin.error is None, entry.cls, f"its plugin failed: {entry.plugin.error}")
    check_component_class(entry.cls, kind)
    return entry
