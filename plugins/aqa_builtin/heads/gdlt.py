"""The ``gdlt`` head: grade-decoupling likert transformer (Xu et al., CVPR 2022).

Over a sequence of clip features: two 1x1 convolutions (with batch norm) bring the features to
``dim``; a transformer encoder reads the clips; a decoder lets ``queries`` learnable grade
queries (4: "bad" to "excellent") attend to them. Each query's response goes through a linear
layer of which only the diagonal is read (query ``i`` -> response ``i``), then a sigmoid; the
responses, normalised to sum 1, weight the grade values ``linspace(0, 1, queries)``, giving a
score in ``[0, 1]``: the true score divided by ``score_scale`` (25 for rhythmic gymnastics).
Loss: MSE on that score plus ``triplet_weight`` x a batch-hard triplet loss (margin
``triplet_margin``, on cosine distances as the published code) that keeps the decoded query
embeddings of different grades apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.heads.score import (
    REL_L2_RANGE_HELP,
    SCORE_METRIC_DIRECTIONS,
    RelL2Range,
    fixed_score_range,
    score_metrics,
)
from aqa_builtin.layers import flat_size
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import TargetNeed, Targets

__all__ = ["GDLTHead", "GDLTParams", "hardest_triplet_loss"]


class GDLTParams(BaseModel):
    """Parameters of :class:`GDLTHead` (defaults: the published settings)."""

    model_config = ConfigDict(extra="forbid")

    score: str | None = Field(
        None,
        description="Score target to regress; null: 'total' if the dataset has it, else its "
        "only score.",
    )
    score_scale: float = Field(
        25.0,
        gt=0,
        description="The model predicts score / score_scale in [0, 1] (rhythmic gymnastics: "
        "25); predictions are multiplied back, so metrics are in points.",
    )
    in_hidden: int = Field(
        512, ge=1, description="Width of the first 1x1 convolution over the clip features."
    )
    dim: int = Field(256, ge=1, description="Transformer width (second 1x1 convolution).")
    heads: int = Field(1, ge=1, description="Attention heads (must divide dim).")
    encoder_layers: int = Field(1, ge=1, description="Transformer encoder layers.")
    decoder_layers: int = Field(2, ge=1, description="Transformer decoder layers.")
    ffn: int = Field(768, ge=1, description="Feed-forward width of every transformer layer.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout inside the transformer.")
    queries: int = Field(
        4, ge=2, description="Grade queries; their grade values are linspace(0, 1, queries)."
    )
    triplet_weight: float = Field(
        1.0, ge=0, description="Weight of the triplet loss on the query embeddings (0: none)."
    )
    triplet_margin: float = Field(1.0, gt=0, description="Margin of the triplet loss.")
    triplet_distance: Literal["cosine", "euclidean"] = Field(
        "cosine",
        description="Distance between query embeddings in the triplet loss: 'cosine' (1 - "
        "cosine similarity, in [0, 2]; the published code) or 'euclidean'.",
    )
    mask_padding: bool = Field(
        True,
        description="Leave the zero padding of short training windows (the dataset's "
        "video_mask) out of attention; false attends to it, as the published code does.",
    )
    rel_l2_range: RelL2Range = Field("evaluated", description=REL_L2_RANGE_HELP)


def hardest_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float,
    distance: Literal["cosine", "euclidean"] = "cosine",
) -> Tensor:
    """Batch-hard triplet loss: for each anchor its farthest positive and nearest negative.

    Args:
        embeddings: ``(M, E)``.
        labels: ``(M,)`` integer labels.
        margin: Required gap between the two distances.
        distance: ``cosine`` (``1 - cos``, GDLT's code) or ``euclidean``.

    Returns:
        Mean of ``relu(d(anchor, hardest positive) - d(anchor, hardest negative) + margin)``
        over the anchors that have a negative.
    """
    if distance == "cosine":
        unit = F.normalize(embeddings, dim=-1)
        dist = 1.0 - unit @ unit.T
    else:
        diff = embeddings.unsqueeze(1) - embeddings.unsqueeze(0)
        dist = (diff.pow(2).sum(-1) + 1e-12).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = (dist * same.to(dist.dtype)).max(dim=1).values
    negative = dist.masked_fill(same, float("inf")).min(dim=1).values
    has_negative = torch.isfinite(negative)
    if not bool(has_negative.any()):
        return embeddings.sum() * 0.0
    loss = F.relu(positive - negative + margin)
    return loss[has_negative].mean()


class GDLTHead(TaskHead):
    """GDLT: grade queries decoded from a clip sequence, score = grade-weighted responses.

    Consumes the clip sequence ``(B, L, D)`` of a feature dataset (backbone ``identity``). The
    score is ``sum_i w_i r_i`` with grade values ``w = linspace(0, 1, queries)`` and ``r`` the
    normalised sigmoid responses of the queries; trained on ``score / score_scale`` with MSE
    plus a batch-hard triplet loss on the decoded queries. Metrics: Spearman, Pearson,
    relative L2 and MSE in points.
    """

    name = "gdlt"
    uses_mask = True  # gets the video_mask of padded sequences at inference too
    consumes = "clips"
    target_kind = "scores"
    metric_directions = SCORE_METRIC_DIRECTIONS
    Params = GDLTParams

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """One score target: ``score`` by name, or any."""
        return [TargetNeed("scores", name=params.score, role="the score to regress")]

    @classmethod
    def takes_padding_mask(cls, params: BaseModel) -> bool:
        """With ``mask_padding`` (the default) zero padding changes no prediction."""
        return bool(params.mask_padding)  # type: ignore[attr-defined]

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """The score must exist; without ``score``, ``total`` or a single score."""
        problem = super().check_targets(params, targets)
        if problem or params.score or "total" in targets.scores or len(targets.scores) == 1:
            return problem
        return (
            f"head 'gdlt' regresses one score, but the dataset provides several "
            f"({', '.join(targets.scores)}); set score"
        )

    def __init__(self, params: GDLTParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        if params.dim % params.heads:
            raise ValueError(f"dim {params.dim} is not divisible by heads {params.heads}")
        self.score_name = params.score or (
            "total" if "total" in targets.scores else next(iter(targets.scores))
        )
        width = flat_size(in_shape)
        self.in_proj = nn.Sequential(
            nn.Conv1d(width, params.in_hidden, kernel_size=1),
            nn.BatchNorm1d(params.in_hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(params.in_hidden, params.dim, kernel_size=1),
            nn.BatchNorm1d(params.dim),
        )
        # the layers of torch's nn.Transformer (post-norm, final LayerNorm on both stacks)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                params.dim, params.heads, params.ffn, params.dropout, batch_first=True
            ),
            params.encoder_layers,
            norm=nn.LayerNorm(params.dim),
            enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(
                params.dim, params.heads, params.ffn, params.dropout, batch_first=True
            ),
            params.decoder_layers,
            norm=nn.LayerNorm(params.dim),
        )
        self.prototype = nn.Embedding(params.queries, params.dim)
        self.regressor = nn.Linear(params.dim, params.queries)
        self.register_buffer(
            "grades", torch.linspace(0.0, 1.0, params.queries), persistent=False
        )
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:  # nn.Transformer's (and GDLT's) initialisation
                nn.init.xavier_uniform_(p)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """``score`` ``(B,)`` in ``[0, 1]``, ``queries`` ``(B, Q, dim)``, ``weights`` ``(B, Q)``.

        Args:
            features: ``(B, L, *F)`` clip features.
            batch: The training batch; its ``video_mask`` hides zero padding when
                ``mask_padding`` is set.
        """
        x = self.in_proj(features.flatten(2).transpose(1, 2)).transpose(1, 2)
        pad = None
        if batch is not None and self.params.mask_padding and "video_mask" in batch:
            pad = ~torch.as_tensor(batch["video_mask"], device=x.device).bool()
            if not bool(pad.any()):  # nothing padded: the unmasked attention is faster
                pad = None
        memory = self.encoder(x, src_key_padding_mask=pad)
        queries = self.prototype.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        decoded = self.decoder(queries, memory, memory_key_padding_mask=pad)
        responses = torch.diagonal(self.regressor(decoded), dim1=-2, dim2=-1)
        weights = torch.sigmoid(responses)
        weights = weights / weights.sum(dim=1, keepdim=True)
        score = (weights * self.grades.to(weights.dtype)).sum(dim=1)
        return {"score": score, "queries": decoded, "weights": weights}

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """MSE on ``score / score_scale`` + ``triplet_weight`` x the query triplet loss."""
        pred = outputs["score"].float()
        true = torch.as_tensor(batch["scores"][self.score_name], device=pred.device).float()
        loss = F.mse_loss(pred, true / self.params.score_scale)
        if self.params.triplet_weight > 0:
            q = outputs["queries"].float()
            labels = torch.arange(q.shape[1], device=q.device).repeat(q.shape[0])
            triplet = hardest_triplet_loss(
                q.flatten(0, 1), labels, self.params.triplet_margin, self.params.triplet_distance
            )
            loss = loss + self.params.triplet_weight * triplet
        return loss

    def predict(self, outputs: dict) -> dict[str, list]:
        """The score in points."""
        points = outputs["score"].detach().float() * self.params.score_scale
        return {self.score_name: points.cpu().tolist()}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The true score in points."""
        return {self.score_name: torch.as_tensor(batch["scores"][self.score_name]).float().tolist()}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Spearman, Pearson, relative L2 (with its range) and MSE, in points."""
        fixed = fixed_score_range(self.params.rel_l2_range, self.targets.scores[self.score_name])
        return score_metrics(predictions[self.score_name], references[self.score_name], fixed)
