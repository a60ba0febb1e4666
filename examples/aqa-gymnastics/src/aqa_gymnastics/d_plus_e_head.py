"""A task head that scores a vault the way judges do: D-score + E-score - penalty."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_framework.interfaces import TaskHead
from aqa_framework.metrics import spearman
from aqa_framework.targets import Targets
from aqa_gymnastics.scoring import mean_abs_error


class DPlusEParams(BaseModel):
    """Parameters of :class:`DPlusEHead`."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(128, ge=1, description="Width of the hidden layer.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before the output layer.")
    final_weight: float = Field(
        1.0, ge=0.0, description="Weight of the loss on the final score next to the D/E losses."
    )


class DPlusEHead(TaskHead):
    """Predicts a vault's D-score, E-score and penalty; reports the final score D + E - penalty.

    The features are layer-normalised, each part is bounded to the dataset's range (a sigmoid
    over ``[low, high]``), the loss is MSE + L1 on each part and on the final score, all in
    units of their ranges, and the metrics rank the final score (``spearman``) as well as
    each part.
    """

    name: ClassVar[str] = "gymnastics.d-plus-e"
    consumes: ClassVar[str] = "video"
    target_kind: ClassVar[str] = "scores"
    Params = DPlusEParams
    PARTS: ClassVar[tuple[str, ...]] = ("d_score", "e_score", "penalty")

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Needs ``d_score`` and ``e_score`` scores (``penalty`` is optional)."""
        missing = [s for s in ("d_score", "e_score") if s not in targets.scores]
        if missing:
            return (
                f"head '{cls.name}' needs the scores d_score and e_score, but the dataset "
                f"provides {targets.describe()}"
            )
        return None

    def __init__(self, params: BaseModel, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        self.parts = [p for p in self.PARTS if p in targets.scores]
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.LayerNorm(math.prod(in_shape)),  # backbone features can be large; sigmoids saturate
            nn.Linear(math.prod(in_shape), params.hidden),
            nn.ReLU(),
            nn.Dropout(params.dropout),
            nn.Linear(params.hidden, len(self.parts)),
        )
        low = [targets.scores[p].low for p in self.parts]
        high = [targets.scores[p].high for p in self.parts]
        self.register_buffer("low", torch.tensor(low), persistent=False)
        self.register_buffer("span", torch.tensor(high) - torch.tensor(low), persistent=False)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """Score each part; ``final_score`` is derived, never predicted on its own."""
        raw = self.mlp(features).float()
        parts = self.low + self.span * torch.sigmoid(raw)
        out = {p: parts[:, i] for i, p in enumerate(self.parts)}
        penalty = out.get("penalty", torch.zeros_like(out["d_score"]))
        out["final_score"] = out["d_score"] + out["e_score"] - penalty
        return out

    def _truth(self, batch: Mapping[str, Any], device: torch.device) -> dict[str, Tensor]:
        scores = batch["scores"]
        truth = {p: torch.as_tensor(scores[p], device=device).float() for p in self.parts}
        penalty = truth.get("penalty", torch.zeros_like(truth["d_score"]))
        truth["final_score"] = truth["d_score"] + truth["e_score"] - penalty
        return truth

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """MSE + L1 per part and on the final score, each scaled by its range."""
        truth = self._truth(batch, outputs["d_score"].device)
        spans = dict(zip(self.parts, self.span, strict=True))
        spans["final_score"] = self.span.sum()
        total = outputs["d_score"].new_zeros(())
        for key, span in spans.items():
            pred, true = outputs[key] / span, truth[key] / span
            weight = self.params.final_weight if key == "final_score" else 1.0
            total = total + weight * (F.mse_loss(pred, true) + F.l1_loss(pred, true))
        return total

    def predict(self, outputs: dict) -> dict[str, list]:
        """Columns ``d_score``, ``e_score``, (``penalty``,) ``final_score`` in points."""
        return {k: [float(x) for x in v.detach().cpu()] for k, v in outputs.items()}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The judged parts and the final score they add up to."""
        truth = self._truth(batch, torch.device("cpu"))
        return {k: [float(x) for x in v] for k, v in truth.items()}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """``spearman`` and ``mae`` of the final score, and ``d_*`` / ``e_*`` of the parts."""
        out = {
            "spearman": spearman(predictions["final_score"], references["final_score"]),
            "mae": mean_abs_error(predictions["final_score"], references["final_score"]),
        }
        for prefix, key in (("d", "d_score"), ("e", "e_score")):
            out[f"{prefix}_spearman"] = spearman(predictions[key], references[key])
            out[f"{prefix}_mae"] = mean_abs_error(predictions[key], references[key])
        return out
