"""Factorized fine-grained classification head (detailed action recognition)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.heads.context import ConvHeadTrunk
from aqa_builtin.layers import Form, flat_size, resolve_form
from aqa_framework import metrics as M
from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import Targets


class ClassificationParams(BaseModel):
    """Parameters of :class:`ClassificationHead`."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] | None = Field(
        None,
        min_length=1,
        description="Class fields to predict (one sub-head each); default: every field the "
        "dataset declares.",
    )
    form: Form = Field(
        "auto",
        description="'fc' (linear sub-heads on feature vectors, C3D-AVG), 'conv' (MSCADC: a "
        "shared C1, context net, MP, C3+BN trunk, then a C3 + global average pool per field) "
        "or 'auto' (conv for feature maps, fc for vectors).",
    )
    hidden: int | None = Field(
        None,
        ge=1,
        description="fc form: width of an fc + ReLU layer shared by the sub-heads. None: the "
        "sub-heads read the features directly.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="fc form: dropout after the hidden layer.")
    bottleneck: int = Field(12, ge=1, description="conv form: channels inside the head.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction: an official MTL-AQA "
        "model_dive_classifier (or model_position_classifier) checkpoint, C3D-AVG or MSCADC, "
        "or this head's own state dict.",
        json_schema_extra=PATH_PARAM,
    )


class ClassificationHead(TaskHead):
    """One classifier per class field; loss is the sum of cross-entropies (paper eq. 2).

    For diving: position, armstand, rotation type, somersaults and twists (3/2/4/10/8
    classes), each a sub-head whose size comes from the dataset's declared fields. Metrics:
    ``<field>_acc`` per field and ``accuracy``, their mean (fractions in [0, 1]).
    """

    name = "classification"
    consumes = "video"
    target_kind = "classes"
    metric_directions = {"accuracy": "max", "acc": "max"}
    Params = ClassificationParams

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Classes must be provided, and every name in ``fields`` declared."""
        problem = super().check_targets(params, targets)
        if problem or not params.fields:
            return problem
        unknown = [f for f in params.fields if f not in targets.classes]
        if unknown:
            return (
                f"head 'classification' needs class fields {unknown}, but the dataset "
                f"provides {targets.describe()}"
            )
        return None

    def __init__(
        self, params: ClassificationParams, in_shape: tuple[int, ...], targets: Targets
    ) -> None:
        super().__init__(params, in_shape, targets)
        self.fields = list(params.fields or targets.classes)
        bad = [f for f in self.fields if "." in f or not f]
        if bad:
            raise ValueError(f"class field names cannot contain '.': {bad}")
        sizes = {f: targets.classes[f].num_classes for f in self.fields}
        self.form = resolve_form(params.form, in_shape)
        if self.form == "conv":
            self.trunk: nn.Module = ConvHeadTrunk(in_shape[0], params.bottleneck)
            self.classifiers = nn.ModuleDict(
                {f: nn.Conv3d(params.bottleneck, k, 3, padding=1) for f, k in sizes.items()}
            )
        else:
            width = flat_size(in_shape)
            self.trunk = nn.Flatten(1)
            if params.hidden:
                self.trunk = nn.Sequential(
                    nn.Flatten(1),
                    nn.Linear(width, params.hidden),
                    nn.ReLU(inplace=True),
                    nn.Dropout(params.dropout),
                )
                width = params.hidden
            self.classifiers = nn.ModuleDict({f: nn.Linear(width, k) for f, k in sizes.items()})

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """Logits per field: ``{"logits": {field: (B, classes)}}``."""
        h = self.trunk(features)
        if self.form == "conv":
            logits = {f: c(h).mean(dim=(2, 3, 4)) for f, c in self.classifiers.items()}
        else:
            logits = {f: c(h) for f, c in self.classifiers.items()}
        return {"logits": logits}

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Sum over fields of the mean cross-entropy."""
        total = None
        for f, logits in outputs["logits"].items():
            true = torch.as_tensor(batch["classes"][f]).to(logits.device, torch.long)
            ce = F.cross_entropy(
                logits.float(), true, label_smoothing=self.params.label_smoothing
            )
            total = ce if total is None else total + ce
        return total

    def predict(self, outputs: dict) -> dict[str, list]:
        """Predicted class index per field."""
        return {f: lg.detach().argmax(dim=1).cpu().tolist() for f, lg in outputs["logits"].items()}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """True class index per field."""
        return {f: torch.as_tensor(batch["classes"][f]).long().tolist() for f in self.fields}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Accuracy per field (``<field>_acc``) and their mean (``accuracy``)."""
        out = {f"{f}_acc": M.accuracy(predictions[f], references[f]) for f in self.fields}
        out["accuracy"] = sum(out.values()) / len(out)
        return out

    def load_pretrained(self, path: str | Path) -> None:
        """Load an official ``model_dive_classifier`` checkpoint or this head's own weights.

        The official sub-heads ``fc_<field>`` (``head_conv3_<field>`` for MSCADC) map to this
        head's fields; ``rot_type`` is read as ``rotation_type`` where the dataset calls it so.

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit.
        """
        from aqa_framework.weights import load_into, load_state_dict, official_to_head_keys

        state = official_to_head_keys("classification", load_state_dict(path), self.fields)
        load_into(self, state, source=f"{path} (head {self.name})")
