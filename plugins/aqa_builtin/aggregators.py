"""Built-in aggregators: average (C3D-AVG), LSTM (C3D-LSTM) and identity (single clip)."""

from __future__ import annotations

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
