"""Built-in aggregators: average, LSTM, identity and transformer.

Average is C3D-AVG, LSTM is C3D-LSTM, identity passes a single clip through, and the
transformer encoder pools long feature sequences.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.layers import flat_size
from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import SpecError
from aqa_framework.interfaces import Aggregator


class AverageParams(BaseModel):
    """Parameters of :class:`AverageAggregator`."""

    model_config = ConfigDict(extra="forbid")

    shared_fc: int | None = Field(
        None,
        ge=1,
        description="Width of a fully connected layer + ReLU applied to the averaged feature "
        "and therefore shared by every head that consumes video features (C3D-AVG: 4096, "
        "the fc-4096 layer the paper's score and classification heads share). None: no layer.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after the shared layer.")
    pretrained: str | None = Field(
        None,
        description="Local weight file for the shared layer, loaded after construction: an "
        "official MTL-AQA model_my_fc6 checkpoint or a file with keys fc.weight, fc.bias.",
        json_schema_extra=PATH_PARAM,
    )


class AverageAggregator(Aggregator):
    """Element-wise mean of the clip features, optionally then a shared fc + ReLU (C3D-AVG).

    The paper's C3D-AVG averages the pool5 features of the clips and passes the average
    through one fc-4096 + ReLU layer whose output feeds both the score and the classification
    heads. That shared layer lives here (``shared_fc: 4096``) so that heads stay independent
    of each other; the caption head consumes the clip sequence and does not use it.
    """

    name = "average"
    Params = AverageParams

    def __init__(self, params: AverageParams, in_shape: tuple[int, ...]) -> None:
        super().__init__(params, in_shape)
        self.fc: nn.Linear | None = None
        if params.shared_fc:
            self.fc = nn.Linear(flat_size(in_shape), params.shared_fc)
            self.relu = nn.ReLU(inplace=True)
            self.dropout = nn.Dropout(params.dropout)

    def forward(self, clip_features: Tensor) -> Tensor:
        """``(B, N, *F)`` -> ``(B, *F)``, or ``(B, shared_fc)`` with the shared layer."""
        h = clip_features.mean(dim=1)
        if self.fc is not None:
            h = self.dropout(self.relu(self.fc(h.flatten(1))))
        return h


class LSTMParams(BaseModel):
    """Parameters of :class:`LSTMAggregator`."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(256, ge=1, description="LSTM hidden size (C3D-LSTM: 256).")
    layers: int = Field(1, ge=1, description="Stacked LSTM layers.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout between stacked layers.")


class LSTMAggregator(Aggregator):
    """LSTM over the clip features; its last output is the video feature (C3D-LSTM).

    The C3D-LSTM baseline of Parmar & Morris (2017), compared in paper Table 7: clip features
    in temporal order through an LSTM, the output after the last clip summarises the video.
    """

    name = "lstm"
    Params = LSTMParams

    def __init__(self, params: LSTMParams, in_shape: tuple[int, ...]) -> None:
        super().__init__(params, in_shape)
        self.lstm = nn.LSTM(
            flat_size(in_shape),
            params.hidden,
            num_layers=params.layers,
            batch_first=True,
            dropout=params.dropout if params.layers > 1 else 0.0,
        )

    def forward(self, clip_features: Tensor) -> Tensor:
        """``(B, N, *F)`` -> ``(B, hidden)``."""
        out, _ = self.lstm(clip_features.flatten(2))
        return out[:, -1]


class IdentityAggregator(Aggregator):
    """Passes the features of a single-clip video through (MSCADC, one clip per video)."""

    name = "identity"

    def forward(self, clip_features: Tensor) -> Tensor:
        """``(B, 1, *F)`` -> ``(B, *F)``.

        Raises:
            SpecError: If videos come with more than one clip.
        """
        if clip_features.shape[1] != 1:
            raise SpecError(
                [
                    (
                        "model.aggregator",
                        f"'identity' takes one clip per video but got "
                        f"{clip_features.shape[1]}; use 'average' or 'lstm', or configure "
                        "the dataset for a single clip",
                    )
                ]
            )
        return clip_features[:, 0]


