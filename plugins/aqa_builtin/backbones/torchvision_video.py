"""torchvision's video classification models as backbones, classifier removed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import CheckpointError
from aqa_framework.interfaces import Backbone

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MVIT_MEAN = (0.45, 0.45, 0.45)
MVIT_STD = (0.225, 0.225, 0.225)

Arch = Literal[
    "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "swin3d_t", "swin3d_s", "swin3d_b", "mvit_v1_b",
    "mvit_v2_s",
]


@dataclass(frozen=True)
class ArchInfo:
    """What the backbone needs to know about one torchvision video model.

    Attributes:
        classifier: Attribute of the classification layer, replaced by ``nn.Identity``.
        features: Size of the feature vector left without it.
        input_shape: A typical clip ``(C, T, H, W)`` of its Kinetics-400 weights.
        mean: Per-channel mean its weights' transforms normalise with.
        std: Per-channel std of those transforms.
        fixed_input: Whether only ``input_shape`` is accepted (position embeddings).
        layers: Probe points whose activations are ``(M, C, T, H, W)`` maps.
    """

    classifier: str
    features: int
    input_shape: tuple[int, int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fixed_input: bool = False
    layers: tuple[str, ...] = ()


_RESNET_LAYERS = ("model.layer1", "model.layer2", "model.layer3", "model.layer4")
_RESNET = {"classifier": "fc", "features": 512, "input_shape": (3, 16, 112, 112),
           "mean": KINETICS_MEAN, "std": KINETICS_STD, "layers": _RESNET_LAYERS}
_SWIN = {"classifier": "head", "input_shape": (3, 16, 224, 224), "mean": IMAGENET_MEAN,
         "std": IMAGENET_STD}
_MVIT = {"classifier": "head", "features": 768, "input_shape": (3, 16, 224, 224),
         "mean": MVIT_MEAN, "std": MVIT_STD, "fixed_input": True}

ARCHS: dict[str, ArchInfo] = {
    "r3d_18": ArchInfo(**_RESNET),
    "mc3_18": ArchInfo(**_RESNET),
    "r2plus1d_18": ArchInfo(**_RESNET),
    "s3d": ArchInfo(
        "classifier", 1024, (3, 16, 224, 224), KINETICS_MEAN, KINETICS_STD,
        layers=("model.features.3", "model.features.6", "model.features.12",
                "model.features.15"),
    ),
    "swin3d_t": ArchInfo(features=768, **_SWIN),
    "swin3d_s": ArchInfo(features=768, **_SWIN),
    "swin3d_b": ArchInfo(features=1024, **_SWIN),
    "mvit_v1_b": ArchInfo(**_MVIT),
    "mvit_v2_s": ArchInfo(**_MVIT),
}
"""The torchvision video models offered (``torchvision.models.video``), by builder name."""

_S3D_MIN_MAP = (2, 7, 7)


class TorchvisionVideoParams(BaseModel):
    """Parameters of :class:`TorchvisionVideoBackbone`."""

    model_config = ConfigDict(extra="forbid")

    arch: Arch = Field(
        "r3d_18",
        description="torchvision video model: r3d_18, mc3_18, r2plus1d_18 (512 features, "
        "16x112x112 clips), s3d (1024; at least 14 frames of 224x224), swin3d_t, swin3d_s (768), "
        "swin3d_b (1024), mvit_v1_b, mvit_v2_s (768; exactly 16x224x224 clips).",
    )
    pretrained: str | None = Field(
        None,
        description="Local weight file of that arch: the state dict torchvision publishes "
        "(e.g. r3d_18-b3b3357e.pth; its Kinetics-400 classifier is dropped) or a safetensors "
        "copy. Nothing is downloaded.",
        json_schema_extra=PATH_PARAM,
    )
    frozen: bool = Field(
        False, description="Do not train the video model (its normalisation layers in eval mode)."
    )


class TorchvisionVideoBackbone(Backbone):
    """A torchvision video model (R3D, MC3, R(2+1)D, S3D, Video Swin, MViT) without classifier.

    The model is built with ``weights=None`` (nothing is downloaded) and its classification
    layer (``fc``, ``classifier`` or ``head``) is replaced by the identity, so a clip gives the
    pooled feature vector its classifier would see: 512 (ResNet-style), 1024 (S3D, averaged
    over its pool's positions; Swin3D-B) or 768. Weights come from a local torchvision state
    dict. Frames are expected normalised as the weights' own transforms do (Kinetics mean/std
    for the ResNets and S3D, ImageNet for Swin3D, 0.45/0.225 for MViT).
    """

    name = "torchvision-video"
    Params = TorchvisionVideoParams

    def __init__(self, params: TorchvisionVideoParams) -> None:
        super().__init__(params)
        from torchvision.models import get_model

        info = ARCHS[params.arch]
        self.info = info
        self.model = get_model(params.arch, weights=None)
        setattr(self.model, info.classifier, nn.Identity())
        self.default_input_shape = info.input_shape
        self.layers = info.layers
        if params.frozen:
            self.model.requires_grad_(False)

    @classmethod
    def input_normalization(
        cls, params: BaseModel
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The mean and std of the arch's torchvision weight transforms."""
        info = ARCHS[params.arch]  # type: ignore[attr-defined]
        return info.mean, info.std

    def train(self, mode: bool = True) -> TorchvisionVideoBackbone:
        """Set training mode; a frozen video model stays in eval mode."""
        super().train(mode)
        if self.params.frozen:
            self.model.eval()
        return self

    def forward(self, clips: Tensor) -> Tensor:
        """``(M, 3, T, H, W)`` clips -> ``(M, D)`` features.

        Raises:
            ValueError: For clips the arch cannot take (MViT: other than 16x224x224; S3D: a
                final map smaller than its 2x7x7 pool).
        """
        arch = self.params.arch
        if self.info.fixed_input and tuple(clips.shape[1:]) != self.info.input_shape:
            raise ValueError(
                f"{arch} takes exactly {_clip(self.info.input_shape)} clips (its position "
                f"embeddings are fixed), got {_clip(clips.shape[1:])}; set the dataset's "
                "clip_length to 16 and its crop to 224"
            )
        if arch != "s3d":
            return self.model(clips)
        maps = self.model.features(clips)
        if any(s < m for s, m in zip(maps.shape[2:], _S3D_MIN_MAP, strict=True)):
            raise ValueError(
                f"s3d needs clips of at least 14 frames of 224x224 pixels (its final 2x7x7 "
                f"average pool needs a map at least that large), got {_clip(clips.shape[1:])} "
                f"(map {'x'.join(map(str, maps.shape[2:]))})"
            )
        return self.model.avgpool(maps).mean(dim=(2, 3, 4))

    def load_pretrained(self, path: str | Path) -> None:
        """Load a torchvision state dict of this arch; classifier weights are dropped.

        Raises:
            CheckpointError: If the file cannot be read safely, holds non-finite values, or
                does not fit this arch (naming the arch it fits, when it fits another).
        """
        from aqa_framework.weights import load_into, load_state_dict

        state = load_state_dict(path)
        if state and all(k.startswith("model.") for k in state):
            state = {k[len("model."):]: v for k, v in state.items()}
        arch = self.params.arch
        state = _without_classifier(state, self.info.classifier)
        source = f"{path} (backbone torchvision-video {arch})"
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"{source}: non-finite values in {', '.join(bad[:5])}")
        try:
            load_into(self.model, state, source=source)
        except CheckpointError as exc:
            other = _fitting_arch(state, exclude=arch)
            if other is None:
                raise
            raise CheckpointError(
                f"{source}: the file holds {other} weights, not {arch}; set arch: {other} or "
                "point pretrained at a file of this arch"
            ) from exc


def _clip(shape: tuple[int, ...] | torch.Size) -> str:
    c, t, h, w = (int(s) for s in shape)
    return f"{t}x{h}x{w} ({c} channels)" if c != 3 else f"{t}x{h}x{w}"


def _without_classifier(state: dict[str, Tensor], classifier: str) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(classifier + ".")}


def _fitting_arch(state: dict[str, Tensor], exclude: str) -> str | None:
    """The other arch whose (classifier-less) state dict has exactly these keys and shapes."""
    from torchvision.models import get_model

    for arch, info in ARCHS.items():
        if arch == exclude:
            continue
        with torch.device("meta"):
            model = get_model(arch, weights=None)
        own = _without_classifier(model.state_dict(), info.classifier)
        theirs = _without_classifier(state, info.classifier)
        if set(own) == set(theirs) and all(own[k].shape == theirs[k].shape for k in own):
            return arch
    return None
