"""Inception-v1 I3D (Carreira and Zisserman, CVPR 2017), the backbone of MUSDL, CoRe, TSA and TPT.

Two public weight layouts load into it: the one converted from DeepMind's TensorFlow
checkpoints (``conv3d_1a_7x7.conv3d.weight``, ``.batch3d.*``, ``mixed_4b.branch_1.0`` ...,
classifier ``conv3d_0c_1x1``) and the piergiaj-style one that MUSDL uses
(``Conv3d_1a_7x7.conv3d.weight``, ``.bn.*``, ``Mixed_4b.b1a`` ..., classifier ``logits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import CheckpointError
from aqa_framework.interfaces import Backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Triple = tuple[int, int, int]

# Inception modules: input channels and the six branch widths
# (1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | maxpool -> 1x1); outputs are b0 + b1b + b2b + b3.
_MIXED: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "mixed3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed5c": (832, (384, 192, 384, 48, 128, 128)),
}
_BRANCHES: tuple[str, ...] = ("b0", "b1a", "b1b", "b2a", "b2b", "b3")
FEATURE_DIM = 1024
"""Channels of the Mixed_5c map and of the pooled feature."""


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding of one dimension: ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the total padding is
    ``max(kernel - stride, 0)`` when ``stride`` divides ``size``, else
    ``max(kernel - size % stride, 0)``, and the odd pixel goes after.

    Args:
        size: Input length along the dimension.
        kernel: Kernel length.
        stride: Stride.
    """
    rem = size % stride
    total = max(kernel - (stride if rem == 0 else rem), 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride, strict=True))):
        pads.extend(tf_same_padding(int(size), k, s))
    return F.pad(x, pads) if any(pads) else x


class _Unit(nn.Module):
    """Convolution without bias, BatchNorm (eps set by the backbone) and ReLU, SAME padding."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), momentum: float = 0.1) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(_pad_same(x, self.kernel, self.stride))))


class _MaxPoolSame(nn.Module):
    """Max pooling with SAME padding by zeros (its inputs follow a ReLU, so zeros never win)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class _Mixed(nn.Module):
    """An Inception module: four branches concatenated along the channels."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int],
                 momentum: float = 0.1) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        m = momentum
        self.b0 = _Unit(cin, c0, momentum=m)
        self.b1a = _Unit(cin, c1a, momentum=m)
        self.b1b = _Unit(c1a, c1b, (3, 3, 3), momentum=m)
        self.b2a = _Unit(cin, c2a, momentum=m)
        self.b2b = _Unit(c2a, c2b, (3, 3, 3), momentum=m)
        self.pool = _MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3 = _Unit(cin, c3, momentum=m)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(self.pool(x))), 1
        )


class I3DParams(BaseModel):
    """Parameters of :class:`I3DBackbone`."""

    model_config = ConfigDict(extra="forbid")

    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction, in either public layout: "
        "converted from TensorFlow (conv3d_1a_7x7.conv3d.weight, .batch3d.*, mixed_4b.branch_1.0 "
        "...; e.g. model_rgb.pth) or piergiaj-style as MUSDL uses (Conv3d_1a_7x7.conv3d.weight, "
        ".bn.*, Mixed_4b.b1a ...; e.g. rgb_i3d_pretrained.pt). The classification layer "
        "(conv3d_0c_1x1 / logits) is dropped, whatever its number of classes.",
        json_schema_extra=PATH_PARAM,
    )
    features: Literal["pooled", "map"] = Field(
        "pooled",
        description="'pooled': the 2x7x7 average pool over the Mixed_5c map, averaged over its "
        "remaining positions: 1024 features per clip (MUSDL, CoRe); the pool shrinks to maps "
        "smaller than 2x7x7 (e.g. 2x4x4 for 112-px frames, 1x7x7 for 8 frames). 'map': the "
        "Mixed_5c map, 1024 x T/8 x H/32 x W/32 (TPT, TSA).",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the output features during training."
    )
    bn_momentum: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Momentum of every BatchNorm's running mean and variance (PyTorch's "
        "convention: new = (1 - momentum) * old + momentum * batch statistic); it only matters "
        "while BatchNorm trains. 0.1 is PyTorch's default, and that of CoRe's I3D copy; MUSDL's "
        "copy (piergiaj's pytorch-i3d) uses 0.01; DeepMind's TensorFlow I3D used a decay of "
        "0.999, i.e. momentum 0.001.",
    )
    bn_eps: float = Field(
        1e-3,
        gt=0,
        description="Epsilon of every BatchNorm. 1e-3 is TensorFlow's, which the converted "
        "DeepMind weights were trained with, and that of MUSDL's copy (piergiaj's); CoRe's, "
        "TPT's and FineDiving's copies (hassony2's kinetics_i3d_pytorch) keep PyTorch's 1e-5.",
    )


@dataclass(frozen=True)
class I3DLayout:
    """How a public I3D weight file names the parameters of this backbone.

    Attributes:
        name: Short name used in messages.
        units: This backbone's unit or module name -> the file's (``conv1a`` ->
            ``conv3d_1a_7x7``).
        branches: Branch name inside an Inception module -> the file's (``b1a`` ->
            ``branch_1.0``).
        conv: The file's name of a unit's convolution.
        bn: The file's name of a unit's BatchNorm.
        classifier: Prefix of the file's classification layer, dropped on loading ("" for none).
    """

    name: str
    units: dict[str, str]
    branches: dict[str, str]
    conv: str
    bn: str
    classifier: str

    @property
    def marker(self) -> str:
        """The key of the first convolution's weight, which identifies the layout."""
        return f"{self.units['conv1a']}.{self.conv}.weight"

    def file_key(self, key: str) -> str:
        """The file's name for one key of this backbone's state dict."""
        parts = key.split(".")
        parts[0] = self.units[parts[0]]
        if parts[1] in self.branches:
            parts[1] = self.branches[parts[1]]
        parts[-2] = {"conv": self.conv, "bn": self.bn}[parts[-2]]
        return ".".join(parts)


