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
from aqa_framework.spec import PartnersSpec
from aqa_framework.targets import Targets
from aqa_framework.testing.datasets import fake_sample, tiny_targets

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


def _backbone_input_shape(cls: type[Backbone], input_shape: Sequence[int] | None) -> tuple:
    features_in = getattr(cls, "input_kind", "video") == "features"
    if input_shape is None:
        return (16,) if features_in else (3, 16, 32, 32)
    shape = tuple(input_shape)
    if features_in:
        _require(
            len(shape) == 1,
            cls,
            f"takes pre-extracted clip features (input_kind 'features'): pass "
            f"input_shape=(D,) for (M, D) inputs, not {shape}",
        )
    return shape


def _check_clip_independence(cls: type[Backbone], model: Backbone, clips: Tensor) -> None:
    """A feature backbone in eval mode: each clip's features ignore the other clips.

    Sequences are flattened into one batch of clips, zero padding included, so a clip's
    features must not depend on its neighbours (nor on the padding).
    """
    if clips.shape[0] < 2:
        return
    model.eval()
    padded = clips.clone()
    padded[-1] = 0  # a padded clip
    with torch.no_grad():
        full, first = model(padded), model(padded[:1])
    _require(_finite(full), cls, "forward produced non-finite features for a zero (padded) clip")
    _require(
        torch.allclose(full[:1], first, atol=1e-5, rtol=1e-4),
        cls,
        "in eval mode a clip's features must not depend on the other clips in the batch "
        "(the clips of zero-padded sequences share it)",
    )
    model.train()


def check_backbone(
    cls: type[Backbone],
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    batch: int = 2,
    seed: int = 0,
) -> tuple[int, ...]:
    """Check a backbone: identity, meta-device build, forward shape, backward, probe layers.

    A backbone whose ``input_kind`` is ``"features"`` (such as ``identity``) takes ``(M, D)``
    pre-extracted clip features: the clips of a feature dataset's ``(B, L, D)`` sequences,
    zero padding included, flattened into one batch. It must then also give each clip
    features that do not depend on the other clips (eval mode), finite for a zero clip.

    Args:
        cls: The backbone class.
        params: Raw or validated params (keep them small; this runs on CPU).
        input_shape: One clip, ``(C, T, H, W)``, or ``(D,)`` for a feature-input backbone;
            default ``(3, 16, 32, 32)``, or ``(16,)`` for a feature-input backbone.
        batch: Number of clips ``M`` in the test batch.
        seed: Seed of the weights and the input.

    Returns:
        The feature shape of one clip, ``F``.

    Raises:
        ContractError: Naming the broken rule.
    """
    check_component_class(cls, "backbone")
    shape = _backbone_input_shape(cls, input_shape)
    p = cls.parse_params(params)
    torch.manual_seed(seed)
    model = cls(p)
    clips = torch.randn(batch, *shape)
    model.train()
    feats = model(clips)
    _require(isinstance(feats, Tensor), cls, f"forward returned {type(feats).__name__}")
    _require(
        feats.ndim >= 2 and feats.shape[0] == batch,
        cls,
        f"forward must return (M, *F) for M={batch} clips, got {tuple(feats.shape)}",
    )
    _require(_finite(feats), cls, "forward produced non-finite features")
    trainable = any(q.requires_grad for q in model.parameters())
    _require(
        feats.requires_grad or not trainable,
        cls,
        "its features do not depend on its trainable parameters",
    )
    if feats.requires_grad:
        feats.float().square().mean().backward()
        _check_grads(model, cls)
    if getattr(cls, "input_kind", "video") == "features":
        _check_clip_independence(cls, model, clips)
    feat_shape = tuple(feats.shape[1:])
    meta = _on_meta(cls, lambda: cls(p))
    meta_out = meta(torch.empty(batch, *shape, device="meta"))
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


