"""C3D up to pool5 (Tran et al., ICCV 2015), the backbone of C3D-AVG."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from aqa_builtin.layers import check_layer_names, conv3d, scale_channels
from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import Backbone

C3D_LAYERS: tuple[str, ...] = (
    "conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b",
)
_WIDTHS = {
    "conv1": 64, "conv2": 128, "conv3a": 256, "conv3b": 256,
    "conv4a": 512, "conv4b": 512, "conv5a": 512, "conv5b": 512,
}


class C3DParams(BaseModel):
    """Parameters of :class:`C3DBackbone`."""

    model_config = ConfigDict(extra="forbid")

    width: float = Field(
        1.0,
        gt=0,
        le=4,
        description="Channel width multiplier; 1 is the original C3D (8192-d pool5 features "
        "for 16x112x112 clips). Small values (e.g. 0.0625) give tiny CPU models; pretrained "
        "weights need 1.",
    )
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction: the Sports-1M c3d.pickle "
        "(fc6-fc8 are ignored), an official MTL-AQA model_CNN checkpoint or a safetensors file "
        "with keys conv1.weight ... conv5b.bias.",
        json_schema_extra=PATH_PARAM,
    )
    frozen: list[str] = Field(
        default_factory=list,
        description="Layers that are not trained: any of conv1, conv2, conv3a, conv3b, conv4a, "
        "conv4b, conv5a, conv5b, or 'all'.",
    )

    @field_validator("frozen")
    @classmethod
    def _known_layers(cls, v: list[str]) -> list[str]:
        return check_layer_names(v, C3D_LAYERS)


class C3DBackbone(Backbone):
    """C3D up to pool5: an 8192-d feature per 16x112x112 clip (Sports-1M key layout).

    Eight 3x3x3 convolutions with ReLU and five max pools; pool5 pads H and W by one as in the
    released C3D, so a 16x112x112 clip yields 512x1x4x4 = 8192 features (flattened). Module
    names follow the Sports-1M ``c3d.pickle`` (``conv1`` ... ``conv5b``), so those weights and
    the official MTL-AQA ``model_CNN`` checkpoints load unchanged. Without pretrained
    weights the convolutions start from Kaiming-normal initialisation (ReLU gain), which
    keeps activations from fading through the eight unnormalised layers.
    """

    name = "c3d"
    Params = C3DParams
    layers: ClassVar[tuple[str, ...]] = ("pool1", "pool2", "pool3", "pool4", "pool5")
    default_input_shape: ClassVar[tuple[int, ...]] = (3, 16, 112, 112)

    def __init__(self, params: C3DParams) -> None:
        super().__init__(params)
        c = {k: scale_channels(v, params.width) for k, v in _WIDTHS.items()}
        self.conv1 = conv3d(3, c["conv1"])
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = conv3d(c["conv1"], c["conv2"])
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv3a = conv3d(c["conv2"], c["conv3a"])
        self.conv3b = conv3d(c["conv3a"], c["conv3b"])
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv4a = conv3d(c["conv3b"], c["conv4a"])
        self.conv4b = conv3d(c["conv4a"], c["conv4b"])
        self.pool4 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv5a = conv3d(c["conv4b"], c["conv5a"])
        self.conv5b = conv3d(c["conv5a"], c["conv5b"])
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.relu = nn.ReLU(inplace=True)
        for layer in C3D_LAYERS:
            conv = getattr(self, layer)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for layer in params.frozen:
            getattr(self, layer).requires_grad_(False)

    def forward(self, clips: Tensor) -> Tensor:
        """Pool5 features of ``(M, 3, T, H, W)`` clips, flattened to ``(M, D)``."""
        relu = self.relu
        h = self.pool1(relu(self.conv1(clips)))
        h = self.pool2(relu(self.conv2(h)))
        h = self.pool3(relu(self.conv3b(relu(self.conv3a(h)))))
        h = self.pool4(relu(self.conv4b(relu(self.conv4a(h)))))
        h = self.pool5(relu(self.conv5b(relu(self.conv5a(h)))))
        return h.flatten(1)

    def load_pretrained(self, path: str | Path) -> None:
        """Load C3D weights (fc6-fc8 of a Sports-1M file are dropped).

        Raises:
            CheckpointError: If the file cannot be read safely or its keys/shapes do not fit.
        """
        from aqa_framework.weights import c3d_sports1m, load_into, load_state_dict

        state = c3d_sports1m(load_state_dict(path))
        load_into(self, state, source=f"{path} (backbone c3d)")