def _mixed_names(style: Literal["h2", "piergiaj"]) -> dict[str, str]:
    def name(m: str) -> str:
        return f"mixed_{m[5:]}" if style == "h2" else f"Mixed_{m[5:]}"

    return {m: name(m) for m in _MIXED}


H2_LAYOUT = I3DLayout(
    name="converted-from-TensorFlow (conv3d_1a_7x7 / batch3d / branch_N)",
    units={"conv1a": "conv3d_1a_7x7", "conv2b": "conv3d_2b_1x1", "conv2c": "conv3d_2c_3x3",
           **_mixed_names("h2")},
    branches={"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
              "b2b": "branch_2.1", "b3": "branch_3.1"},
    conv="conv3d",
    bn="batch3d",
    classifier="conv3d_0c_1x1",
)
PIERGIAJ_LAYOUT = I3DLayout(
    name="piergiaj-style (Conv3d_1a_7x7 / bn / b1a)",
    units={"conv1a": "Conv3d_1a_7x7", "conv2b": "Conv3d_2b_1x1", "conv2c": "Conv3d_2c_3x3",
           **_mixed_names("piergiaj")},
    branches={"b0": "b0", "b1a": "b1a", "b1b": "b1b", "b2a": "b2a", "b2b": "b2b", "b3": "b3b"},
    conv="conv3d",
    bn="bn",
    classifier="logits",
)
OWN_LAYOUT = I3DLayout(
    name="this backbone's own (conv1a / bn / mixed5c.b3)",
    units={u: u for u in ("conv1a", "conv2b", "conv2c", *_MIXED)},
    branches={b: b for b in _BRANCHES},
    conv="conv",
    bn="bn",
    classifier="",
)
LAYOUTS: tuple[I3DLayout, ...] = (H2_LAYOUT, PIERGIAJ_LAYOUT, OWN_LAYOUT)
"""The key layouts :meth:`I3DBackbone.load_pretrained` reads, in the order they are tried."""

_OPTIONAL_SUFFIX = ".num_batches_tracked"
_SHOWN = 5


def _few(names: list[str]) -> str:
    more = f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