def sinusoidal_positions(length: int, dim: int, like: Tensor) -> Tensor:
    """``(length, dim)`` sinusoidal position encodings (Vaswani et al. 2017) like ``like``."""
    import math

    import torch

    pos = torch.arange(length, device=like.device, dtype=torch.float32)[:, None]
    idx = torch.arange(0, dim, 2, device=like.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * idx / dim)
    out = torch.zeros(length, dim, device=like.device, dtype=torch.float32)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out.to(like.dtype)


class TransformerParams(BaseModel):
    """Parameters of :class:`TransformerAggregator`."""

    model_config = ConfigDict(extra="forbid")

    dim: int | None = Field(
        256,
        ge=1,
        description="Width inside the transformer: clip features are first projected to it "
        "by a linear layer; null keeps the clip feature size (no projection).",
    )
    heads: int = Field(4, ge=1, description="Attention heads (must divide dim).")
    layers: int = Field(2, ge=1, description="Encoder layers.")
    ffn: int = Field(512, ge=1, description="Hidden width of each layer's feed-forward block.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the encoder layers.")
    positional: Literal["sinusoidal", "learned", "none"] = Field(
        "sinusoidal",
        description="Clip position encoding added before the encoder: 'sinusoidal' (any "
        "length), 'learned' (up to max_length clips) or 'none'.",
    )
    max_length: int = Field(
        1024, ge=1, description="Longest sequence a 'learned' position encoding covers."
    )
    pooling: Literal["mean", "cls"] = Field(
        "mean",
        description="'mean': average of the encoded clips (padding excluded); 'cls': the "
        "output at a learned token put before the clips.",
    )


class TransformerAggregator(Aggregator):
    """Transformer encoder over a clip sequence, pooled to one video feature.

    For long feature sequences (routines of a hundred clips): clip features are projected to
    ``dim``, given positions, encoded by self-attention layers and pooled by a padding-aware
    mean or a class token. Zero-padded clips of a training window (the dataset's
    ``video_mask``) are masked out of attention and pooling.
    """

    name = "transformer"
    Params = TransformerParams
    uses_mask: ClassVar[bool] = True

    def __init__(self, params: TransformerParams, in_shape: tuple[int, ...]) -> None:
        super().__init__(params, in_shape)
        import torch

        width = flat_size(in_shape)
        dim = params.dim or width
        if dim % params.heads:
            raise ValueError(
                f"dim {dim} is not divisible by heads {params.heads}; change dim or heads"
            )
        self.dim = dim
        self.proj = nn.Linear(width, dim) if params.dim else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            dim, params.heads, params.ffn, params.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, params.layers, enable_nested_tensor=False)
        self.position = (
            nn.Parameter(torch.zeros(params.max_length, dim))
            if params.positional == "learned"
            else None
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if params.pooling == "cls" else None

    def forward(self, clip_features: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, L, *F)`` -> ``(B, dim)``; ``mask`` ``(B, L)`` is ``True`` on real clips.

        Raises:
            ValueError: If a learned position encoding is shorter than the sequence.
        """
        import torch

        x = self.proj(clip_features.flatten(2))
        length = x.shape[1]
        if self.params.positional == "sinusoidal":
            x = x + sinusoidal_positions(length, self.dim, x)
        elif self.position is not None:
            if length > self.position.shape[0]:
                raise ValueError(
                    f"{length} clips, more than max_length {self.position.shape[0]} of the "
                    "learned position encoding; raise max_length or use 'sinusoidal'"
                )
            x = x + self.position[:length]
        keep = mask.bool() if mask is not None else None
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            if keep is not None:
                keep = torch.cat([keep.new_ones(keep.shape[0], 1), keep], dim=1)
        padded = keep is not None and not bool(keep.all())
        h = self.encoder(x, src_key_padding_mask=~keep if padded else None)
        if self.cls is not None:
            return h[:, 0]
        if keep is None:
            return h.mean(dim=1)
        weights = keep.to(h.dtype).unsqueeze(-1)
        return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
