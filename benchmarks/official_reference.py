"""C3D-AVG-MTL run the way the official MTL-AQA code runs it: the speed and maths reference.

This re-implements the official training step's structure (Parmar & Morris, CVPR 2019, code
release ``train_test_C3DAVG.py`` with its modules ``C3D_altered``, ``my_fc6``,
``score_regressor``, ``dive_classifier`` and ``S2VTModel``):

* the C3D network is called once per 16-frame clip in a Python loop and the clip features
  are concatenated one by one;
* the average of the clip features goes through fc6 (+ ReLU), then the score regressor and
  the five classifiers;
* the caption module (two 2-layer GRUs, S2VT style) first reads the clip features, then is
  stepped one token at a time in Python (each step one call of each GRU on a single zero
  frame / the previous true word), both in training (teacher forcing) and at inference
  (greedy decoding);
* losses: MSE + L1 on score / 17, the sum of five cross-entropies, and the caption NLL summed
  over unmasked tokens and divided by the batch size, weighted 1 / 1 / 0.01; fp32; Adam.

It computes exactly what :class:`~aqa_framework.model.MultitaskModel` computes for the
C3D-AVG-MTL spec (batched clips, one GRU call per stack); :func:`copy_weights` gives it the
weights of such a model so that tests can check that both produce the same loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "OfficialC3D",
    "OfficialC3DAVGMTL",
    "OfficialS2VT",
    "copy_weights",
    "reference_for",
]

_C3D_CHANNELS = {
    "conv1": 64, "conv2": 128, "conv3a": 256, "conv3b": 256,
    "conv4a": 512, "conv4b": 512, "conv5a": 512, "conv5b": 512,
}


def _scaled(channels: int, width: float) -> int:
    if width == 1.0:
        return channels
    from timm.layers import make_divisible

    return int(make_divisible(channels * width, divisor=4))


class OfficialC3D(nn.Module):
    """C3D up to pool5 (the official ``C3D_altered``), with an optional width multiplier."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = {k: _scaled(v, width) for k, v in _C3D_CHANNELS.items()}
        self.conv1 = nn.Conv3d(3, c["conv1"], kernel_size=3, padding=1)
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = nn.Conv3d(c["conv1"], c["conv2"], kernel_size=3, padding=1)
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv3a = nn.Conv3d(c["conv2"], c["conv3a"], kernel_size=3, padding=1)
        self.conv3b = nn.Conv3d(c["conv3a"], c["conv3b"], kernel_size=3, padding=1)
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv4a = nn.Conv3d(c["conv3b"], c["conv4a"], kernel_size=3, padding=1)
        self.conv4b = nn.Conv3d(c["conv4a"], c["conv4b"], kernel_size=3, padding=1)
        self.pool4 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv5a = nn.Conv3d(c["conv4b"], c["conv5a"], kernel_size=3, padding=1)
        self.conv5b = nn.Conv3d(c["conv5a"], c["conv5b"], kernel_size=3, padding=1)
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, 16, H, W)`` clip -> ``(B, D)`` pool5 features."""
        h = self.pool1(self.relu(self.conv1(x)))
        h = self.pool2(self.relu(self.conv2(h)))
        h = self.relu(self.conv3a(h))
        h = self.pool3(self.relu(self.conv3b(h)))
        h = self.relu(self.conv4a(h))
        h = self.pool4(self.relu(self.conv4b(h)))
        h = self.relu(self.conv5a(h))
        h = self.pool5(self.relu(self.conv5b(h)))
        return h.reshape(h.shape[0], -1)


class OfficialS2VT(nn.Module):
    """The official S2VT caption module, stepped one token at a time.

    Args:
        vocab: Vocabulary size.
        dim_vid: Clip feature size.
        hidden: GRU hidden size.
        word: Word embedding size.
        layers: Layers of each GRU.
        dropout: Dropout between the stacked GRU layers.
        sos: Start token.
    """

    def __init__(
        self, vocab: int, dim_vid: int, hidden: int, word: int, layers: int, dropout: float,
        sos: int = 1,
    ) -> None:
        super().__init__()
        drop = dropout if layers > 1 else 0.0
        self.rnn1 = nn.GRU(dim_vid, hidden, layers, batch_first=True, dropout=drop)
        self.rnn2 = nn.GRU(hidden + word, hidden, layers, batch_first=True, dropout=drop)
        self.embedding = nn.Embedding(vocab, word)
        self.out = nn.Linear(hidden, vocab)
        self.dim_vid, self.dim_word, self.sos = dim_vid, word, sos

    def _read_clips(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = feats.shape
        padding_words = feats.new_zeros(b, n, self.dim_word)
        out1, state1 = self.rnn1(feats)
        _, state2 = self.rnn2(torch.cat((out1, padding_words), dim=2))
        return feats.new_zeros(b, 1, self.dim_vid), state1, state2

    def forward(self, feats: Tensor, captions: Tensor) -> Tensor:
        """Teacher-forced log-probabilities ``(B, L-1, V)``, one Python step per token."""
        padding_frame, state1, state2 = self._read_clips(feats)
        seq_probs = []
        for i in range(captions.shape[1] - 1):
            words = self.embedding(captions[:, i])
            out1, state1 = self.rnn1(padding_frame, state1)
            out2, state2 = self.rnn2(torch.cat((out1, words.unsqueeze(1)), dim=2), state2)
            logits = F.log_softmax(self.out(out2.squeeze(1)), dim=1)
            seq_probs.append(logits.unsqueeze(1))
        return torch.cat(seq_probs, 1)

    @torch.no_grad()
    def greedy(self, feats: Tensor, steps: int) -> Tensor:
        """Greedy decoding for ``steps`` tokens (no early stop, as the official code)."""
        padding_frame, state1, state2 = self._read_clips(feats)
        words = self.embedding(torch.full((feats.shape[0],), self.sos, device=feats.device))
        preds = []
        for _ in range(steps):
            out1, state1 = self.rnn1(padding_frame, state1)
            out2, state2 = self.rnn2(torch.cat((out1, words.unsqueeze(1)), dim=2), state2)
            logits = F.log_softmax(self.out(out2.squeeze(1)), dim=1)
            pred = logits.argmax(dim=1)
            words = self.embedding(pred)
            preds.append(pred.unsqueeze(1))
        return torch.cat(preds, 1)


class _DiveClassifier(nn.Module):
    def __init__(self, in_dim: int, fields: Mapping[str, int]) -> None:
        super().__init__()
        self.fields = list(fields)
        for f, k in fields.items():
            setattr(self, f"fc_{f}", nn.Linear(in_dim, k))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {f: getattr(self, f"fc_{f}")(x) for f in self.fields}


class OfficialC3DAVGMTL(nn.Module):
    """C3D-AVG-MTL as the official code builds and runs it.

    Args:
        width: C3D width multiplier.
        clip_shape: One clip's ``(C, T, H, W)`` (sets the pool5 feature size).
        fc6: Width of fc6 (4096).
        fields: Class field -> number of classes.
        vocab: Caption vocabulary size.
        hidden: GRU hidden size.
        word: Word embedding size.
        layers: GRU layers.
        dropout: Dropout between GRU layers.
        score_scale: Scores are learned as ``score / score_scale`` (17).
        weights: Loss weights of ``score``, ``cls`` and ``caption`` (1, 1, 0.01).
        sos: Start token.
    """

    def __init__(
        self,
        width: float,
        clip_shape: tuple[int, int, int, int],
        fc6: int,
        fields: Mapping[str, int],
        vocab: int,
        hidden: int = 512,
        word: int = 512,
        layers: int = 2,
        dropout: float = 0.5,
        score_scale: float = 17.0,
        weights: tuple[float, float, float] = (1.0, 1.0, 0.01),
        sos: int = 1,
    ) -> None:
        super().__init__()
        self.cnn = OfficialC3D(width)
        with torch.device("meta"):
            dim = OfficialC3D(width)(torch.empty(1, *clip_shape)).shape[1]
        self.fc6 = nn.Sequential(nn.Linear(dim, fc6), nn.ReLU())
        self.score_regressor = nn.Linear(fc6, 1)
        self.dive_classifier = _DiveClassifier(fc6, fields)
        self.caption = OfficialS2VT(vocab, dim, hidden, word, layers, dropout, sos)
        self.score_scale = score_scale
        self.weights = weights

    def clip_features(self, video: Tensor) -> Tensor:
        """``(B, N, C, T, H, W)`` -> ``(B, N, D)``, one backbone call per clip."""
        clip_feats = video.new_empty(video.shape[0], 0, 0)
        for i in range(video.shape[1]):
            feats = self.cnn(video[:, i]).unsqueeze(1)
            clip_feats = feats if clip_feats.shape[1] == 0 else torch.cat((clip_feats, feats), 1)
        return clip_feats

    def forward(self, video: Tensor, captions: Tensor) -> dict[str, Any]:
        """Training forward: score, class logits, teacher-forced caption log-probabilities."""
        clip_feats = self.clip_features(video)
        fc6 = self.fc6(clip_feats.mean(1))
        return {
            "score": self.score_regressor(fc6),
            "logits": self.dive_classifier(fc6),
            "log_probs": self.caption(clip_feats, captions),
        }

    def loss(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> tuple[Tensor, dict]:
        """Total loss and the three task losses, as the official training step."""
        true = batch["scores"]["final_score"].float().unsqueeze(1) / self.score_scale
        pred = outputs["score"]
        score = F.mse_loss(pred, true) + F.l1_loss(pred, true)
        cls = sum(F.cross_entropy(lg, batch["classes"][f]) for f, lg in outputs["logits"].items())
        logp = outputs["log_probs"]
        captions = batch["caption"]
        target = captions[:, 1:]
        mask = (torch.arange(captions.shape[1], device=logp.device).unsqueeze(0)
                < batch["caption_length"].unsqueeze(1)).float()[:, 1:]
        nll = F.nll_loss(logp.reshape(-1, logp.shape[2]), target.reshape(-1), reduction="none")
        caption = torch.sum(nll * mask.reshape(-1)) / logp.shape[0]
        w = self.weights
        total = w[0] * score + w[1] * cls + w[2] * caption
        return total, {"score": score, "cls": cls, "caption": caption}

    def train_step(self, batch: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> Tensor:
        """One optimisation step (forward, loss, backward, Adam), fp32."""
        outputs = self(batch["video"], batch["caption"])
        total, _ = self.loss(outputs, batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return total.detach()

    @torch.no_grad()
    def infer(self, video: Tensor, steps: int) -> dict[str, Tensor]:
        """Inference: score (in points), class ids and greedy caption tokens."""
        clip_feats = self.clip_features(video)
        fc6 = self.fc6(clip_feats.mean(1))
        return {
            "score": self.score_regressor(fc6)[:, 0] * self.score_scale,
            "classes": {f: lg.argmax(1) for f, lg in self.dive_classifier(fc6).items()},
            "tokens": self.caption.greedy(clip_feats, steps),
        }


def _heads_by_kind(model: nn.Module) -> dict[str, nn.Module]:
    found = {}
    for head in model.heads.values():
        found[head.name] = head
    missing = {"score", "classification", "caption"} - set(found)
    if missing:
        raise ValueError(f"model lacks the C3D-AVG-MTL heads {sorted(missing)}")
    return found


def reference_for(model: nn.Module, clip_shape: tuple[int, int, int, int]) -> OfficialC3DAVGMTL:
    """An official-approach model with the same sizes as a C3D-AVG-MTL ``MultitaskModel``.

    Args:
        model: Our model (backbone ``c3d``, aggregator ``average`` with ``shared_fc``, heads
            ``score``, ``classification`` and ``caption`` in ``fc`` form).
        clip_shape: One clip's ``(C, T, H, W)``.
    """
    heads = _heads_by_kind(model)
    cap = heads["caption"].params
    weights = {h.name: model.loss_weights[t] for t, h in model.heads.items()}
    targets = model.targets
    return OfficialC3DAVGMTL(
        width=model.backbone.params.width,
        clip_shape=clip_shape,
        fc6=model.aggregator.params.shared_fc,
        fields={f: c.num_classes for f, c in targets.classes.items()},
        vocab=targets.captions.vocab_size,
        hidden=cap.hidden,
        word=cap.word_dim,
        layers=cap.layers,
        dropout=cap.dropout,
        score_scale=heads["score"].params.target_scale,
        weights=(weights["score"], weights["classification"], weights["caption"]),
        sos=targets.captions.sos_index,
    )


@torch.no_grad()
def copy_weights(reference: OfficialC3DAVGMTL, model: nn.Module) -> None:
    """Give ``reference`` the weights of our C3D-AVG-MTL ``model``.

    Raises:
        ValueError: If a parameter has no counterpart or shapes differ.
    """
    heads = _heads_by_kind(model)
    pairs: list[tuple[nn.Module, nn.Module]] = [
        (reference.cnn, model.backbone),
        (reference.fc6[0], model.aggregator.fc),
        (reference.score_regressor, heads["score"].out),
        (reference.caption.rnn1, heads["caption"].encoder),
        (reference.caption.rnn2, heads["caption"].decoder),
        (reference.caption.embedding, heads["caption"].embedding),
        (reference.caption.out, heads["caption"].out),
    ]
    for f in reference.dive_classifier.fields:
        pairs.append((getattr(reference.dive_classifier, f"fc_{f}"),
                      heads["classification"].classifiers[f]))
    copied = 0
    for dst, src in pairs:
        src_state = src.state_dict()
        dst_state = dst.state_dict()
        if set(src_state) != set(dst_state):
            raise ValueError(f"parameter names differ: {sorted(src_state)} vs {sorted(dst_state)}")
        for name, value in src_state.items():
            if dst_state[name].shape != value.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} vs "
                                 f"{tuple(dst_state[name].shape)}")
            dst_state[name].copy_(value)
            copied += value.numel()
    total = sum(p.numel() for p in reference.parameters())
    if copied != total:
        raise ValueError(f"copied {copied} of {total} reference parameters")