def _check_masked_aggregator(
    cls: type[Aggregator], agg: Aggregator, x: Tensor, out_shape: Sequence[int]
) -> None:
    """An aggregator that declares ``uses_mask``, on sequences whose last clip is padding.

    In training mode the masked call gives the same shape and finite features and trains; in
    eval mode, when :meth:`~aqa_framework.interfaces.Aggregator.takes_padding_mask` holds, a
    padded video's features equal those of the video alone without its padding, whatever
    the padded clips hold.
    """
    n = x.shape[1]
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    mask[0, n - 1] = False  # the first video is one clip shorter
    padded = x.clone()
    padded[0, n - 1] = 0
    agg.train()
    agg.zero_grad()
    grad_in = padded.clone().requires_grad_(True)
    out = agg(grad_in, mask=mask)
    _require(
        isinstance(out, Tensor) and tuple(out.shape) == tuple(out_shape),
        cls,
        f"forward with a mask must give {tuple(out_shape)}, got "
        f"{tuple(getattr(out, 'shape', ()))}",
    )
    _require(_finite(out), cls, "forward with a mask produced non-finite features")
    out.float().square().mean().backward()
    _check_grads(agg, cls)
    _require(
        grad_in.grad is not None and bool(grad_in.grad[mask].abs().sum() > 0),
        cls,
        "with a mask, gradients do not flow back to the real clips' features",
    )
    if not cls.takes_padding_mask(agg.params):
        return
    agg.eval()
    noisy = padded.clone()
    noisy[0, n - 1] = torch.randn_like(noisy[0, n - 1]) * 3
    with torch.no_grad():
        alone = agg(x[:1, : n - 1], mask=mask[:1, : n - 1])
        for what, seq in (("zero padding", padded), ("noise in its padded clip", noisy)):
            got = agg(seq, mask=mask)[:1]
            _require(
                torch.allclose(got, alone, atol=1e-5, rtol=1e-4),
                cls,
                f"takes_padding_mask holds, yet a video with {what} (video_mask False there) "
                "gets other features than the video alone: leave the masked clips out",
            )


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

    An aggregator that declares ``uses_mask`` is also called with the ``(B, N)``
    ``video_mask`` of a batch whose first video's last clip is padding (train mode: shape,
    finite, backward); when ``takes_padding_mask`` holds, that video's features must equal
    those of the video alone without the padding, zero or noise in the padded clip.

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
    if cls.uses_mask and num_clips > 1:
        _check_masked_aggregator(cls, agg, x, out.shape)
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


def _padded_lengths(num_clips: int, index: int) -> int:
    """Real clips of fake sample ``index``: every other sample lacks its last clip."""
    return max(1, num_clips - index % 2)


def _head_samples(
    targets: Targets, shape: tuple[int, ...], indices: range, seed: int, masked: bool
) -> list[dict[str, Any]]:
    """Fake samples whose ``video`` is the head's input features (as in a feature dataset).

    With ``masked``, every other sample's last clip is zero padding, marked by its
    ``video_mask`` (as the padding of :mod:`aqa_framework.data.padding` does).
    """
    samples = []
    for i in indices:
        sample = fake_sample(targets, i, video_shape=shape, seed=seed)
        if masked:
            length = _padded_lengths(shape[0], i)
            sample["video"][length:] = 0
            sample["video_mask"] = torch.arange(shape[0]) < length
        samples.append(sample)
    return samples


class _HeadData:
    """The batches :func:`check_head` feeds a head, built as the engine builds them.

    The training samples form the exemplar pool (:class:`~aqa_framework.data.partners.
    PartnerPool`) and the head's :class:`~aqa_framework.data.partners.FitData`; the training
    batch is the first ``batch_size`` of them, and two evaluation batches come from other
    samples. For a head that declares ``uses_partners`` every batch carries exemplars drawn by
    a :class:`~aqa_framework.data.partners.PartnerDataset` (``partners.train`` of them while
    training, ``partners.test`` when evaluating) and collated with PyTorch's default collate.
    """

    def __init__(
        self,
        cls: type[TaskHead],
        targets: Targets,
        shape: tuple[int, ...],
        batch_size: int,
        seed: int,
        partners: PartnersSpec | None,
    ) -> None:
        from aqa_framework.data.partners import (
            PartnerDataset,
            PartnerPool,
            check_group_by,
            fit_data,
            sample_targets,
        )

        self.masked = cls.consumes == "clips" and bool(cls.uses_mask) and shape[0] > 1
        k_eval = partners.test if partners is not None else 0
        pool = _head_samples(
            targets, shape, range(2 * batch_size + k_eval), seed, self.masked
        )
        group_by = partners.group_by if partners is not None else None
        check_group_by(group_by, targets)
        rows = [sample_targets(pool, i) for i in range(len(pool))]
        self.fit = fit_data(rows, group_by)
        tests = [
            _head_samples(
                targets, shape, range(10_000 * (j + 1), 10_000 * (j + 1) + batch_size), seed,
                self.masked,
            )
            for j in range(2)
        ]
        queries: list[list[dict[str, Any]]] = [pool[:batch_size], *tests]
        if partners is not None:
            drawn = PartnerPool.of(pool, partners, seed, rows)
            queries = [
                [
                    PartnerDataset(q, drawn, k, vary_by_epoch=train)[i]
                    for i in range(len(q))
                ]
                for q, k, train in zip(
                    queries, (partners.train, k_eval, k_eval), (True, False, False), strict=True
                )
            ]
        self.train, *self.evals = [default_collate(q) for q in queries]

    @staticmethod
    def inputs(batch: Mapping[str, Any], grad: bool = False) -> tuple[Tensor, Any]:
        """The features of a batch and, with exemplars, what a ``uses_partners`` head gets.

        As :class:`~aqa_framework.model.MultitaskModel` does: the exemplars without their
        ``video``, whose features are under ``"features"`` ``(B, K, ...)``.
        """
        features = batch["video"].clone().requires_grad_(grad)
        given = batch.get("partners")
        if given is None:
            return features, None
        partners = {k: v for k, v in given.items() if k != "video"}
        partners["features"] = given["video"].clone().requires_grad_(grad)
        return features, partners


