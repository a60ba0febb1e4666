"""Pairwise skill ranking head: a per-video skill score trained with a margin ranking loss.

For datasets of (better, worse) pairs (``epic-skills``, ``best``, ``synthetic-pairs``; see
:mod:`aqa_framework.data.pairs`): each sample is the pair's better video, with the worse one
as its partner. The head maps each video's features to one skill score ``s`` with the same
layers and is trained with ``MarginRankingLoss(margin)`` on ``(s(better), s(worse))``, target
+1 (RAAN, CVPR 2019: margin 1.0). Pairs of equal skill (``preference`` 0), where a file has
them, are pulled together by ``|s(a) - s(b)|`` beyond the margin instead.

Predictions, per pair: ``skill`` (the better video's score) and ``partner_skill`` (the worse
one's, whose key is in the ``exemplars`` column). Metrics: ``pairwise_accuracy``, the share
of pairs with ``skill > partner_skill`` (ties count as wrong), per task
(``pairwise_accuracy_<task>``) and averaged over tasks (``pairwise_accuracy_mean``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.layers import flat_size
from aqa_framework import metrics as M
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import TargetNeed, Targets

__all__ = ["RankingHead", "RankingParams"]


class RankingParams(BaseModel):
    """Parameters of :class:`RankingHead`."""

    model_config = ConfigDict(extra="forbid")

    preference: str | None = Field(
        None,
        description="Open target of kind 'pair_order' telling whether the sample's video is "
        "the better one of its pair; default: the dataset's only one.",
    )
    hidden: int | None = Field(
        None,
        ge=1,
        description="Width of a hidden layer (ReLU, dropout) before the score; null: one "
        "linear layer from the video feature to the score.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the score layer.")
    margin: float = Field(
        1.0, ge=0, description="Margin of the ranking loss (RAAN: 1.0)."
    )
    task_field: str | None = Field(
        "task",
        description="Class field naming each pair's task, for per-task pairwise accuracy; "
        "null (or a dataset without it): the accuracy over all pairs only.",
    )


class RankingHead(TaskHead):
    """Per-video skill score trained on (better, worse) pairs with a margin ranking loss.

    Compares each pair's better video (the sample) with its worse one (its partner); reports
    pairwise accuracy per task and averaged.
    """

    name = "ranking"
    Params = RankingParams
    uses_partners: ClassVar[bool] = True
    target_kind: ClassVar[str] = "pair_order"
    metric_directions: ClassVar[Mapping[str, Any]] = {
        "pairwise_accuracy": "max",
        "pairwise_accuracy_mean": "max",
    }

    def __init__(self, params: RankingParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        width = flat_size(in_shape)
        layers: list[nn.Module] = []
        if params.hidden:
            layers += [nn.Linear(width, params.hidden), nn.ReLU(inplace=True)]
            width = params.hidden
        layers += [nn.Dropout(params.dropout), nn.Linear(width, 1)]
        self.scorer = nn.Sequential(*layers)
        self.preference = next(iter(targets.matching(self.target_needs(params)[0])))
        field = params.task_field
        self.task_labels = targets.classes[field].labels if field in targets.classes else None

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """One target of kind ``pair_order`` (``preference``): the dataset is made of pairs."""
        return [
            TargetNeed(
                "pair_order",
                name=params.preference,  # type: ignore[attr-defined]
                shape=(),
                role="whether each sample's video is the better one of its pair (a pair "
                "dataset such as epic-skills or best)",
            )
        ]

    def score(self, features: Tensor) -> Tensor:
        """Skill score of each video: ``(..., *G)`` -> ``(...)``."""
        lead = features.shape[: features.dim() - len(self.in_shape)]
        return self.scorer(features.reshape(*lead, -1)).squeeze(-1)

    def forward(
        self,
        features: Tensor,
        batch: Mapping[str, Any] | None = None,
        partners: Mapping[str, Any] | None = None,
    ) -> dict:
        """Skill of each sample's video and of its partner (the pair's other video).

        Returns:
            ``{"skill": (B,), "partner_skill": (B,)}``.
        """
        if partners is None:
            return {"skill": self.score(features)}
        both = self.score(torch.cat([features, partners["features"][:, 0]]))
        b = features.shape[0]
        return {"skill": both[:b], "partner_skill": both[b:]}

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Margin ranking loss on ordered pairs; equal pairs pulled within the margin."""
        s, p = outputs["skill"].float(), outputs["partner_skill"].float()
        order = batch["arrays"][self.preference].to(s.device).float().reshape(-1)
        ranked = order > 0.5
        terms = torch.zeros_like(s)
        margin = self.params.margin
        terms = torch.where(ranked, torch.relu(margin - (s - p)), terms)
        terms = torch.where(~ranked, torch.relu((s - p).abs() - margin), terms)
        return terms.mean()

    def predict(self, outputs: dict) -> dict[str, list]:
        """``skill`` of each sample's video and ``partner_skill`` of its partner."""
        out = {"skill": outputs["skill"].float().tolist()}
        if "partner_skill" in outputs:
            out["partner_skill"] = outputs["partner_skill"].float().tolist()
        return out

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """Each pair's order (``preference``) and task index (when the dataset has tasks)."""
        out = {"preference": batch["arrays"][self.preference].float().reshape(-1).tolist()}
        classes = batch.get("classes") or {}
        if self.task_labels is not None and self.params.task_field in classes:
            out["task"] = classes[self.params.task_field].reshape(-1).tolist()
        return out

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """``pairwise_accuracy`` over the ordered pairs, per task and the mean over tasks."""
        order = references.get("preference", [])
        keep = [i for i, o in enumerate(order) if o > 0.5]
        better = [predictions["skill"][i] for i in keep]
        worse = [predictions["partner_skill"][i] for i in keep]
        out = {"pairwise_accuracy": M.pairwise_accuracy(better, worse)}
        tasks = references.get("task")
        if tasks is not None and self.task_labels is not None:
            groups = [self.task_labels[int(tasks[i])] for i in keep]
            per_task = M.pairwise_accuracy_by_group(better, worse, groups)
            for task, value in per_task.items():
                out[f"pairwise_accuracy_{task}"] = value
            out["pairwise_accuracy_mean"] = float(
                sum(per_task.values()) / len(per_task)
            ) if per_task else float("nan")
        return out
