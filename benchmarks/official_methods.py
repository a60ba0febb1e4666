"""MUSDL, CoRe and GDLT run the way their official code runs them: speed and maths references.

Each class rewrites the structure of one official training step (and, for CoRe, its test-time
voting) with the layer sizes of one of our models; :func:`reference_for` builds it for a model
assembled by our builder and :func:`copy_weights` gives it that model's weights, so that the
benchmarks and tests can check that both compute the same loss before timing them. The
structures, as read in the official repositories:

* **MUSDL** (Tang et al., CVPR 2020; ``nzl-thu/MUSDL``, ``MTL-AQA/main.py``,
  ``models/evaluator.py``): the dataset yields the 103-frame window ``(B, T, C, H, W)``, which
  the step transposes to ``(B, C, T, H, W)``; I3D is called once per segment in a Python loop
  (nine segments ``10 i .. 10 i + 16`` and the last 16 frames), each call on the ``B`` clips of
  that segment, writing into a preallocated ``(B, 10, 1024)`` tensor; the mean feature goes
  through one MLP per judge (1024-256-128-21, ReLU, softmax); the loss is
  ``nn.KLDivLoss()`` (mean over samples x bins) of ``log(softmax)`` against Gaussian soft
  labels that the dataset computed per sample, summed over the judges; every training step
  also decodes the judges' marks (arg-max, sort, middle three x difficulty) and reads each
  prediction with ``.item()``; Adam, fp32. Note that the per-segment calls make I3D's
  BatchNorm normalise over the ``B`` clips of one segment in training mode, where one call on
  all ``B x 10`` clips (ours) normalises over all of them: the losses agree in evaluation
  mode (running statistics), which is where they are compared.
* **CoRe** (Yu et al., ICCV 2021; ``yuxumin/CoRe``, ``models/Backbone.py``,
  ``models/RegressTree.py``, ``utils/Group_helper.py``, ``tools/helper.py``,
  ``tools/runner.py``): the query and exemplar videos ``(B, C, 103, H, W)`` are concatenated
  and their ten 16-frame segments (starts 0, 10, ..., 80, 86) stacked segment-major into ONE
  I3D call on ``10 x 2B`` clips; the pair vectors of both orders are concatenated and run
  through the regression tree in one call; tree labels are produced on the CPU by Python
  loops over leaves and pairs (``Group_helper.produce_label``) and copied to the device; the
  loss is the NLL of each order plus, per leaf and order, the MSE of the masked positions (a
  host synchronisation per leaf); training predictions are decoded on the CPU in a Python
  loop (``Group_helper.inference``); batch 1 with two accumulated steps per Adam update
  (``step_per_update: 2``); BatchNorm frozen (``fix_bn``). At test each of the ``K`` voters
  is compared in its own call, which encodes the query AND that exemplar again (``2B x 10``
  clips per voter, the query ``K`` times in all); scores are averaged over the voters.
* **GDLT** (Xu et al., CVPR 2022; ``xuangch/CVPR22_GDLT``, ``models/model.py``,
  ``models/transformer.py``, ``models/loss.py``, ``models/triplet_loss.py``, ``train.py``):
  pre-extracted clip features ``(B, L, D)``; two 1x1 convolutions with BatchNorm; a copy of
  torch's post-norm transformer layers whose attention calls return their attention weights
  (``need_weights`` left at its default), no padding mask; four learnable grade queries, the
  diagonal of a linear layer, sigmoid, normalised, weighted by ``linspace(0, 1, 4)``; loss MSE
  plus the hardest-triplet loss on cosine distances of the decoded queries; SGD; each step
  copies its predictions to the CPU (numpy) for the epoch's correlation.

The Inception-I3D network itself is the same module as ours (a fresh :class:`I3DBackbone`
given our weights): the official I3D ports compute the same layers; what differs is how the
official steps call it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "OfficialCoRe",
    "OfficialGDLT",
    "OfficialMUSDL",
    "copy_weights",
    "core_labels",
    "gaussian_soft_labels",
    "musdl_window_to_clips",
    "reference_for",
]


# ---------------------------------------------------------------------------------------------
# MUSDL


def gaussian_soft_labels(marks: np.ndarray, sigma: float, bins: int, high: float) -> np.ndarray:
    """Soft labels as the official MUSDL dataset computes them, per sample on the CPU.

    The normal pdf (``sigma`` in bins) centred at ``mark * (bins - 1) / high``, evaluated at the
    bin indices and renormalised.

    Args:
        marks: ``(B, J)`` judges' marks.
        sigma: Standard deviation in bins.
        bins: Bins per judge (21).
        high: Highest mark (10).

    Returns:
        ``(B, J, bins)`` float32.
    """
    index = np.arange(bins, dtype=np.float64)
    centre = np.asarray(marks, dtype=np.float64)[..., None] * (bins - 1) / high
    pdf = np.exp(-0.5 * ((index - centre) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return (pdf / pdf.sum(axis=-1, keepdims=True)).astype(np.float32)


def musdl_window_to_clips(window: Tensor, starts: Sequence[int], clip_length: int) -> Tensor:
    """Our dataset's clips ``(B, N, C, T, H, W)`` of a window ``(B, frames, C, H, W)``.

    What ``sampling: clips`` with ``clip_starts`` gives our model for the frames the official
    dataset hands over as one window.
    """
    clips = [window[:, s : s + clip_length] for s in starts]  # (B, T, C, H, W) each
    return torch.stack(clips, dim=1).permute(0, 1, 3, 2, 4, 5).contiguous()


class _JudgeMLP(nn.Module):
    """One judge's evaluator: 1024 -> 256 -> 128 -> bins, ReLU, softmax (``MLP_block``)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], bins: int) -> None:
        super().__init__()
        if len(hidden) != 2:
            raise ValueError(f"the official evaluator has two hidden layers, got {list(hidden)}")
        self.activation = nn.ReLU()
        self.softmax = nn.Softmax(dim=-1)
        self.layer1 = nn.Linear(in_dim, hidden[0])
        self.layer2 = nn.Linear(hidden[0], hidden[1])
        self.layer3 = nn.Linear(hidden[1], bins)

    def forward(self, x: Tensor) -> Tensor:
        x = self.activation(self.layer1(x))
        x = self.activation(self.layer2(x))
        return self.softmax(self.layer3(x))