def _call(head: TaskHead, features: Tensor, batch: Any, partners: Any) -> Any:
    return head(features, batch) if partners is None else head(features, batch, partners)


def _eval_batch(cls: type[TaskHead], batch: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a head gets as ``batch`` when evaluating: the ``video_mask`` for ``uses_mask``."""
    if cls.uses_mask and "video_mask" in batch:
        return {"video_mask": batch["video_mask"]}
    return None


def _predict(cls: type[TaskHead], head: TaskHead, outputs: Any, batch: Mapping[str, Any]) -> Any:
    names = cls.prediction_inputs(head.params)
    if names:
        return head.predict(outputs, prediction_inputs(batch, names))
    return head.predict(outputs)


def _rows(tree: Any, rows: slice) -> Any:
    """The samples ``rows`` of a collated batch (tensors, per-sample lists, nested dicts)."""
    if isinstance(tree, Tensor):
        return tree[rows]
    if isinstance(tree, Mapping):
        return {k: _rows(v, rows) for k, v in tree.items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], list):  # K lists of B keys
        return [_rows(v, rows) for v in tree]
    if isinstance(tree, list):
        return tree[rows]
    return tree


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        x, y = float(a), float(b)
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-4)
    return a == b


def _check_padding(cls: type[TaskHead], head: TaskHead, batch: Mapping[str, Any]) -> None:
    """Zero padding that the ``video_mask`` marks changes no prediction (eval mode).

    Two ways: the padded clips filled with noise instead of zeros, and (without exemplars) a
    padded sample alone, cut to its real clips.
    """
    mask = batch["video_mask"]
    row = int((~mask).any(1).nonzero()[0])
    length = int(mask[row].sum())
    features, partners = _HeadData.inputs(batch)
    preds = _predict(cls, head, _call(head, features, _eval_batch(cls, batch), partners), batch)
    noisy = features.clone()
    noisy[~mask] = torch.randn_like(noisy[~mask]) * 3
    trials = {"with noise in its padded clips": (noisy, batch, partners, row)}
    if partners is None:
        alone = {**_rows(batch, slice(row, row + 1))}
        alone["video"] = alone["video"][:, :length]
        alone["video_mask"] = alone["video_mask"][:, :length]
        trials["alone, without its padding"] = (alone["video"], alone, None, 0)
    for what, (x, b, p, at) in trials.items():
        other = _predict(cls, head, _call(head, x, _eval_batch(cls, b), p), b)
        for col, values in preds.items():
            _require(
                _same(other[col][at], values[row]),
                cls,
                f"takes_padding_mask holds, yet predict()[{col!r}] of a sample with "
                f"{mask.shape[1] - length} zero-padded clip(s) changes {what} "
                f"({values[row]!r} -> {other[col][at]!r}): leave the clips where video_mask "
                "is False out",
            )


def _check_head_training(cls: type[TaskHead], head: TaskHead, data: _HeadData) -> None:
    head.train()
    features, partners = data.inputs(data.train, grad=True)
    outputs = _call(head, features, data.train, partners)
    _require(isinstance(outputs, dict), cls, f"forward returned {type(outputs).__name__}")
    loss = head.loss(outputs, data.train)
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


def _check_same_columns(cls: type[TaskHead], preds: dict, refs: dict) -> None:
    shared = set(preds) & set(refs)
    # a head comparing a sample with its partner may reference the pair (its order) instead
    if cls.uses_partners and not shared:
        return
    _require(
        set(preds) == set(refs),
        cls,
        f"predict columns {sorted(preds)} differ from references columns {sorted(refs)}",
    )


def _evaluate_head(
    cls: type[TaskHead], head: TaskHead, data: _HeadData, batch_size: int
) -> tuple[dict[str, list], dict[str, list]]:
    head.eval()
    predictions: dict[str, list] = {}
    references: dict[str, list] = {}
    with torch.no_grad():
        for batch in data.evals:
            features, partners = data.inputs(batch)
            outputs = _call(head, features, _eval_batch(cls, batch), partners)
            preds = _predict(cls, head, outputs, batch)
            refs = head.references(batch)
            _check_columns(cls, "predict", preds, batch_size)
            _check_columns(cls, "references", refs, batch_size)
            _check_same_columns(cls, preds, refs)
            for col in preds:
                predictions.setdefault(col, []).extend(preds[col])
            for col in refs:
                references.setdefault(col, []).extend(refs[col])
        if data.masked and cls.takes_padding_mask(head.params):
            _check_padding(cls, head, data.evals[0])
    return predictions, references


def _check_metrics(cls: type[TaskHead], metrics: Any) -> None:
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


def check_head(
    cls: type[TaskHead],
    targets: Targets | None = None,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    in_shape: Sequence[int] = (16,),
    num_clips: int = 3,
    batch_size: int = 4,
    seed: int = 0,
    partners: PartnersSpec | Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Round-trip a head: targets check, fit, forward, loss, backward, predict, metrics.

    The head is fitted (:meth:`~aqa_framework.interfaces.TaskHead.fit`) on the targets of
    ``2 * batch_size`` fake training samples (plus ``partners.test``), trained one step on
    the first ``batch_size`` of them and evaluated on two batches of other samples, in the
    engine's layout:

    * a head that declares ``uses_partners`` is called as ``forward(features, batch,
      partners)`` with exemplars drawn from the training samples as ``data.partners`` draws
      them (``partners.train`` per sample while training, ``partners.test`` when
      evaluating, grouped by ``partners.group_by``): their ``"features"`` ``(B, K, ...)``,
      ``"scores"``, ``"classes"``, ``"arrays"`` and ``"key"``;
    * a head that consumes clips and declares ``uses_mask`` gets sequences in which every
      other sample's last clip is zero padding, with the batch's ``video_mask`` (and only
      ``{"video_mask": mask}`` when evaluating); when :meth:`~aqa_framework.interfaces.
      TaskHead.takes_padding_mask` holds, its predictions must not change when the padded
      clips hold noise, nor (without exemplars) for a padded sample alone without its
      padding.

    Args:
        cls: The head class.
        targets: What the dataset provides; defaults to :func:`tiny_targets`.
        params: Raw or validated params.
        in_shape: Shape of the features it consumes (``G`` for video-level heads, ``F`` for
            clip-level heads), without batch and clip dims.
        num_clips: Clips per video for clip-level heads.
        batch_size: Samples per batch (two batches are evaluated).
        seed: Seed of the weights and the data.
        partners: The exemplars of a ``uses_partners`` head, as a spec's ``data.partners``
            (:class:`~aqa_framework.spec.PartnersSpec` or its mapping); default ``{"train": 1,
            "test": 2}``. Ignored for other heads.

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
    spec = None
    if cls.uses_partners:
        spec = PartnersSpec.model_validate(
            {"train": 1, "test": 2} if partners is None else partners
        )
    torch.manual_seed(seed)
    head = cls(p, in_shape, targets)
    shape = in_shape if cls.consumes == "video" else (num_clips, *in_shape)
    data = _HeadData(cls, targets, shape, batch_size, seed, spec)
    head.fit(data.fit)
    _check_head_training(cls, head, data)
    predictions, references = _evaluate_head(cls, head, data, batch_size)
    metrics = head.metrics(predictions, references)
    _check_metrics(cls, metrics)
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
