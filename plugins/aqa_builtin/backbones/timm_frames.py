"""Any timm 2D image model applied frame by frame, pooled over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import Backbone


class TimmFramesParams(BaseModel):
    """Parameters of :class:`TimmFramesBackbone`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("resnet18", description="timm model name (see timm.list_models()).")
    pretrained: str | None = Field(
        None,
        description="Local weight file for the timm model (safetensors or a torch.save file "
        "of tensors); its classifier is ignored. Nothing is downloaded.",
        json_schema_extra=PATH_PARAM,
    )
    temporal_pool: Literal["mean", "max"] = Field(
        "mean", description="How per-frame features are pooled over the clip's frames."
    )
    frozen: bool = Field(False, description="Do not train the image model (BatchNorm in eval).")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for timm.create_model, e.g. {drop_path_rate: 0.1}.",
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        import timm

        if not timm.is_model(v):
            close = timm.list_models(f"*{v}*")[:5]
            hint = f" Close: {', '.join(close)}." if close else ""
            raise ValueError(f"timm has no model {v!r}.{hint}")
        return v


class TimmFramesBackbone(Backbone):
    """A timm image model run on every frame; features pooled over time.

    The ``M`` clips of ``T`` frames go through the image model as one batch of ``M*T``
    frames (classifier removed, timm's global pooling kept), then the ``T`` frame features
    of each clip are averaged (or max-pooled). Weights come only from a local file.
    """

    name = "timm"
    Params = TimmFramesParams

    def __init__(self, params: TimmFramesParams) -> None:
        super().__init__(params)
        import timm

        self.model = timm.create_model(
            params.model, pretrained=False, num_classes=0, **params.model_kwargs
        )
        size = tuple(self.model.pretrained_cfg.get("input_size", (3, 224, 224)))
        self.default_input_shape = (size[0], 16, *size[1:])
        if params.frozen:
            self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> TimmFramesBackbone:
        """Set training mode; a frozen image model stays in eval mode."""
        super().train(mode)
        if self.params.frozen:
            self.model.eval()
        return self

    def forward(self, clips: Tensor) -> Tensor:
        """``(M, C, T, H, W)`` clips -> ``(M, D)`` time-pooled frame features."""
        m, c, t, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(m * t, c, h, w)
        feats = self.model(frames).reshape(m, t, -1)
        if self.params.temporal_pool == "max":
            return feats.amax(dim=1)
        return feats.mean(dim=1)

    def load_pretrained(self, path: str | Path) -> None:
        """Load image-model weights from a local file; classifier weights are dropped.

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit the model.
        """
        from aqa_framework.weights import load_into, load_state_dict, strip_prefix

        state = load_state_dict(path)
        if state and all(k.startswith("model.") for k in state):
            state = strip_prefix(state, "model.")
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
        load_into(self.model, state, source=f"{path} (backbone timm {self.params.model})")