class OfficialMUSDL(nn.Module):
    """MUSDL's training step as the official code runs it.

    Args:
        i3d: The clip network (``(M, 3, T, H, W)`` -> ``(M, 1024)``).
        feature_dim: Its feature size.
        hidden: The evaluator's two hidden widths.
        judges: Judges (one evaluator each).
        bins: Bins per judge.
        starts: First frame of each segment in the window.
        clip_length: Frames per segment.
        judge_max: Highest mark (marks are ``argmax * judge_max / (bins - 1)``).
    """

    def __init__(
        self,
        i3d: nn.Module,
        feature_dim: int,
        hidden: Sequence[int],
        judges: int,
        bins: int,
        starts: Sequence[int],
        clip_length: int,
        judge_max: float = 10.0,
    ) -> None:
        super().__init__()
        self.i3d = i3d
        self.evaluator = nn.ModuleList(_JudgeMLP(feature_dim, hidden, bins) for _ in range(judges))
        self.feature_dim = feature_dim
        self.starts = list(starts)
        self.clip_length = clip_length
        self.bins = bins
        self.judge_max = judge_max

    def forward(self, videos: Tensor) -> list[Tensor]:
        """``(B, C, frames, H, W)`` -> one ``(B, bins)`` probability tensor per judge."""
        clip_feats = videos.new_empty(videos.shape[0], len(self.starts), self.feature_dim)
        for i, start in enumerate(self.starts):
            segment = videos[:, :, start : start + self.clip_length]
            clip_feats[:, i] = self.i3d(segment).reshape(videos.shape[0], -1)
        feats_avg = clip_feats.mean(1)
        return [evaluator(feats_avg) for evaluator in self.evaluator]

    @staticmethod
    def loss(probs: list[Tensor], soft_labels: Tensor) -> Tensor:
        """Sum over judges of ``KLDivLoss()`` (mean over samples x bins) of ``log(probs)``."""
        total = probs[0].new_zeros(())
        for j, prob in enumerate(probs):
            total = total + F.kl_div(torch.log(prob), soft_labels[:, j], reduction="none").mean()
        return total

    def scores(self, probs: list[Tensor], difficulty: Tensor) -> Tensor:
        """Arg-max marks, sorted, the middle three summed, times the difficulty."""
        step = self.judge_max / (self.bins - 1)
        marks = torch.stack([p.argmax(dim=-1) * step for p in probs], dim=1).sort()[0]
        return torch.sum(marks[:, 2:5], dim=1) * difficulty

    def train_step(self, batch: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> Tensor:
        """One step: window in ``(B, T, C, H, W)``, training predictions, loss, Adam."""
        videos = batch["window"].transpose(1, 2)  # N, C, T, H, W
        probs = self(videos)
        preds = self.scores(probs, batch["difficulty"])
        _ = [p.item() for p in preds]
        loss = self.loss(probs, batch["soft_judge_scores"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()


# ---------------------------------------------------------------------------------------------
# CoRe


class _RegressTree(nn.Module):
    """The regression tree (``RegressTree``): shared layer, grouped node layers, leaf regressor."""

    def __init__(self, in_channel: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.num_leaf = 2 ** (depth - 1)
        self.first_layer = nn.Sequential(nn.Linear(in_channel, hidden), nn.ReLU(inplace=True))
        self.feature_layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(2**d * hidden, 2 ** (d + 1) * hidden, 1, groups=2**d),
                nn.ReLU(inplace=True),
            )
            for d in range(depth - 1)
        )
        self.clf_layers = nn.ModuleList(
            nn.Conv1d(2**d * hidden, 2 ** (d + 1), 1, groups=2**d) for d in range(depth - 1)
        )
        self.reg_layer = nn.Conv1d(self.num_leaf * hidden, self.num_leaf, 1, groups=self.num_leaf)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Log-probabilities of every level's nodes and the per-leaf positions."""
        out_prob: list[Tensor] = []
        x = self.first_layer(x)
        bs = x.size(0)
        x = x.unsqueeze(-1)
        for i in range(self.depth - 1):
            prob = self.clf_layers[i](x).squeeze(-1)
            x = self.feature_layers[i](x)
            prob = F.log_softmax(prob.view(bs, -1, 2), dim=-1)
            if out_prob:
                prob = out_prob[-1].view(bs, -1, 1).expand(bs, -1, 2).contiguous() + prob
            out_prob.append(prob)
        return out_prob, self.reg_layer(x).squeeze(-1)


class _GroupHelper:
    """The leaf intervals and the CPU label / decoding loops (``Group_helper``, symmetrical).

    Args:
        deltas: ``|s_i - s_j|`` of the training pairs.
        depth: Tree depth.
        score_range: The outermost edge (``Max``); the first edge is 0 (``Min``).
    """

    def __init__(self, deltas: Sequence[float], depth: int, score_range: float) -> None:
        data = sorted(float(d) for d in deltas)
        n, leaves = len(data), 2 ** (depth - 1)
        half = leaves // 2
        group: list[list[float]] = [[] for _ in range(leaves)]
        for i in range(half):
            left = 0.0 if i == 0 else data[int(i / half * (n - 1))]
            right = score_range if i == half - 1 else data[int((i + 1) / half * (n - 1))]
            group[half + i] = [left, right]
        for i in range(half):
            group[i] = sorted(-v for v in group[leaves - 1 - i])
        self.group = group
        self.num_leaf = leaves

    def produce_label(self, scores: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Leaf one-hot ``(leaves, M)`` and positions (-1 outside the leaf), by Python loops."""
        values = scores.detach().cpu().numpy().reshape(-1)
        glabel, rlabel = [], []
        for left, right in self.group:
            cls_row, reg_row = [], []
            for s in values:
                inside = (left <= s < right) if s >= 0 else (left < s <= right)
                cls_row.append(1 if inside else 0)
                if not inside:
                    reg_row.append(-1.0)
                elif right == left:
                    reg_row.append(float(s - left))
                else:
                    reg_row.append(float((s - left) / (right - left)))
            glabel.append(cls_row)
            rlabel.append(reg_row)
        return torch.tensor(glabel).to(device), torch.tensor(rlabel).to(device)

    def inference(self, probs: np.ndarray, deltas: np.ndarray) -> Tensor:
        """Score differences of the arg-max leaves, one Python step per pair: ``(M, 1)``."""
        out = []
        for prob, delta in zip(probs, deltas, strict=True):
            leaf = int(prob.argmax())
            left, right = self.group[leaf]
            if left == right:
                out.append(left + delta[leaf])
            else:
                out.append(left + (right - left) * delta[leaf])
        return torch.tensor(np.asarray(out, dtype=np.float32)).reshape(-1, 1)


def core_labels(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The official CoRe inputs of one of our partner batches (``usingDD``, one exemplar).

    Returns:
        ``video_1`` (queries) and ``video_2`` (their first exemplars) as ``(B, C, frames, H,
        W)`` windows, ``label_1``/``label_2`` (score / difficulty, ``(B, 1)``) and ``diff``.
    """
    partners = batch["partners"]
    diff = batch["arrays"]["difficulty"].float().reshape(-1, 1)
    ex_diff = partners["arrays"]["difficulty"][:, 0].float().reshape(-1, 1)
    return {
        "video_1": batch["window"],
        "video_2": partners["window"][:, 0],
        "label_1": batch["scores"]["final_score"].float().reshape(-1, 1) / diff,
        "label_2": partners["scores"]["final_score"][:, 0].float().reshape(-1, 1) / ex_diff,
        "diff": diff,
    }


class OfficialCoRe(nn.Module):
    """CoRe's training step and test-time voting as the official code runs them.

    Args:
        backbone: The clip network (``(M, 3, T, H, W)`` -> ``(M, D)``).
        feature_dim: Its feature size ``D``.
        hidden: Width of the tree's layers.
        depth: Tree depth.
        deltas: Score differences of the training pairs (the leaf intervals).
        score_range: ``theta``.
        starts: First frame of each segment.
        clip_length: Frames per segment.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        hidden: int,
        depth: int,
        deltas: Sequence[float],
        score_range: float,
        starts: Sequence[int],
        clip_length: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.regressor = _RegressTree(2 * feature_dim + 1, hidden, depth)
        self.group = _GroupHelper(deltas, depth, score_range)
        self.theta = score_range
        self.starts = list(starts)
        self.clip_length = clip_length

    def train(self, mode: bool = True) -> OfficialCoRe:
        """Training mode with the backbone's BatchNorm frozen (``fix_bn``)."""
        super().train(mode)
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def features(self, target: Tensor, exemplar: Tensor) -> tuple[Tensor, Tensor]:
        """Both videos' mean segment features from ONE backbone call, segment-major."""
        total_video = torch.cat((target, exemplar), 0)
        video_pack = torch.cat(
            [total_video[:, :, s : s + self.clip_length] for s in self.starts]
        )
        total = self.backbone(video_pack).reshape(len(self.starts), len(total_video), -1)
        total = total.transpose(0, 1).mean(1)
        half = total.shape[0] // 2
        return total[:half], total[half:]

    def pair_loss(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The training loss of one micro-batch, with the exemplar-first pairs' outputs."""
        f1, f2 = self.features(inputs["video_1"], inputs["video_2"])
        label_1, label_2 = inputs["label_1"], inputs["label_2"]
        combined_1 = torch.cat((f1, f2, label_1 / self.theta), 1)  # the query first
        combined_2 = torch.cat((f2, f1, label_2 / self.theta), 1)  # the exemplar first
        combined = torch.cat((combined_1, combined_2), 0)
        out_prob, delta = self.regressor(combined)
        glabel_1, rlabel_1 = self.group.produce_label(label_2 - label_1, combined.device)
        glabel_2, rlabel_2 = self.group.produce_label(label_1 - label_2, combined.device)
        leaf_probs = out_prob[-1].reshape(combined.shape[0], -1)
        half = leaf_probs.shape[0] // 2
        lp1, lp2, d1, d2 = leaf_probs[:half], leaf_probs[half:], delta[:half], delta[half:]
        loss = F.nll_loss(lp1, glabel_1.argmax(0)) + F.nll_loss(lp2, glabel_2.argmax(0))
        for i in range(self.group.num_leaf):
            for pred, target in ((d1, rlabel_1), (d2, rlabel_2)):
                mask = target[i] >= 0
                if mask.sum() != 0:
                    loss = loss + F.mse_loss(
                        pred[:, i][mask].reshape(-1, 1).float(),
                        target[i][mask].reshape(-1, 1).float(),
                    )
        return loss, lp2, d2

    def train_step(
        self, micro_batches: Sequence[Mapping[str, Tensor]], optimizer: torch.optim.Optimizer
    ) -> Tensor:
        """``step_per_update`` micro-batches (backward each), then one Adam update."""
        loss = torch.zeros(())
        for inputs in micro_batches:
            loss, lp2, d2 = self.pair_loss(inputs)
            loss.backward()
            relative = self.group.inference(lp2.detach().cpu().numpy(), d2.detach().cpu().numpy())
            score = (relative.to(inputs["diff"].device) + inputs["label_2"]) * inputs["diff"]
            _ = [s.item() for s in score]
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    @torch.no_grad()
    def vote(
        self, video_1: Tensor, videos_2: Sequence[Tensor], labels_2: Sequence[Tensor], diff: Tensor
    ) -> Tensor:
        """Test scores ``(B,)``: each voter in its own call, the query encoded again each time."""
        score: Tensor | float = 0.0
        for video_2, label_2 in zip(videos_2, labels_2, strict=True):
            f1, f2 = self.features(video_1, video_2)
            combined = torch.cat((f2, f1, label_2 / self.theta), 1)
            out_prob, delta = self.regressor(combined)
            leaf_probs = out_prob[-1].reshape(combined.shape[0], -1)
            relative = self.group.inference(leaf_probs.cpu().numpy(), delta.cpu().numpy())
            score = score + (relative.to(diff.device) + label_2) * diff
        return (torch.as_tensor(score) / len(videos_2)).reshape(-1)


# ---------------------------------------------------------------------------------------------
# GDLT


class _EncoderLayer(nn.Module):
    """Post-norm encoder layer whose attention also returns its weights (GDLT's copy)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor) -> Tensor:
        src2, _ = self.self_attn(src, src, src)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(src2))


class _DecoderLayer(nn.Module):
    """Post-norm decoder layer whose attentions also return their weights (GDLT's copy)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor) -> Tensor:
        tgt2 = self.self_attn(tgt, tgt, tgt)[0]
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2, _ = self.multihead_attn(tgt, memory, memory)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


def _hardest_triplet(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``HardTripletLoss(hardest=True)`` on cosine distances, with its masks."""
    norm = F.normalize(embeddings, dim=-1)
    dist = 1 - torch.mm(norm, norm.T)
    eye = torch.eye(labels.shape[0], device=labels.device, dtype=torch.bool)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = (dist * (same & ~eye).float()).max(dim=1, keepdim=True)[0]
    negative_mask = (~same).float()
    far = dist.max(dim=1, keepdim=True)[0]
    negative = (dist + far * (1.0 - negative_mask)).min(dim=1, keepdim=True)[0]
    return F.relu(positive - negative + margin).mean()


class OfficialGDLT(nn.Module):
    """GDLT's model and training step as the official code runs them.

    Args:
        in_dim: Clip feature size.
        in_hidden: Width of the first 1x1 convolution.
        dim: Transformer width.
        heads: Attention heads.
        encoder_layers: Encoder layers.
        decoder_layers: Decoder layers.
        ffn: Feed-forward width.
        queries: Grade queries.
        dropout: Dropout in the transformer.
        alpha: Weight of the triplet loss.
        margin: Its margin.
    """

    def __init__(self, in_dim: int, in_hidden: int, dim: int, heads: int, encoder_layers: int,
                 decoder_layers: int, ffn: int, queries: int, dropout: float = 0.3,
                 alpha: float = 1.0, margin: float = 1.0) -> None:
        super().__init__()
        self.in_proj = nn.Sequential(
            nn.Conv1d(in_dim, in_hidden, kernel_size=1),
            nn.BatchNorm1d(in_hidden),
            nn.ReLU(),
            nn.Conv1d(in_hidden, dim, kernel_size=1),
            nn.BatchNorm1d(dim),
        )
        self.encoder_layers = nn.ModuleList(
            _EncoderLayer(dim, heads, ffn, dropout) for _ in range(encoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(dim)
        self.decoder_layers = nn.ModuleList(
            _DecoderLayer(dim, heads, ffn, dropout) for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.prototype = nn.Embedding(queries, dim)
        self.regressor = nn.Linear(dim, queries)
        self.register_buffer("weight", torch.linspace(0, 1, queries), persistent=False)
        self.alpha, self.margin = alpha, margin

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, L, D)`` -> ``output`` ``(B,)`` in [0, 1] and ``embed`` ``(B, Q, dim)``."""
        b = x.shape[0]
        x = self.in_proj(x.transpose(1, 2)).transpose(1, 2)
        q = self.prototype.weight.unsqueeze(0).repeat(b, 1, 1)
        for layer in self.encoder_layers:
            x = layer(x)
        memory = self.encoder_norm(x)
        for layer in self.decoder_layers:
            q = layer(q, memory)
        q1 = self.decoder_norm(q)
        s = torch.diagonal(self.regressor(q1), dim1=-2, dim2=-1)
        norm_s = torch.sigmoid(s)
        norm_s = norm_s / torch.sum(norm_s, dim=1, keepdim=True)
        out = torch.sum(self.weight.unsqueeze(0).repeat(b, 1) * norm_s, dim=1)
        return {"output": out, "embed": q1}

    def loss(self, out: Mapping[str, Tensor], label: Tensor) -> Tensor:
        """MSE on score / scale plus ``alpha`` x the hardest-triplet loss of the queries."""
        feat = out["embed"]
        b, n, c = feat.shape
        labels = torch.arange(n, device=feat.device).repeat(b)
        triplet = _hardest_triplet(feat.reshape(-1, c), labels, self.margin)
        return F.mse_loss(out["output"], label) + self.alpha * triplet

    def train_step(self, batch: Mapping[str, Tensor], optimizer: torch.optim.Optimizer) -> Tensor:
        """One step: forward, loss, SGD, predictions copied to the CPU."""
        out = self(batch["features"])
        loss = self.loss(out, batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _ = out["output"].cpu().detach().numpy()
        return loss.detach()


# ---------------------------------------------------------------------------------------------
# building and weights


def _head(model: nn.Module, name: str) -> nn.Module:
    heads = [h for h in model.heads.values() if h.name == name]
    if len(heads) != 1:
        raise ValueError(f"model has {len(heads)} '{name}' heads; the reference needs one")
    return heads[0]


def _fresh_backbone(model: nn.Module) -> nn.Module:
    """A new backbone of the model's class and params (weights copied later)."""
    backbone = model.backbone
    return type(backbone)(copy.deepcopy(backbone.params))


def reference_for(method: str, model: nn.Module, **sizes: Any) -> nn.Module:
    """The official-structure reference of ``method`` with the sizes of our ``model``.

    Args:
        method: ``musdl``, ``core`` or ``gdlt``.
        model: Our :class:`~aqa_framework.model.MultitaskModel` of that method.
        **sizes: ``starts`` and ``clip_length`` (MUSDL, CoRe), ``deltas`` (CoRe: the
            training pairs' score differences its intervals are fitted on).
    """
    if method == "musdl":
        head = _head(model, "musdl")
        return OfficialMUSDL(
            _fresh_backbone(model), head.in_shape[0], head.params.hidden, len(head.columns),
            head.bins.count, sizes["starts"], sizes["clip_length"], head.bins.high,
        )
    if method == "core":
        head = _head(model, "core")
        return OfficialCoRe(
            _fresh_backbone(model), head.in_shape[0], head.params.hidden, head.params.depth,
            sizes["deltas"], head.theta, sizes["starts"], sizes["clip_length"],
        )
    if method == "gdlt":
        head = _head(model, "gdlt")
        p = head.params
        return OfficialGDLT(
            head.in_shape[0], p.in_hidden, p.dim, p.heads, p.encoder_layers,
            p.decoder_layers, p.ffn, p.queries, p.dropout, p.triplet_weight, p.triplet_margin,
        )
    raise ValueError(f"unknown method {method!r} (musdl, core or gdlt)")


def _module_pairs(reference: nn.Module, model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(reference module, our module) pairs whose state dicts correspond key for key."""
    if isinstance(reference, OfficialMUSDL):
        head = _head(model, "musdl")
        pairs = [(reference.i3d, model.backbone)]
        for ours, theirs in zip(head.evaluators, reference.evaluator, strict=True):
            pairs += [(theirs.layer1, ours[0]), (theirs.layer2, ours[2]), (theirs.layer3, ours[4])]
        return pairs
    if isinstance(reference, OfficialCoRe):
        head, tree = _head(model, "core"), reference.regressor
        return [
            (reference.backbone, model.backbone), (tree.first_layer, head.first),
            (tree.feature_layers, head.splits), (tree.clf_layers, head.classifiers),
            (tree.reg_layer, head.regressor),
        ]
    if isinstance(reference, OfficialGDLT):
        head = _head(model, "gdlt")
        return [
            (reference.in_proj, head.in_proj), (reference.encoder_layers, head.encoder.layers),
            (reference.encoder_norm, head.encoder.norm),
            (reference.decoder_layers, head.decoder.layers),
            (reference.decoder_norm, head.decoder.norm),
            (reference.prototype, head.prototype), (reference.regressor, head.regressor),
        ]
    raise ValueError(f"no weight mapping for {type(reference).__name__}")


@torch.no_grad()
def copy_weights(reference: nn.Module, model: nn.Module) -> None:
    """Give an official-structure reference the weights (and BatchNorm statistics) of our model.

    Raises:
        ValueError: If a parameter has no counterpart, shapes differ, or a reference
            parameter is left without a value.
    """
    copied = 0
    for dst, src in _module_pairs(reference, model):
        src_state, dst_state = src.state_dict(), dst.state_dict()
        if set(src_state) != set(dst_state):
            extra = sorted(set(src_state) ^ set(dst_state))[:5]
            raise ValueError(f"parameter names differ ({type(dst).__name__}): {extra}")
        for name, value in src_state.items():
            if dst_state[name].shape != value.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} vs "
                                 f"{tuple(dst_state[name].shape)}")
            dst_state[name].copy_(value)
        copied += sum(p.numel() for p in dst.parameters())
    total = sum(p.numel() for p in reference.parameters())
    if copied != total:
        raise ValueError(f"copied {copied} of {total} reference parameters")
