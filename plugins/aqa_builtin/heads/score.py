"""Score regression head (the AQA task)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.heads.context import ConvHeadTrunk
from aqa_builtin.layers import Form, flat_size, resolve_form
from aqa_framework import metrics as M
from aqa_framework.component import PATH_PARAM
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import ScoreTarget, Targets


def _ordered_range(value: Any) -> Any:
    if isinstance(value, tuple) and not value[1] > value[0]:
        raise ValueError(f"a fixed range needs high > low (got {list(value)})")
    return value


RelL2Range = Annotated[
    Literal["evaluated", "dataset"] | tuple[float, float], AfterValidator(_ordered_range)
]
"""Type of a head's ``rel_l2_range`` param: ``evaluated``, ``dataset`` or a fixed range."""

REL_L2_RANGE_HELP = (
    "Score range that relative L2 divides by: 'evaluated' (the lowest to the highest true "
    "score of the evaluated split, as CoRe, MUSDL and TPT compute it), 'dataset' (the range "
    "the dataset declares) or a fixed [low, high]. The range used is reported as rel_l2_low "
    "and rel_l2_high."
)
"""Description of a ``rel_l2_range`` param (shared by the heads that predict scores)."""

SCORE_METRIC_DIRECTIONS: dict[str, Literal["max", "min"]] = {
    "spearman": "max",
    "pearson": "max",
    "rel_l2": "min",
    "mse": "min",
}
"""Directions of the metrics :func:`score_metrics` reports."""


def fixed_score_range(
    choice: Literal["evaluated", "dataset"] | tuple[float, float], target: ScoreTarget
) -> tuple[float, float] | None:
    """The fixed relative-L2 range a ``rel_l2_range`` param asks for.

    Args:
        choice: The param's value.
        target: The declared score target (its range for ``dataset``).

    Returns:
        ``(low, high)``, or ``None`` for the evaluated scores' own range.
    """
    if choice == "evaluated":
        return None
    if choice == "dataset":
        return (target.low, target.high)
    return (float(choice[0]), float(choice[1]))


def score_metrics(
    pred: list[float], true: list[float], fixed: tuple[float, float] | None = None
) -> dict[str, float]:
    """Spearman, Pearson, relative L2 (with the range it used) and MSE of one score.

    Args:
        pred: Predicted scores in points.
        true: True scores in points.
        fixed: Range relative L2 divides by; ``None`` for the range of ``true``.

    Returns:
        ``spearman``, ``pearson``, ``rel_l2`` (``nan`` when the range is empty),
        ``rel_l2_low``, ``rel_l2_high`` and ``mse``.
    """
    low, high = M.score_range(true, fixed)
    return {
        "spearman": M.spearman(pred, true),
        "pearson": M.pearson(pred, true),
        "rel_l2": M.relative_l2(pred, true, low, high) if high > low else float("nan"),
        "rel_l2_low": low,
        "rel_l2_high": high,
        "mse": M.mean_squared_error(pred, true),
    }


class ScoreParams(BaseModel):
    """Parameters of :class:`ScoreHead`."""

    model_config = ConfigDict(extra="forbid")

    scores: list[str] | None = Field(
        None,
        min_length=1,
        description="Score targets to regress (one output each); default: every score the "
        "dataset declares.",
    )
    form: Form = Field(
        "auto",
        description="'fc' (linear layer on feature vectors, C3D-AVG), 'conv' (MSCADC head: "
        "C1, context net, MP, C3+BN, C3, global average pool) or 'auto' (conv for feature "
        "maps, fc for vectors).",
    )
    hidden: int | None = Field(
        None,
        ge=1,
        description="fc form: hidden width of an fc + ReLU layer before the output (e.g. "
        "4096 when the aggregator has no shared layer). None: a single linear layer.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="fc form: dropout after the hidden layer.")
    bottleneck: int = Field(12, ge=1, description="conv form: channels inside the head.")
    target_scale: float = Field(
        1.0,
        gt=0,
        description="Train on score / target_scale (the official MTL-AQA code uses 17); "
        "predictions are multiplied back, so metrics are in points.",
    )
    loss: Literal["mse+l1", "mse", "l1"] = Field(
        "mse+l1", description="Regression loss; 'mse+l1' is paper eq. 1."
    )
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction: an official MTL-AQA "
        "model_score_regressor checkpoint (C3D-AVG or MSCADC) or this head's own state dict.",
        json_schema_extra=PATH_PARAM,
    )
    rel_l2_range: RelL2Range = Field("evaluated", description=REL_L2_RANGE_HELP)


