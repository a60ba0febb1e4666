"""TPT: temporal parsing transformer, scoring relative to exemplars part by part.

Bai et al., "Action Quality Assessment with Temporal Parsing Transformer" (ECCV 2022).
The head reads the per-clip features ``(B, N, D)`` of a sample and of its exemplars
(``data.partners``). A temporal parsing decoder turns each clip sequence into ``parts``
part representations: learnable part queries cross-attend over time, the attention of each
query a softmax over the clips of ``key . query / dim / tau`` (``tau`` learnable, one per
layer); the first layer adds multi-head self-attention between the queries. A pair encoder
(an MLP on ``[part of the first | part of the second]``, averaged over the parts) gives one
pair vector, from which a group classifier (log-softmax over the ``2 ** (depth - 1)`` groups)
and a regressor (one sigmoid position per group) read the score difference, on CoRe's groups:
the same fitted intervals, labels, loss, decoding and voting as :mod:`.core` (the intervals
are fitted by :meth:`~aqa_builtin.heads.core.CoReHead.fit`). Unlike CoRe, the pair vector
does not carry the exemplar's score.

Training adds, per decoder layer and for every decoded clip sequence (samples and
exemplars), a ranking loss on the attention centres ``c_k = sum_t t * a_tk`` (``t`` = 1..N):
``max(0, margin - (c_{k+1} - c_k))`` for consecutive parts plus the boundary terms
``max(0, margin - (c_1 - 1))`` and ``max(0, margin - (N - c_K))``, and ``sparsity_weight`` x
the attention spread ``sum_t |t - c_k| a_tk`` averaged over parts and sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from aqa_builtin.heads.core import CoReGroupParams, CoReHead
from aqa_builtin.layers import flat_size
from aqa_framework.errors import DataError
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import Targets

__all__ = ["TPTHead", "TPTParams", "attention_centres", "order_loss", "sparsity"]


class TPTParams(CoReGroupParams):
    """Parameters of :class:`TPTHead` (defaults: the published MTL-AQA settings)."""

    score_range: float | Literal["target"] = Field(
        30.0,
        description="theta: the outermost group interval ends at theta (TPT as CoRe: 30 on "
        "MTL-AQA with the difficulty, 100 on AQA-7 scores normalised to 0-100). 'target': "
        "the width high - low of the score target's declared range.",
    )
    depth: int = Field(
        5, ge=2, le=8, description="2 ** (depth - 1) groups (5: 16), as CoRe's tree depth."
    )
    parts: int = Field(5, ge=1, description="Learnable part queries of the decoder (K).")
    layers: int = Field(2, ge=1, description="Decoder layers (self-attention in the first only).")
    dim: int = Field(512, ge=1, description="Width d of the decoder and the pair encoder.")
    ffn: int = Field(512, ge=1, description="Hidden width of each decoder layer's FFN.")
    attention_heads: int = Field(
        8, ge=1, description="Heads of the first layer's self-attention (must divide dim)."
    )
    temperature: float = Field(
        0.07, gt=0, description="Initial value of each layer's learnable temperature tau."
    )
    dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout in the decoder and the pair encoder."
    )
    head_hidden: int = Field(
        128, ge=1, description="Hidden width of the group classifier and of the regressor."
    )
    margin: float = Field(
        3.2, ge=0, description="Margin (in clips) between consecutive attention centres."
    )
    order_weight: float = Field(
        1.0, ge=0, description="Weight of the attention-centre ranking loss (0: off)."
    )
    sparsity_weight: float = Field(
        0.05, ge=0, description="Weight of the attention spread around its centre (0: off)."
    )


def attention_centres(attention: Tensor) -> Tensor:
    """Centres ``(..., K)`` of attention maps ``(..., T, K)`` over clip positions 1..T."""
    t = torch.arange(1, attention.shape[-2] + 1, device=attention.device, dtype=attention.dtype)
    return (attention * t[:, None]).sum(-2)


def order_loss(attention: Tensor, margin: float) -> Tensor:
    """Ranking loss making the parts' attention centres increase by ``margin`` clips.

    Args:
        attention: ``(M, T, K)`` maps, each column a distribution over the ``T`` clips.
        margin: The gap asked between consecutive centres and from the ends 1 and ``T``.

    Returns:
        The sum over consecutive parts of the mean over maps of
        ``max(0, margin - (c_{k+1} - c_k))``, plus ``max(0, margin - (c_1 - 1))`` and
        ``max(0, margin - (T - c_K))`` (a ``MarginRankingLoss`` with target 1 per term).
    """
    c = attention_centres(attention)
    first = c.new_ones(c.shape[0], 1)
    last = c.new_full((c.shape[0], 1), float(attention.shape[-2]))
    points = torch.cat([first, c, last], -1)
    gaps = points[:, 1:] - points[:, :-1]
    return F.relu(margin - gaps).mean(0).sum()


def sparsity(attention: Tensor) -> Tensor:
    """Mean spread ``sum_t |t - c_k| a_tk`` of attention maps ``(M, T, K)`` around centres."""
    t = torch.arange(1, attention.shape[-2] + 1, device=attention.device, dtype=attention.dtype)
    c = attention_centres(attention)
    return ((t[:, None] - c[:, None, :]).abs() * attention).sum(-2).mean()


class _DecoderLayer(nn.Module):
    """Cross-attention of part queries over time (softmax over clips), FFN, self-attention."""

    def __init__(self, width: int, p: TPTParams, self_attention: bool) -> None:
        super().__init__()
        d = p.dim
        self.temperature = nn.Parameter(torch.tensor(float(p.temperature)))
        self.key = nn.Linear(width, d)
        self.value = nn.Linear(width, d)
        self.query = nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, p.ffn), nn.ReLU(), nn.Dropout(p.dropout), nn.Linear(p.ffn, d)
        )
        self.drop1, self.drop2 = nn.Dropout(p.dropout), nn.Dropout(p.dropout)
        self.self_attn = (
            nn.MultiheadAttention(d, p.attention_heads, dropout=p.dropout, batch_first=True)
            if self_attention
            else None
        )
        if self.self_attn is not None:
            self.norm3, self.drop3 = nn.LayerNorm(d), nn.Dropout(p.dropout)

    def forward(self, memory: Tensor, tgt: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """``(M, T, W)`` clips, ``(M, K, d)`` parts -> new parts and attention ``(M, T, K)``."""
        key, value = self.key(memory), self.value(memory)
        query = self.query(tgt + pos)
        logits = key @ query.transpose(-1, -2) / key.shape[-1] / self.temperature
        attention = logits.softmax(dim=1)
        tgt = self.norm1(tgt + self.drop1(attention.transpose(-1, -2) @ value))
        tgt = self.norm2(tgt + self.drop2(self.ffn(tgt)))
        if self.self_attn is not None:
            q = tgt + pos
            tgt = self.norm3(tgt + self.drop3(self.self_attn(q, q, tgt, need_weights=False)[0]))
        return tgt, attention


class TPTHead(CoReHead):
    """TPT: temporal parsing of clips into parts, pairwise part encoding, CoRe's groups."""

    name: ClassVar[str] = "tpt"
    consumes: ClassVar[str] = "clips"  # type: ignore[misc]
    Params = TPTParams  # type: ignore[assignment]

    def __init__(self, params: TPTParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        TaskHead.__init__(self, params, in_shape, targets)
        if params.dim % params.attention_heads:
            raise ValueError(
                f"head 'tpt': dim {params.dim} is not divisible by attention_heads "
                f"{params.attention_heads}"
            )
        self._init_groups(params, targets)
        width, d = flat_size(in_shape), params.dim
        self.part_queries = nn.Parameter(torch.empty(params.parts, d))
        self.decoder = nn.ModuleList(
            _DecoderLayer(width, params, self_attention=i == 0) for i in range(params.layers)
        )
        self.pair_encoder = nn.Sequential(
            nn.Linear(2 * d, d), nn.ReLU(), nn.Dropout(params.dropout), nn.Linear(d, d)
        )
        h = params.head_hidden
        self.classifier = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, self.leaves))
        self.regressor = nn.Sequential(
            nn.Linear(d, h), nn.ReLU(), nn.Linear(h, self.leaves), nn.Sigmoid()
        )
        nn.init.xavier_uniform_(self.part_queries)
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def parse(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """Parts ``(M, K, d)`` and attention ``(M, layers, T, K)`` of clips ``(M, T, ...)``.

        Raises:
            DataError: If the sequences hold non-finite features.
        """
        clips = clips.flatten(2).float()
        if not bool(torch.isfinite(clips).all()):
            raise DataError(
                "head 'tpt' got non-finite clip features; check the backbone's inputs and weights"
            )
        pos = self.part_queries.unsqueeze(0).expand(clips.shape[0], -1, -1)
        tgt = torch.zeros_like(pos)
        maps = []
        for layer in self.decoder:
            tgt, attention = layer(clips, tgt, pos)
            maps.append(attention)
        return tgt, torch.stack(maps, 1)

    def _pair_outputs(self, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """Group log-probabilities and positions ``(B, K, leaves)`` of part pairs.

        ``first`` and ``second`` are ``(B, K, parts, d)``; the pair predicts
        ``s_second - s_first``.
        """
        pair = self.pair_encoder(torch.cat([first, second], -1)).mean(-2)
        return F.log_softmax(self.classifier(pair), -1), self.regressor(pair)

    def forward(
        self,
        features: Tensor,
        batch: Mapping[str, Any] | None = None,
        partners: Mapping[str, Any] | None = None,
    ) -> dict:
        """Group outputs of every (exemplar, sample) pair, and of the reverse pairs in training.

        Args:
            features: The samples' clip features ``(B, N, *F)``.
            batch: The batch (with targets in training and validation), or ``None``.
            partners: The exemplars: ``features`` ``(B, K, N, *F)`` and their targets.

        Returns:
            ``leaf_logp`` and ``offset`` ``(B, K, leaves)`` of the pairs (exemplar, sample),
            ``base`` (the exemplars' normalised scores ``(B, K)``), ``attention`` (the
            samples' maps ``(B, layers, N, parts)``) and ``partner_attention``
            ``(B, K, layers, N, parts)``; with a batch also ``rev_leaf_logp`` and
            ``rev_offset`` of the pairs (sample, exemplar).

        Raises:
            DataError: Without exemplars or their targets, or with non-finite features.
        """
        theirs, base = self._exemplars(partners)
        b, k = theirs.shape[:2]
        parts, attention = self.parse(torch.cat([features, theirs.flatten(0, 1)]))
        own_parts = parts[:b].unsqueeze(1).expand(b, k, *parts.shape[1:])
        their_parts = parts[b:].unflatten(0, (b, k))
        logp, off = self._pair_outputs(their_parts, own_parts)
        out = {
            "leaf_logp": logp,
            "offset": off,
            "base": base,
            "attention": attention[:b],
            "partner_attention": attention[b:].unflatten(0, (b, k)),
        }
        if batch is not None and "scores" in batch:
            out["rev_leaf_logp"], out["rev_offset"] = self._pair_outputs(own_parts, their_parts)
        return out

    def attention_loss(self, outputs: dict) -> Tensor:
        """Per layer: ``order_weight`` x the centre ranking loss + ``sparsity_weight`` x spread.

        Over the attention maps of the samples and of their exemplars, as TPT's training.
        """
        p = self.params
        maps = torch.cat([outputs["attention"], outputs["partner_attention"].flatten(0, 1)]).float()
        total = maps.new_zeros(())
        for layer in range(maps.shape[1]):
            att = maps[:, layer]
            if p.order_weight:
                total = total + p.order_weight * order_loss(att, p.margin)
            if p.sparsity_weight:
                total = total + p.sparsity_weight * sparsity(att)
        return total

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """CoRe's group NLL and per-group position MSE (both orders) plus the attention terms."""
        return super().loss(outputs, batch) + self.attention_loss(outputs)
