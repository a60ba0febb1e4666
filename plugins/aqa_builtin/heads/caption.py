"""Commentary captioning head: GRU encoder-decoder over the clip-feature sequence."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.heads.context import ConvHeadTrunk
from aqa_builtin.layers import Form, flat_size, resolve_form
from aqa_framework import metrics as M
from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import Targets

CaptionMetric = Literal["bleu", "meteor", "rouge", "cider"]


def run_gru(gru: nn.GRU, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Run a GRU in fp32, also under autocast.

    CUDA autocast runs cuDNN RNNs in fp16 whatever autocast dtype was asked for, and bf16
    training uses no loss scaling: the small caption gradients (loss weight 0.01) would
    underflow in fp16. A GRU call is latency-bound here, so fp32 costs little. On a CPU the
    GRU runs through :func:`aqa_builtin.cpu_gru.gru_forward` (the same computation, with
    the recurrent weights' gradients formed in one product instead of one per step).
    """
    from aqa_builtin.cpu_gru import gru_forward

    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return gru_forward(gru, x.float(), None if state is None else state.float())
    return gru_forward(gru, x, state)


class CaptionParams(BaseModel):
    """Parameters of :class:`CaptionHead`."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(512, ge=1, description="GRU hidden size (encoder and decoder).")
    word_dim: int = Field(512, ge=1, description="Word embedding size.")
    layers: int = Field(2, ge=1, description="Layers of each GRU.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout between stacked GRU layers.")
    decoding: Literal["greedy", "beam"] = Field(
        "greedy", description="Decoding at inference: greedy (as the paper) or beam search."
    )
    beam_size: int = Field(5, ge=1, description="Beams for decoding: beam.")
    length_penalty: float = Field(
        1.0,
        ge=0,
        description="Beam search ranks finished captions by log-probability / length ** this "
        "(0: raw log-probability, which favours short captions).",
    )
    metrics: list[CaptionMetric] = Field(
        default_factory=lambda: ["bleu", "meteor", "rouge", "cider"],
        description="Caption metrics computed on evaluation (meteor needs Java).",
    )
    tokenize: bool = Field(
        True,
        description="PTB-tokenize references and generated captions before scoring, as the "
        "COCO caption evaluation (and the papers) do; needs Java unless the captions are plain "
        "lower-case words. Without it captions are split on spaces and the metrics are "
        "reported with the suffix _raw.",
    )
    full_references: bool = Field(
        True,
        description="Score against the complete reference captions (COCO convention), not "
        "the ones cut to the dataset's caption length for training. false reports the metrics "
        "with the suffix _raw.",
    )
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction: an official MTL-AQA "
        "model_caption checkpoint (its 5779-word vocabulary fills the first rows of the "
        "dataset's; the words it lacks are never generated) or this head's own state dict.",
        json_schema_extra=PATH_PARAM,
    )
    form: Form = Field(
        "auto",
        description="How each clip's features become a vector: 'fc' (flatten, C3D-AVG pool5), "
        "'conv' (MSCADC head trunk, C3 and max pool to pool_size, then flatten) or 'auto'.",
    )
    bottleneck: int = Field(12, ge=1, description="conv form: channels inside the head.")
    pool_size: tuple[int, int, int] = Field(
        (1, 10, 10),
        description="conv form: (T, H, W) of the adaptive max pool before flattening "
        "(1x10x10 reproduces the official 1200-d MSCADC caption features at 180x180).",
    )


class CaptionHead(TaskHead):
    """Generates commentary from the clip sequence (2-layer GRU encoder and decoder).

    Encoder GRU over the clip features followed by zero frames; decoder GRU over the
    encoder's outputs concatenated with zero words (while clips are read) and then the
    previous word's embedding (S2VT-style, as the official code). Training is teacher-forced
    as ONE call of each GRU over the whole sequence; the loss is the masked negative
    log-likelihood summed over words and averaged over captions (paper eq. 3). Inference
    decodes greedily or with batched beam search; the caption length limit and the
    vocabulary come from the dataset.
    """

    name = "caption"
    consumes = "clips"
    target_kind = "captions"
    metric_directions = {
        f"{name}{suffix}": "max"
        for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
        for suffix in ("", "_raw")
    }
    Params = CaptionParams

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Captions must be provided, with a vocabulary of at least ``beam_size`` words."""
        problem = super().check_targets(params, targets)
        if problem:
            return problem
        vocab = targets.captions.vocab_size
        if params.decoding == "beam" and params.beam_size > vocab:
            return f"head 'caption' has beam_size {params.beam_size} > vocabulary size {vocab}"
        return None

    def __init__(self, params: CaptionParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        cap = targets.captions
        assert cap is not None  # check_targets ran
        self.vocab_size = cap.vocab_size
        self.max_steps = cap.max_length + 1  # words and <eos>
        self.form = resolve_form(params.form, in_shape)
        if self.form == "conv":
            b = params.bottleneck
            self.trunk = ConvHeadTrunk(in_shape[0], b)
            self.final = nn.Conv3d(b, b, kernel_size=3, padding=1)
            self.pool = nn.AdaptiveMaxPool3d(tuple(params.pool_size))
            feat_dim = b * math.prod(params.pool_size)
        else:
            feat_dim = flat_size(in_shape)
        drop = params.dropout if params.layers > 1 else 0.0
        self.feat_dim = feat_dim
        self.encoder = nn.GRU(feat_dim, params.hidden, params.layers, batch_first=True,
                              dropout=drop)
        self.decoder = nn.GRU(params.hidden + params.word_dim, params.hidden, params.layers,
                              batch_first=True, dropout=drop)
        self.embedding = nn.Embedding(self.vocab_size, params.word_dim)
        self.out = nn.Linear(params.hidden, self.vocab_size)

    def load_pretrained(self, path: str | Path) -> None:
        """Load an official ``model_caption`` checkpoint or this head's own weights.

        A checkpoint made for fewer words (the official model has 5779, ``vocab.json`` 5781)
        fills the first rows of the word embedding and output layer; the other words are
        never generated (:func:`~aqa_framework.weights.fill_vocabulary_rows`).

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit.
        """
        from aqa_framework.weights import (
            fill_vocabulary_rows,
            load_into,
            load_state_dict,
            official_to_head_keys,
        )

        state = official_to_head_keys("caption", load_state_dict(path))
        load_into(self, fill_vocabulary_rows(state, self), source=f"{path} (head {self.name})")

    # -- features --------------------------------------------------------------------------

    def encode_clips(self, features: Tensor) -> Tensor:
        """Clip features ``(B, N, *F)`` -> the encoder's input sequence ``(B, N, D)``."""
        b, n = features.shape[:2]
        if self.form == "conv":
            h = self.trunk(features.flatten(0, 1))
            h = self.pool(self.final(h))
            return h.reshape(b, n, -1)
        return features.reshape(b, n, -1)

    def _encoder_outputs(self, seq: Tensor, steps: int) -> Tensor:
        """Encoder outputs over the clips and then ``steps`` zero frames: ``(B, N+steps, H)``."""
        b, _, d = seq.shape
        frames = torch.cat([seq, seq.new_zeros(b, steps, d)], dim=1)
        out, _ = run_gru(self.encoder, frames)
        return out

    # -- training --------------------------------------------------------------------------

    def teacher_forced(self, seq: Tensor, captions: Tensor) -> Tensor:
        """Log-probabilities of each next token given the true previous ones.

        Args:
            seq: Encoder input sequence ``(B, N, D)``.
            captions: ``(B, L)`` token ids ``<sos> w1 ... <eos> pad ...``.

        Returns:
            ``(B, L-1, V)``: entry ``t`` scores token ``t+1`` after reading tokens ``0..t``.
        """
        b, n, _ = seq.shape
        steps = captions.shape[1] - 1
        enc = self._encoder_outputs(seq, steps)
        words = self.embedding(captions[:, :steps])
        words = torch.cat([words.new_zeros(b, n, words.shape[2]), words], dim=1)
        dec, _ = run_gru(self.decoder, torch.cat([enc, words.to(enc.dtype)], dim=2))
        return self.out(dec[:, n:]).float().log_softmax(dim=-1)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """Teacher-forced log-probabilities and/or decoded tokens.

        Log-probabilities when the batch carries captions; decoded tokens at inference
        (``batch`` is ``None``) and in eval mode.

        Returns:
            ``{"log_probs": (B, L-1, V)}`` and/or ``{"tokens": (B, steps)}``.
        """
        seq = self.encode_clips(features)
        out: dict[str, Tensor] = {}
        if batch is not None and "caption" in batch:
            captions = torch.as_tensor(batch["caption"]).to(seq.device, torch.long)
            out["log_probs"] = self.teacher_forced(seq, captions)
        if batch is None or not self.training:
            out["tokens"] = self.decode(seq)
        return out

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Masked NLL of the true words and ``<eos>``, summed per caption, mean over captions."""
        logp = outputs["log_probs"]
        captions = torch.as_tensor(batch["caption"]).to(logp.device, torch.long)
        lengths = torch.as_tensor(batch["caption_length"]).to(logp.device, torch.long)
        target = captions[:, 1 : logp.shape[1] + 1]
        nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2)
        positions = torch.arange(target.shape[1], device=logp.device)
        mask = positions.unsqueeze(0) < (lengths - 1).unsqueeze(1)
        return (nll * mask).sum() / captions.shape[0]

    # -- inference -------------------------------------------------------------------------

    def _start(self, seq: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder outputs for every decoding step, and the decoder state after the clips."""
        b, n, _ = seq.shape
        enc = self._encoder_outputs(seq, self.max_steps)
        zeros = enc.new_zeros(b, n, self.params.word_dim)
        _, state = run_gru(self.decoder, torch.cat([enc[:, :n], zeros], dim=2))
        return enc[:, n:], state

    def _step(self, enc_t: Tensor, words: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([enc_t.unsqueeze(1), self.embedding(words).to(enc_t.dtype).unsqueeze(1)], 2)
        out, state = run_gru(self.decoder, x, state)
        return self.out(out[:, 0]).float().log_softmax(dim=-1), state

    def _stepper(self, enc: Tensor) -> Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]:
        """One decoding step ``(t, previous words, state) -> (log-probabilities, state)``.

        On a CPU in fp32 the encoder outputs' share of the decoder's input projection is
        computed for all steps at once (:class:`~aqa_builtin.cpu_gru.StepwiseGRU`).
        """
        from aqa_builtin.cpu_gru import StepwiseGRU, fast_path_applies

        if not fast_path_applies(self.decoder, enc):
            return lambda t, words, state: self._step(enc[:, t], words, state)
        gru = StepwiseGRU(self.decoder, enc)

        def step(t: int, words: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
            out, state = gru.step(t, self.embedding(words), state)
            return self.out(out).float().log_softmax(dim=-1), state

        return step

    @torch.no_grad()
    def decode(self, seq: Tensor) -> Tensor:
        """Decode captions for an encoder input sequence ``(B, N, D)``.

        Returns:
            ``(B, steps)`` token ids without ``<sos>``; each row ends at its first ``<eos>``
            (padded after it) unless the length limit was reached.
        """
        if self.params.decoding == "beam" and self.params.beam_size > 1:
            return self.beam_search(seq, self.params.beam_size)
        return self.greedy(seq)

    @torch.no_grad()
    def greedy(self, seq: Tensor) -> Tensor:
        """Greedy decoding (most likely word at each step)."""
        cap = self.targets.captions
        enc, state = self._start(seq)
        step = self._stepper(enc)
        b = seq.shape[0]
        words = torch.full((b,), cap.sos_index, dtype=torch.long, device=seq.device)
        finished = torch.zeros(b, dtype=torch.bool, device=seq.device)
        tokens = []
        for t in range(self.max_steps):
            logp, state = step(t, words, state)
            words = logp.argmax(dim=-1).masked_fill(finished, cap.pad_index)
            tokens.append(words)
            finished = finished | (words == cap.eos_index)
            if bool(finished.all()):
                break
        return torch.stack(tokens, dim=1)

    @torch.no_grad()
    def beam_search(self, seq: Tensor, beam_size: int) -> Tensor:
        """Beam search, batched over samples and beams.

        Finished beams keep their score and are extended with padding at no cost; at the end
        each sample's best beam by ``log p / length ** length_penalty`` is returned.
        """
        cap = self.targets.captions
        b, k, v = seq.shape[0], beam_size, self.vocab_size
        enc, state = self._start(seq)
        enc = enc.repeat_interleave(k, dim=0)
        state = state.repeat_interleave(k, dim=1)
        step = self._stepper(enc)
        dev = seq.device
        scores = torch.full((b, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0
        words = torch.full((b * k,), cap.sos_index, dtype=torch.long, device=dev)
        tokens = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
        finished = torch.zeros(b, k, dtype=torch.bool, device=dev)
        lengths = torch.zeros(b, k, device=dev)
        done_row = torch.full((v,), float("-inf"), device=dev)
        done_row[cap.pad_index] = 0.0
        for t in range(self.max_steps):
            logp, state = step(t, words, state)
            logp = torch.where(finished.unsqueeze(2), done_row, logp.view(b, k, v))
            top, idx = (scores.unsqueeze(2) + logp).view(b, k * v).topk(k, dim=1)
            beam, word = idx // v, idx % v
            tokens = torch.cat(
                [tokens.gather(1, beam.unsqueeze(2).expand(-1, -1, t)), word.unsqueeze(2)], 2
            )
            was_finished = finished.gather(1, beam)
            lengths = lengths.gather(1, beam) + (~was_finished).float()
            finished = was_finished | (word == cap.eos_index)
            scores = top
            layers, _, hidden = state.shape
            index = beam.view(1, b, k, 1).expand(layers, b, k, hidden)
            state = state.view(layers, b, k, hidden).gather(2, index).reshape(layers, b * k, hidden)
            words = word.view(-1)
            if bool(finished.all()):
                break
        ranked = scores / lengths.clamp(min=1.0) ** self.params.length_penalty
        best = ranked.argmax(dim=1)
        return tokens[torch.arange(b, device=dev), best]

    # -- evaluation ------------------------------------------------------------------------

    def predict(self, outputs: dict) -> dict[str, list]:
        """Decoded captions as text (``{"caption": [str]}``)."""
        if "tokens" not in outputs:
            raise ValueError("caption head outputs have no decoded tokens; call it with batch=None")
        cap = self.targets.captions
        return {"caption": [cap.decode(row) for row in outputs["tokens"].cpu().tolist()]}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The true captions as text.

        Complete (``batch["caption_text"]``, when the dataset provides it and
        ``full_references`` is on), else decoded from the training tokens, which are cut to
        the dataset's caption length.
        """
        if self.params.full_references and batch.get("caption_text") is not None:
            return {"caption": [str(t) for t in batch["caption_text"]]}
        cap = self.targets.captions
        rows = torch.as_tensor(batch["caption"]).cpu().tolist()
        return {"caption": [cap.decode(row) for row in rows]}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """BLEU-1..4, METEOR, ROUGE-L and CIDEr (those in ``params.metrics``).

        By default in the COCO caption convention that papers report (PTB tokenizer on
        references and generated captions, complete references). Any other setting adds the
        suffix ``_raw`` to every metric name (``cider_raw``), so the two are never confused;
        so does a missing Java runtime when the captions need the tokenizer (with a warning).
        """
        refs = {i: [r] for i, r in enumerate(references["caption"])}
        hyps = dict(enumerate(predictions["caption"]))
        tokenize = self.params.tokenize
        coco = tokenize and self.params.full_references
        if (
            tokenize
            and not M.java_available()
            and M.ptb_needs_java([r for rs in refs.values() for r in rs] + list(hyps.values()))
        ):
            warnings.warn(
                "caption metrics: the PTB tokenizer of the COCO caption evaluation needs Java, "
                "which is not installed; captions are split on spaces instead and the metrics "
                "are reported as <metric>_raw (not comparable with published numbers)",
                M.CaptionMetricWarning,
                stacklevel=2,
            )
            tokenize = coco = False
        scores = M.caption_scores(refs, hyps, self.params.metrics, tokenize=tokenize)
        return scores if coco else {f"{k}_raw": v for k, v in scores.items()}
