"""The multitask model: one backbone, one aggregator, one head per task (paper Fig. 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from aqa_framework.errors import DataError
from aqa_framework.interfaces import Aggregator, Backbone, TaskHead
from aqa_framework.targets import Targets


class MultitaskModel(nn.Module):
    """Backbone on every clip, aggregator per video, then every task head.

    ``video (B, N, C, T, H, W)`` -> backbone on the ``B*N`` clips in one call -> clip
    features ``(B, N, *F)`` -> aggregator -> video features ``(B, *G)``; heads that consume
    ``"clips"`` get the clip features, the others the video features. The total loss is the
    weighted sum of the task losses (paper eq. 4).

    Args:
        backbone: Clip feature extractor.
        aggregator: Pools clip features into video features.
        heads: Task name -> head.
        loss_weights: Task name -> weight of its loss (default 1).
        targets: What the dataset provides (kept for predictions and reports).

    Attributes:
        channels_last: Feed clips to the backbone in ``channels_last_3d`` memory format (set
            by :meth:`to_channels_last`).
        frozen_batchnorm: Module paths whose BatchNorm layers stay in evaluation mode while
            training (set by :meth:`freeze_batchnorm`).
    """

    def __init__(
        self,
        backbone: Backbone,
        aggregator: Aggregator,
        heads: Mapping[str, TaskHead],
        loss_weights: Mapping[str, float] | None = None,
        targets: Targets | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        self.heads = nn.ModuleDict(dict(heads))
        weights = dict(loss_weights or {})
        unknown = set(weights) - set(self.heads)
        if unknown:
            raise ValueError(f"loss weights for unknown tasks: {sorted(unknown)}")
        self.loss_weights = {task: float(weights.get(task, 1.0)) for task in self.heads}
        self.targets = targets if targets is not None else Targets()
        self.channels_last = False
        self.frozen_batchnorm: tuple[str, ...] = ()

    def to_channels_last(self) -> MultitaskModel:
        """Store 3D convolution weights and feed clips in ``channels_last_3d`` format.

        5-D tensors (3D convolutions) become ``channels_last_3d`` and 4-D ones (2D
        convolutions, e.g. of a frame backbone) ``channels_last``; values are unchanged.
        """
        for tensor in [*self.parameters(), *self.buffers()]:
            if tensor.dim() == 5:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)
            elif tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def freeze_batchnorm(self, modules: bool | Sequence[str]) -> MultitaskModel:
        """Keep the running statistics of BatchNorm layers fixed while training.

        Those layers stay in evaluation mode when :meth:`train` is called (their affine
        weights still learn), as CoRe's ``fix_bn`` does for a pretrained backbone.

        Args:
            modules: ``True`` for every BatchNorm layer, ``False`` for none, or module paths
                (``backbone``, ``heads.score``) or fnmatch patterns whose layers are frozen.

        Raises:
            SpecError: At ``train.freeze_bn`` for a path naming no module.
        """
        from aqa_framework.engine.optim import names_module
        from aqa_framework.errors import SpecError

        if isinstance(modules, bool):
            self.frozen_batchnorm = ("*",) if modules else ()
        else:
            names = [n for n, _ in self.named_modules()]
            unknown = [m for m in modules if not any(names_module(m, n) for n in names)]
            if unknown:
                raise SpecError(
                    [("train.freeze_bn", f"{m!r} names no module of the model") for m in unknown]
                )
            self.frozen_batchnorm = tuple(modules)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> MultitaskModel:
        """Set training mode; BatchNorm layers named by :meth:`freeze_batchnorm` stay in eval."""
        super().train(mode)
        frozen = getattr(self, "frozen_batchnorm", ())
        if mode and frozen:
            from aqa_framework.engine.optim import names_module

            for name, module in self.named_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(
                    names_module(p, name) for p in frozen
                ):
                    module.eval()
        return self

    @property
    def needs_video_features(self) -> bool:
        """Whether any head consumes aggregated video features."""
        return any(h.consumes == "video" for h in self.heads.values())

    def features(
        self, video: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Clip features ``(B, N, *F)`` and video features ``(B, *G)`` (``None`` if unused).

        Args:
            video: ``(B, N, C, T, H, W)`` clips, or ``(B, L, D)`` pre-extracted clip features
                when the backbone's ``input_kind`` is ``"features"``.
            mask: ``(B, L)`` bool, ``True`` on real clips, for zero-padded feature sequences;
                handed to an aggregator that declares ``uses_mask``.

        Raises:
            DataError: If ``video`` does not have the shape the backbone takes.
        """
        features_in = getattr(self.backbone, "input_kind", "video") == "features"
        if features_in and video.dim() != 3:
            raise DataError(
                f"backbone '{self.backbone.name}' takes clip feature sequences (batch, clips, "
                f"features); got a tensor of shape {tuple(video.shape)}"
            )
        if not features_in and video.dim() != 6:
            raise DataError(
                f"model input must be (batch, clips, channels, frames, height, width); got a "
                f"tensor of shape {tuple(video.shape)}"
            )
        b, n = video.shape[:2]
        clips = video.flatten(0, 1)
        if self.channels_last and not features_in:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        clip_features = self.backbone(clips).unflatten(0, (b, n))
        video_features = None
        if self.needs_video_features:
            if mask is not None and getattr(self.aggregator, "uses_mask", False):
                video_features = self.aggregator(clip_features, mask=mask)
            else:
                video_features = self.aggregator(clip_features)
        return clip_features, video_features

    def forward(
        self,
        video: Tensor,
        batch: Mapping[str, Any] | None = None,
        partners: Mapping[str, Any] | None = None,
        *,
        mask: Tensor | None = None,
    ) -> dict[str, dict]:
        """Outputs of every head.

        Args:
            video: ``(B, N, C, T, H, W)`` clips, or ``(B, L, D)`` clip features.
            batch: The collated batch while training (teacher forcing, and the
                ``video_mask`` of zero-padded feature sequences); ``None`` at inference.
            partners: The batch's exemplars (``batch["partners"]``), if it has any.
            mask: At inference, the ``(B, L)`` ``video_mask`` of zero-padded feature
                sequences (the batch's own is used while training). The aggregator gets it if
                it declares ``uses_mask``, and so does a head that declares ``uses_mask``, as
                ``batch={"video_mask": mask}`` (no targets).

        Returns:
            Task name -> that head's outputs.

        With ``partners`` (the batch's exemplars, see :mod:`aqa_framework.data.partners`),
        the query clips and the exemplars' clips go through the backbone in one call; heads
        that declare :attr:`~aqa_framework.interfaces.TaskHead.uses_partners` are called as
        ``head(features, batch, partners)`` with the exemplars' features under
        ``partners["features"]`` ``(B, K, ...)`` and their targets, the others as before.

        Raises:
            DataError: If a head compares with exemplars and there are none.
        """
        count = 0
        if batch is None and mask is not None:
            batch = _MaskOnly(video_mask=mask)
        if partners is not None:
            video, batch, count = _join_partners(video, batch, partners)
        mask = batch.get("video_mask") if isinstance(batch, Mapping) else None
        clip_features, video_features = self.features(video, mask)
        if partners is None:
            for task, head in self.heads.items():
                if getattr(head, "uses_partners", False):
                    raise DataError(
                        f"head '{head.name}' of task '{task}' compares each sample with "
                        "exemplars, and the batch has none: set data.partners in the spec"
                    )
            return {
                task: head(
                    clip_features if head.consumes == "clips" else video_features,
                    _head_batch(head, batch),
                )
                for task, head in self.heads.items()
            }
        return self._compare(clip_features, video_features, count, batch, partners)

    def _compare(
        self,
        clip_features: Tensor,
        video_features: Tensor | None,
        count: int,
        batch: Mapping[str, Any] | None,
        partners: Mapping[str, Any],
    ) -> dict[str, dict]:
        """Head outputs when the first ``B`` rows are queries and the rest their exemplars."""
        b = clip_features.shape[0] // (1 + count)

        def split(t: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
            if t is None:
                return None, None
            return t[:b], t[b:].unflatten(0, (b, count))

        clips, partner_clips = split(clip_features)
        videos, partner_videos = split(video_features)
        if isinstance(batch, Mapping) and "video_mask" in batch:
            cut = {"video_mask": batch["video_mask"][:b]}
            batch = _MaskOnly(cut) if isinstance(batch, _MaskOnly) else {**batch, **cut}
        out = {}
        for task, head in self.heads.items():
            level = head.consumes == "clips"
            features = clips if level else videos
            if getattr(head, "uses_partners", False):
                given = {k: v for k, v in partners.items() if k != "video"}
                given["features"] = partner_clips if level else partner_videos
                out[task] = head(features, _head_batch(head, batch), given)
            else:
                out[task] = head(features, _head_batch(head, batch))
        return out

    def loss(
        self, outputs: Mapping[str, dict], batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss ``sum(weight * loss)`` (eq. 4) and each task's unweighted loss."""
        losses = {task: head.loss(outputs[task], batch) for task, head in self.heads.items()}
        total = sum(self.loss_weights[t] * loss for t, loss in losses.items())
        return total, losses  # type: ignore[return-value]

    def predict(
        self, outputs: Mapping[str, dict], batch: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, list]]:
        """Per-sample predictions of every task, in plain Python types.

        Args:
            outputs: What :meth:`forward` returned.
            batch: The collated batch, if there is one. A head whose
                :meth:`~aqa_framework.interfaces.TaskHead.prediction_inputs` names targets gets
                those (and only those) as ``predict(outputs, inputs)``; other heads are called
                as ``predict(outputs)``.
        """
        out = {}
        for task, head in self.heads.items():
            names = type(head).prediction_inputs(head.params)
            if names:
                out[task] = head.predict(outputs[task], prediction_inputs(batch, names))
            else:
                out[task] = head.predict(outputs[task])
        return out

    def references(self, batch: Mapping[str, Any]) -> dict[str, dict[str, list]]:
        """Ground truth of a batch for every task, under the prediction column names."""
        return {task: head.references(batch) for task, head in self.heads.items()}


class _MaskOnly(dict):
    """The inference stand-in for a batch: only the ``video_mask`` of padded sequences."""


def _head_batch(head: nn.Module, batch: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """What a head gets as ``batch``: at inference only a ``uses_mask`` head sees the mask."""
    if isinstance(batch, _MaskOnly):
        return batch if getattr(head, "uses_mask", False) else None
    return batch


def _join_partners(
    video: Tensor, batch: Mapping[str, Any] | None, partners: Mapping[str, Any]
) -> tuple[Tensor, Mapping[str, Any] | None, int]:
    """The queries' clips followed by their exemplars' (one backbone call), and K.

    Raises:
        DataError: If the exemplars' clips do not have the queries' shape.
    """
    others = partners["video"]
    if others.dim() != video.dim() + 1 or others.shape[0] != video.shape[0] or (
        others.shape[2:] != video.shape[1:]
    ):
        raise DataError(
            f"exemplar clips of shape {tuple(others.shape)} do not fit query clips of shape "
            f"{tuple(video.shape)} (expected (B, K, ...) with the queries' clip shape)"
        )
    count = others.shape[1]
    joined = torch.cat([video, others.flatten(0, 1).to(video.dtype)])
    if isinstance(batch, Mapping) and "video_mask" in batch and "video_mask" in partners:
        mask = torch.cat([batch["video_mask"], partners["video_mask"].flatten(0, 1)])
        batch = _MaskOnly(video_mask=mask) if isinstance(batch, _MaskOnly) else {
            **batch,
            "video_mask": mask,
        }
    return joined, batch, count


def prediction_inputs(batch: Mapping[str, Any] | None, names: list[str]) -> dict[str, dict] | None:
    """The part of a batch a head may read when predicting: the named targets only.

    Args:
        batch: A collated batch, or ``None`` (a bare video: no inputs at all).
        names: Score or open target names the head declares as prediction inputs.

    Returns:
        ``{"arrays": {...}, "scores": {...}}`` with the named targets the batch carries, or
        ``None`` without a batch.
    """
    if batch is None:
        return None
    arrays, scores = batch.get("arrays") or {}, batch.get("scores") or {}
    return {
        "arrays": {n: arrays[n] for n in names if n in arrays},
        "scores": {n: scores[n] for n in names if n in scores},
    }