class I3DBackbone(Backbone):
    """Inception-v1 I3D: 1024 features per clip, or the Mixed_5c map (T/8 x H/32 x W/32).

    Conv 7x7x7/2, max pool 1x3x3/1x2x2, conv 1x1x1, conv 3x3x3, max pool, Mixed_3b-3c, max pool
    3x3x3/2, Mixed_4b-4f, max pool 2x2x2/2, Mixed_5b-5c; every convolution without bias and
    followed by BatchNorm (eps ``bn_eps``: TensorFlow's 1e-3 by default) and ReLU. Padding is
    TensorFlow's ``SAME``, computed from each input's size: asymmetric where the kernel and
    stride need it (the extra pixel after), as in the ports of DeepMind's weights, so a
    16x224x224 clip gives a 1024x2x7x7 Mixed_5c map. Weights load from either public layout
    (see ``pretrained``). Frames are expected normalised with the ImageNet mean and std, as
    the AQA methods that use these weights do.
    """

    name = "i3d"
    Params = I3DParams
    layers: ClassVar[tuple[str, ...]] = (
        "conv2c", "mixed3c", "mixed4b", "mixed4f", "mixed5b", "mixed5c",
    )
    default_input_shape: ClassVar[tuple[int, ...]] = (3, 16, 224, 224)

    def __init__(self, params: I3DParams) -> None:
        super().__init__(params)
        m = params.bn_momentum
        self.conv1a = _Unit(3, 64, (7, 7, 7), (2, 2, 2), momentum=m)
        self.pool2a = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.conv2b = _Unit(64, 64, momentum=m)
        self.conv2c = _Unit(64, 192, (3, 3, 3), momentum=m)
        self.pool3a = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.mixed3b = _Mixed(*_MIXED["mixed3b"], momentum=m)
        self.mixed3c = _Mixed(*_MIXED["mixed3c"], momentum=m)
        self.pool4a = _MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.mixed4b = _Mixed(*_MIXED["mixed4b"], momentum=m)
        self.mixed4c = _Mixed(*_MIXED["mixed4c"], momentum=m)
        self.mixed4d = _Mixed(*_MIXED["mixed4d"], momentum=m)
        self.mixed4e = _Mixed(*_MIXED["mixed4e"], momentum=m)
        self.mixed4f = _Mixed(*_MIXED["mixed4f"], momentum=m)
        self.pool5a = _MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.mixed5b = _Mixed(*_MIXED["mixed5b"], momentum=m)
        self.mixed5c = _Mixed(*_MIXED["mixed5c"], momentum=m)
        self.dropout = nn.Dropout(params.dropout)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.eps = params.bn_eps

    @classmethod
    def input_normalization(
        cls, params: BaseModel
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """ImageNet mean and std, as MUSDL, CoRe, TSA and TPT feed these weights."""
        return IMAGENET_MEAN, IMAGENET_STD

    def mixed_5c(self, clips: Tensor) -> Tensor:
        """The Mixed_5c map of ``(M, 3, T, H, W)`` clips: ``(M, 1024, T', H', W')``."""
        h = self.pool2a(self.conv1a(clips))
        h = self.pool3a(self.conv2c(self.conv2b(h)))
        h = self.pool4a(self.mixed3c(self.mixed3b(h)))
        for unit in (self.mixed4b, self.mixed4c, self.mixed4d, self.mixed4e, self.mixed4f):
            h = unit(h)
        return self.mixed5c(self.mixed5b(self.pool5a(h)))

    def forward(self, clips: Tensor) -> Tensor:
        """``(M, 3, T, H, W)`` clips -> ``(M, 1024)`` pooled features or the Mixed_5c maps."""
        h = self.mixed_5c(clips)
        if self.params.features == "pooled":
            t, hh, ww = h.shape[2:]
            h = F.avg_pool3d(h, (min(2, t), min(7, hh), min(7, ww)), stride=1).mean(dim=(2, 3, 4))
        return self.dropout(h)

    def load_pretrained(self, path: str | Path) -> None:
        """Load I3D weights in either public layout, or this backbone's own; no classifier.

        The classification layer of a public file is dropped, whatever its class count. The
        layout is recognised by the key of the first convolution (``conv3d_1a_7x7`` or
        ``Conv3d_1a_7x7``), after any common prefix; ``num_batches_tracked`` entries are
        optional.

        Raises:
            CheckpointError: Naming the file and the layout it looks like, with a few missing or
                unexpected keys and shape mismatches, when the file does not fit; or naming
                the non-finite tensors it holds.
        """
        from aqa_framework.weights import load_state_dict

        state = load_state_dict(path)
        layout, prefix = _detect_layout(state)
        own = self.state_dict()
        to_own = {layout.file_key(k): k for k in own}
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if layout.classifier:
            state = {k: v for k, v in state.items() if not k.startswith(layout.classifier + ".")}
        problems = _fit_problems(state, own, to_own)
        if problems:
            looks = (
                "looks like the"
                if layout.marker in state
                else "matches no I3D layout; compared with the"
            )
            raise CheckpointError(
                f"{path} (backbone i3d): the file {looks} {layout.name} layout but does not "
                f"fit: {'; '.join(problems)}"
            )
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{path} (backbone i3d): non-finite values in {_few(bad)}")
        self.load_state_dict({to_own[k]: v for k, v in state.items()}, strict=False)


def _detect_layout(state: dict[str, Tensor]) -> tuple[I3DLayout, str]:
    """The layout of a state dict and the prefix its keys carry (``""`` for none).

    A file whose keys hold no layout's first convolution is compared with the layout it shares
    most key names with (the converted one when it shares none).
    """
    for layout in LAYOUTS:
        for key in state:
            if key == layout.marker or key.endswith("." + layout.marker):
                return layout, key[: len(key) - len(layout.marker)]
    names = {k.split(".", 1)[0] for k in state}
    return max(LAYOUTS, key=lambda lay: len(names & set(lay.units.values()))), ""


def _fit_problems(
    state: dict[str, Tensor], own: dict[str, Tensor], to_own: dict[str, str]
) -> list[str]:
    missing = [k for k in to_own if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in to_own]
    mismatched = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[to_own[k]].shape)})"
        for k, v in state.items()
        if k in to_own and tuple(v.shape) != tuple(own[to_own[k]].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatches: {_few(mismatched)}")
    if missing:
        problems.append(f"{len(missing)} missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
    return problems
