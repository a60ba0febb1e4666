"""The MSCADC backbone: C3D with BatchNorm and dilated conv5 instead of pool4/pool5."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from aqa_builtin.layers import check_layer_names, conv3d, scale_channels
from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import Backbone

MSCADC_LAYERS: tuple[str, ...] = (
    "conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b",
)
_WIDTHS = {
    "conv1": 32, "conv2": 64, "conv3a": 128, "conv3b": 128,
    "conv4a": 256, "conv4b": 256, "conv5a": 256, "conv5b": 256,
}


class MSCADCParams(BaseModel):
    """Parameters of :class:`MSCADCBackbone`."""

    model_config = ConfigDict(extra="forbid")

    width: float = Field(
        1.0,
        gt=0,
        le=4,
        description="Channel width multiplier; 1 is the network of paper Table 3 "
        "(32-64-128-256 channels).",
    )
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on the output feature maps.")
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction, in the official layout "
        "(conv1, bn1, ..., conv5b, bn5b), e.g. an official MTL-AQA model_CNN checkpoint.",
        json_schema_extra=PATH_PARAM,
    )
    frozen: list[str] = Field(
        default_factory=list,
        description="Conv layers (with their BatchNorm, kept in eval mode) that are not "
        "trained: conv1 ... conv5b, or 'all'.",
    )

    @field_validator("frozen")
    @classmethod
    def _known_layers(cls, v: list[str]) -> list[str]:
        return check_layer_names(v, MSCADC_LAYERS)


def _bn_name(conv: str) -> str:
    return "bn" + conv[len("conv") :]


class MSCADCBackbone(Backbone):
    """BatchNorm C3D with dilated conv5 (MSCADC, paper Table 3); keeps (C, T, H, W) maps.

    ``C3(32) BN MP(1,2,2) C3(64) BN MP(2,2,2) {C3(128) BN}x2 MP(2,2,2) {C3(256) BN}x2
    {C3(d=2,256) BN}x2 Dropout(0.5)``, ReLU after each BN. As in the official code, conv5a
    pads by 2 (size kept) and conv5b by 1 (one voxel trimmed per side), so a 16x180x180 clip
    gives 256x2x20x20 maps. Module names follow the official ``C3D_dilated_body``.
    """

    name = "mscadc"
    Params = MSCADCParams
    layers: ClassVar[tuple[str, ...]] = ("pool1", "pool2", "pool3", "relu4b", "relu5b")
    default_input_shape: ClassVar[tuple[int, ...]] = (3, 16, 180, 180)

    def __init__(self, params: MSCADCParams) -> None:
        super().__init__(params)
        c = {k: scale_channels(v, params.width) for k, v in _WIDTHS.items()}
        prev = 3
        for layer in MSCADC_LAYERS:
            dilation = 2 if layer.startswith("conv5") else 1
            padding = {"conv5a": 2, "conv5b": 1}.get(layer, 1)
            setattr(self, layer, conv3d(prev, c[layer], padding=padding, dilation=dilation))
            setattr(self, _bn_name(layer), nn.BatchNorm3d(c[layer]))
            setattr(self, "relu" + layer[len("conv") :], nn.ReLU(inplace=True))
            prev = c[layer]
            if layer == "conv1":
                self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
            elif layer == "conv2":
                self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
            elif layer == "conv3b":
                self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout(params.dropout)
        self._frozen = list(params.frozen)
        for layer in self._frozen:
            getattr(self, layer).requires_grad_(False)
            getattr(self, _bn_name(layer)).requires_grad_(False)

    def train(self, mode: bool = True) -> MSCADCBackbone:
        """Set training mode; frozen layers keep their BatchNorm statistics fixed."""
        super().train(mode)
        for layer in self._frozen:
            getattr(self, _bn_name(layer)).eval()
        return self

    def _block(self, layer: str, h: Tensor) -> Tensor:
        suffix = layer[len("conv") :]
        conv, bn, relu = (getattr(self, p + suffix) for p in ("conv", "bn", "relu"))
        return relu(bn(conv(h)))

    def forward(self, clips: Tensor) -> Tensor:
        """Feature maps ``(M, C, T', H', W')`` of ``(M, 3, T, H, W)`` clips."""
        h = self.pool1(self._block("conv1", clips))
        h = self.pool2(self._block("conv2", h))
        h = self.pool3(self._block("conv3b", self._block("conv3a", h)))
        for layer in ("conv4a", "conv4b", "conv5a", "conv5b"):
            h = self._block(layer, h)
        return self.dropout(h)

    def load_pretrained(self, path: str | Path) -> None:
        """Load weights in the official ``C3D_dilated_body`` layout.

        Layers the backbone does not have (e.g. the classifier of a pretraining task) are
        ignored, as in the official code; every backbone layer must be in the file.

        Raises:
            CheckpointError: If the file cannot be read safely or its keys/shapes do not fit.
        """
        from aqa_framework.weights import load_into, load_state_dict

        load_into(
            self, load_state_dict(path), source=f"{path} (backbone mscadc)", ignore_foreign=True
        )