class ScoreHead(TaskHead):
    """Regresses one or more quality scores; loss MSE + L1 (paper eq. 1).

    Predictions are in the dataset's points; metrics per split are Spearman's and Pearson's
    correlation, relative L2 and MSE. Relative L2 divides by the range of the evaluated true
    scores by default (the literature's convention; ``rel_l2_range`` chooses the dataset's
    declared range or a fixed one), and the range used is reported as ``rel_l2_low`` and
    ``rel_l2_high``. With several scores, metrics carry the score name as prefix and
    ``spearman`` / ``pearson`` are their Fisher-z means.
    """

    name = "score"
    consumes = "video"
    target_kind = "scores"
    metric_directions = {"spearman": "max", "pearson": "max", "rel_l2": "min"}
    Params = ScoreParams

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Scores must be provided, and every name in ``scores`` declared."""
        problem = super().check_targets(params, targets)
        if problem or not params.scores:
            return problem
        unknown = [s for s in params.scores if s not in targets.scores]
        if unknown:
            return (
                f"head 'score' needs score targets {unknown}, but the dataset provides "
                f"{targets.describe()}"
            )
        return None

    def __init__(self, params: ScoreParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        self.names = list(params.scores or targets.scores)
        n = len(self.names)
        self.form = resolve_form(params.form, in_shape)
        if self.form == "conv":
            self.trunk = ConvHeadTrunk(in_shape[0], params.bottleneck)
            self.out = nn.Conv3d(params.bottleneck, n, kernel_size=3, padding=1)
        elif params.hidden:
            from timm.layers import Mlp

            self.mlp = Mlp(
                flat_size(in_shape), params.hidden, n, act_layer=nn.ReLU, drop=(params.dropout, 0.0)
            )
        else:
            self.out = nn.Linear(flat_size(in_shape), n)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """Scores ``(B, S)`` in training units (points / ``target_scale``)."""
        if self.form == "conv":
            return {"scores": self.out(self.trunk(features)).mean(dim=(2, 3, 4))}
        x = features.flatten(1)
        return {"scores": self.mlp(x) if self.params.hidden else self.out(x)}

    def _target(self, batch: Mapping[str, Any], like: Tensor) -> Tensor:
        cols = [torch.as_tensor(batch["scores"][n]) for n in self.names]
        return torch.stack(cols, dim=1).to(device=like.device, dtype=torch.float32)

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """MSE + L1 between predicted and true (scaled) scores, averaged over samples."""
        pred = outputs["scores"].float()
        true = self._target(batch, pred) / self.params.target_scale
        kind = self.params.loss
        loss = pred.new_zeros(())
        if "mse" in kind:
            loss = loss + F.mse_loss(pred, true)
        if "l1" in kind:
            loss = loss + F.l1_loss(pred, true)
        return loss

    def predict(self, outputs: dict) -> dict[str, list]:
        """Scores in points, one column per score name."""
        pts = (outputs["scores"].detach().float() * self.params.target_scale).cpu()
        return {n: pts[:, i].tolist() for i, n in enumerate(self.names)}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """True scores in points."""
        return {n: torch.as_tensor(batch["scores"][n]).float().tolist() for n in self.names}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Spearman, Pearson, relative L2 (with the range it used) and MSE over a split."""
        out: dict[str, float] = {}
        per = {
            n: score_metrics(predictions[n], references[n], self._fixed_range(n))
            for n in self.names
        }
        if len(self.names) == 1:
            return per[self.names[0]]
        for n, vals in per.items():
            out.update({f"{n}_{k}": v for k, v in vals.items()})
        out["spearman"] = M.fisher_z_mean([v["spearman"] for v in per.values()])
        out["pearson"] = M.fisher_z_mean([v["pearson"] for v in per.values()])
        out["rel_l2"] = sum(v["rel_l2"] for v in per.values()) / len(per)
        return out

    def load_pretrained(self, path: str | Path) -> None:
        """Load an official ``model_score_regressor`` checkpoint or this head's own weights.

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit.
        """
        from aqa_framework.weights import load_into, load_state_dict, official_to_head_keys

        state = official_to_head_keys("score", load_state_dict(path))
        load_into(self, state, source=f"{path} (head {self.name})")

    def _fixed_range(self, name: str) -> tuple[float, float] | None:
        """The fixed relative-L2 range of a score, or ``None`` for the evaluated scores'."""
        return fixed_score_range(self.params.rel_l2_range, self.targets.scores[name])
