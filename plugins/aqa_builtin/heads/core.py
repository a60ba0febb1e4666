"""CoRe: contrastive regression of a score relative to exemplars with a group-aware tree.

Yu et al., "Group-aware Contrastive Regression for Action Quality Assessment" (ICCV 2021).
Each sample is compared with exemplars of known score (``data.partners``, one while
training, ``K`` voters when evaluating). The pair vector ``[f_exemplar | f_query |
s_exemplar / score_range]`` (``(s_exemplar - low) / score_range`` for ``score_range:
target``) goes through a regression tree: a shared ``Linear + ReLU``, then
``depth - 1`` binary levels of per-node classifiers whose log-softmax probabilities add up
to leaf log-probabilities, and one regressor per leaf giving the position of the score
difference inside that leaf's interval. The ``2 ** (depth - 1)`` intervals are fitted before
training (:meth:`CoReHead.fit`) at equal-count quantiles of ``|s_i - s_j|`` over pairs of
training samples of the same group (``data.partners.group_by``), the first edge 0 and the
last ``score_range``, mirrored for negative differences; they are buffers, saved in every
checkpoint. Training takes both pair orders: NLL of the true leaf plus, summed over the
leaves, the mean squared error of the position of the pairs whose true leaf it is. A
prediction decodes each exemplar's pair (arg-max leaf, ``left + (right - left) *
position``), adds the exemplar's score and averages over the exemplars. With
``difficulty`` (CoRe's ``usingDD``), scores are divided by the difficulty target (a finite
number > 0) and the prediction is multiplied back by the query's difficulty (a prediction
input: it is announced before the dive).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from aqa_builtin.heads.score import score_metrics
from aqa_framework.errors import DataError
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import TargetNeed, Targets

MAX_FIT_PAIRS = 4_000_000
"""Pairs beyond this many (all groups together) are subsampled, deterministically, to fit."""


class CoReGroupParams(BaseModel):
    """The score, difficulty and leaf-interval settings shared by CoRe-style heads."""

    model_config = ConfigDict(extra="forbid")

    score: str | None = Field(
        None, description="Score target to predict; default: the dataset's only score."
    )
    difficulty: str | None = Field(
        None,
        description="Scalar open target (kind 'difficulty') to divide scores by (CoRe's "
        "usingDD); predictions are multiplied back by the sample's own value. null: raw "
        "scores.",
    )
    score_range: float | Literal["target"] = Field(
        30.0,
        description="theta: exemplar scores enter the pair vector as score / theta, and the "
        "outermost interval ends at theta (CoRe: 30 on MTL-AQA with usingDD, 100 on AQA-7 "
        "scores normalised to 0-100). 'target': the width high - low of the score target's "
        "declared range, and without 'difficulty' exemplar scores enter as (score - low) / "
        "theta: on raw AQA-7 scores the same as CoRe's 100 on scores normalised to 0-100.",
    )
    depth: int = Field(5, ge=2, le=8, description="Tree depth: 2 ** (depth - 1) leaves (5: 16).")


class CoReParams(CoReGroupParams):
    """Parameters of :class:`CoReHead`."""

    hidden: int = Field(256, ge=1, description="Width of the shared layer and of each node.")


class CoReHead(TaskHead):
    """CoRe: score relative to exemplars with a group-aware regression tree, voting at test."""

    name: ClassVar[str] = "core"
    consumes: ClassVar[str] = "video"  # type: ignore[misc]
    target_kind: ClassVar[str] = "scores"
    uses_partners: ClassVar[bool] = True
    metric_directions: ClassVar[Mapping[str, str]] = {  # type: ignore[misc]
        "spearman": "max",
        "pearson": "max",
        "rel_l2": "min",
        "mse": "min",
    }
    Params = CoReParams

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """A score (by name if given) and, with ``difficulty``, that scalar target."""
        needs = [TargetNeed("scores", name=params.score, role="the score it predicts")]
        if params.difficulty is not None:
            needs.append(
                TargetNeed(
                    "difficulty", name=params.difficulty, shape=(), role="divides the scores"
                )
            )
        return needs

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """The needs, and one score only when ``score`` is not given."""
        problem = super().check_targets(params, targets)
        if problem is None and params.score is None and len(targets.scores) != 1:
            names = ", ".join(targets.scores)
            return f"head '{cls.name}': the dataset has several scores ({names}); set score"
        return problem

    @classmethod
    def prediction_inputs(cls, params: BaseModel) -> list[str]:
        """The difficulty target with ``difficulty`` (known before the dive is judged)."""
        return [params.difficulty] if params.difficulty is not None else []

    def __init__(self, params: CoReParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        if len(in_shape) != 1:
            raise ValueError(f"head 'core' needs feature vectors, got features of shape {in_shape}")
        self._init_groups(params, targets)
        h = params.hidden
        self.first = nn.Sequential(nn.Linear(2 * in_shape[0] + 1, h), nn.ReLU())
        levels = range(params.depth - 1)
        self.splits = nn.ModuleList(
            nn.Sequential(nn.Conv1d(2**d * h, 2 ** (d + 1) * h, 1, groups=2**d), nn.ReLU())
            for d in levels
        )
        self.classifiers = nn.ModuleList(
            nn.Conv1d(2**d * h, 2 ** (d + 1), 1, groups=2**d) for d in levels
        )
        self.regressor = nn.Conv1d(self.leaves * h, self.leaves, 1, groups=self.leaves)

    def _init_groups(self, params: CoReGroupParams, targets: Targets) -> None:
        """The score name, ``theta``, score offset, leaf count and the unfitted ``edges``."""
        self.score_name = params.score or next(iter(targets.scores))
        if params.score_range == "target":
            target = targets.scores[self.score_name]
            self.theta = float(target.high - target.low)
            # CoRe normalises AQA-7 scores to 0-100 first: score / 100 = (raw - low) / theta
            self.offset = float(target.low) if params.difficulty is None else 0.0
        else:
            if not params.score_range > 0:
                raise ValueError(f"head '{self.name}': score_range must be > 0")
            self.theta = float(params.score_range)
            self.offset = 0.0
        self.leaves = 2 ** (params.depth - 1)
        self.register_buffer("edges", torch.full((self.leaves, 2), float("nan")))

    # ------------------------------------------------------------------ groups
    def _normalised(self, scores: Tensor, difficulty: Tensor | None, keys: Any = None) -> Tensor:
        scores = scores.float()
        if self.params.difficulty is None:
            return scores
        if difficulty is None:
            raise DataError(
                f"head '{self.name}' divides scores by '{self.params.difficulty}', which the batch "
                "does not carry"
            )
        difficulty = torch.as_tensor(difficulty).float().reshape(scores.shape)
        _check_divisors(self.params.difficulty, difficulty, keys, self.name)
        return scores / difficulty.to(scores.device)

    def fit(self, data: Any) -> None:
        """Fit the leaf intervals on the training samples' score differences.

        Every pair of two different samples of one group counts once (CoRe's ``i < j``).

        Raises:
            DataError: If fewer than two training samples share a group, a sample lacks the
                score or the difficulty (or its difficulty is not a finite positive number),
                or ``score_range`` is below most of the differences (the intervals would not
                be ordered).
        """
        scores = self._fit_scores(data)
        groups = data.groups if data.groups is not None else [0] * len(scores)
        by_group: dict[Any, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        deltas = []
        for idx in map(torch.tensor, by_group.values()):
            first, second = torch.triu_indices(len(idx), len(idx), offset=1)
            deltas.append((scores[idx[first]] - scores[idx[second]]).abs())
        d = torch.cat(deltas)
        if not d.numel():
            raise DataError(
                f"head '{self.name}': no two training samples share a group, so no score "
                "difference to fit its intervals on"
            )
        if d.numel() > MAX_FIT_PAIRS:
            gen = torch.Generator().manual_seed(0)
            d = d[torch.randperm(d.numel(), generator=gen)[:MAX_FIT_PAIRS]]
        edges = self.intervals(d, self.leaves, self.theta)
        if bool((edges[:, 1] < edges[:, 0]).any()):
            raise DataError(
                f"head '{self.name}': score_range {self.theta:g} is below the edge "
                f"{float(edges[-1, 0]):g} of the last interval (score differences of the "
                f"training pairs reach {float(d.max()):g}); set score_range above the "
                "differences (CoRe: 30 for scores divided by the difficulty, 100 for 0-100 "
                "scores) or to 'target'"
            )
        self.edges.copy_(edges)

    def _fit_scores(self, data: Any) -> Tensor:
        """The training samples' scores (divided by the difficulty), one per sample."""
        keys = list(data.keys)
        scores = torch.tensor(data.scores.get(self.score_name, []), dtype=torch.float64)
        if len(scores) != len(keys):
            raise DataError(
                f"head '{self.name}': {len(keys) - len(scores)} of the {len(keys)} training "
                f"samples have no '{self.score_name}' to fit the intervals on"
            )
        name = self.params.difficulty
        if name is None:
            return scores
        diff = torch.tensor(data.arrays.get(name, []), dtype=torch.float64).reshape(-1)
        if len(diff) != len(keys):
            raise DataError(
                f"head '{self.name}': {len(keys) - len(diff)} of the {len(keys)} training samples "
                f"have no '{name}' to divide their scores by"
            )
        _check_divisors(name, diff, keys, self.name)
        return scores / diff

    @staticmethod
    def intervals(deltas: Tensor, leaves: int, score_range: float) -> Tensor:
        """``(leaves, 2)`` intervals: equal-count quantiles of ``|deltas|``, mirrored.

        The positive half starts at 0 and ends at ``score_range``; the negative half is its
        mirror image.
        """
        d = deltas.abs().sort().values
        n, half = d.numel(), leaves // 2
        pos = []
        for i in range(half):
            left = 0.0 if i == 0 else float(d[int(i / half * (n - 1))])
            right = score_range if i == half - 1 else float(d[int((i + 1) / half * (n - 1))])
            pos.append((left, right))
        neg = [(-r, -left) for left, r in reversed(pos)]
        return torch.tensor(neg + pos, dtype=torch.float32)

    def _checked_edges(self) -> Tensor:
        if not bool(torch.isfinite(self.edges).all()):
            raise DataError(
                f"head '{self.name}' has no fitted intervals: they are fitted on the training "
                "samples when a run starts, and loaded from its checkpoints"
            )
        return self.edges

    def labels(self, delta: Tensor) -> tuple[Tensor, Tensor]:
        """Leaf index and position inside the leaf of score differences (any shape).

        Positive differences fall in ``[left, right)``, negative ones in ``(left, right]``;
        differences beyond the outermost edges go to the outermost leaves.
        """
        edges = self._checked_edges().to(delta.device)
        left, right = edges[:, 0], edges[:, 1]
        x = delta.float().unsqueeze(-1)
        inside = torch.where(x >= 0, (x >= left) & (x < right), (x > left) & (x <= right))
        nearest = torch.where(delta >= 0, self.leaves - 1, 0)
        leaf = torch.where(inside.any(-1), inside.float().argmax(-1), nearest)
        lo, hi = left[leaf], right[leaf]
        width = hi - lo
        pos = torch.where(width > 0, (delta.float() - lo) / width.clamp_min(1e-12), delta - lo)
        return leaf, pos

    def decode(self, leaf_logp: Tensor, offset: Tensor) -> Tensor:
        """Score differences of the arg-max leaves: ``left + (right - left) * position``."""
        edges = self._checked_edges().to(offset.device)
        leaf = leaf_logp.argmax(-1)
        lo, hi = edges[leaf, 0], edges[leaf, 1]
        pos = offset.gather(-1, leaf.unsqueeze(-1)).squeeze(-1)
        delta = torch.where(hi > lo, lo + (hi - lo) * pos, lo + pos)
        # arg-max would take a nan log-probability for the best leaf: such pairs give nan
        broken = (torch.isnan(leaf_logp) | torch.isposinf(leaf_logp)).any(-1)
        return delta.masked_fill(broken, float("nan"))

    # ------------------------------------------------------------------ tree
    def tree(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """Leaf log-probabilities and per-leaf positions ``(M, leaves)`` of pair vectors."""
        x = self.first(pairs).unsqueeze(-1)
        m = x.shape[0]
        logp = None
        for split, classify in zip(self.splits, self.classifiers, strict=True):
            step = F.log_softmax(classify(x).reshape(m, -1, 2), dim=-1)
            logp = step if logp is None else logp.reshape(m, -1, 1) + step
            x = split(x)
        assert logp is not None
        return logp.reshape(m, -1), self.regressor(x).squeeze(-1)

    def _pairs(self, first: Tensor, second: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """Tree outputs ``(B, K, leaves)`` of ``[first | second | (score - offset) / theta]``."""
        level = ((score - self.offset) / self.theta).unsqueeze(-1)
        vec = torch.cat([first, second, level], -1)
        logp, off = self.tree(vec.flatten(0, 1).float())
        shape = (*vec.shape[:2], self.leaves)
        return logp.reshape(shape), off.reshape(shape)

    def forward(
        self,
        features: Tensor,
        batch: Mapping[str, Any] | None = None,
        partners: Mapping[str, Any] | None = None,
    ) -> dict:
        """Tree outputs of every (exemplar, sample) pair, and of the reverse pairs in training.

        Returns:
            ``leaf_logp`` and ``offset`` ``(B, K, leaves)``, ``base`` (the exemplars'
            normalised scores ``(B, K)``); with a batch also ``rev_leaf_logp`` and
            ``rev_offset`` of the pairs (sample, exemplar).

        Raises:
            DataError: Without exemplars, or without their targets.
        """
        theirs, base = self._exemplars(partners)
        query = features.unsqueeze(1).expand_as(theirs)
        logp, off = self._pairs(theirs, query, base)
        out = {"leaf_logp": logp, "offset": off, "base": base}
        if batch is not None and "scores" in batch:
            own = self._own(batch).unsqueeze(1).expand_as(base)
            out["rev_leaf_logp"], out["rev_offset"] = self._pairs(query, theirs, own)
        return out

    def _exemplars(self, partners: Mapping[str, Any] | None) -> tuple[Tensor, Tensor]:
        """The exemplars' features and normalised scores ``(B, K)``.

        Raises:
            DataError: Without exemplars, or without their targets.
        """
        if partners is None or "features" not in partners:
            raise DataError(f"head '{self.name}' needs exemplars: set data.partners in the spec")
        arrays = partners.get("arrays") or {}
        name = self.params.difficulty
        base = self._normalised(
            partners["scores"][self.score_name],
            arrays.get(name) if name else None,
            partners.get("key"),
        )
        return partners["features"], base

    def _own(self, batch: Mapping[str, Any]) -> Tensor:
        name = self.params.difficulty
        arrays = batch.get("arrays") or {}
        return self._normalised(
            batch["scores"][self.score_name], arrays.get(name) if name else None, batch.get("key")
        )

    def _pair_loss(self, logp: Tensor, offset: Tensor, delta: Tensor) -> Tensor:
        """NLL of the true leaves plus CoRe's masked MSE, summed over the leaves.

        The NLL is the mean over the pairs; each leaf adds the mean squared position error of
        the pairs whose true leaf it is (``sum`` over leaves, not a mean over all pairs).
        """
        leaf, pos = self.labels(delta)
        leaf, pos = leaf.flatten(), pos.flatten().float()
        nll = F.nll_loss(logp.flatten(0, 1), leaf)
        at_leaf = offset.flatten(0, 1).gather(-1, leaf.unsqueeze(-1)).squeeze(-1).float()
        err = (at_leaf - pos) ** 2
        per_leaf = torch.zeros(self.leaves, device=err.device).index_add(0, leaf, err)
        count = torch.bincount(leaf, minlength=self.leaves).clamp_min(1)
        return nll + (per_leaf / count).sum()

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """NLL of the true leaf plus the masked per-leaf position MSE, for both pair orders."""
        own = self._own(batch).unsqueeze(1).to(outputs["base"].device)
        delta = own - outputs["base"]
        loss = self._pair_loss(outputs["leaf_logp"], outputs["offset"], delta)
        if "rev_leaf_logp" in outputs:
            loss = loss + self._pair_loss(outputs["rev_leaf_logp"], outputs["rev_offset"], -delta)
        return loss

    def predict(self, outputs: dict, inputs: Mapping[str, Any] | None = None) -> dict[str, list]:
        """The mean over the exemplars of ``exemplar score + decoded difference`` (x difficulty).

        Raises:
            DataError: With ``difficulty`` and no such input (a bare video).
        """
        votes = outputs["base"] + self.decode(outputs["leaf_logp"], outputs["offset"])
        score = votes.float().mean(1)
        name = self.params.difficulty
        if name is not None:
            value = ((inputs or {}).get("arrays") or {}).get(name)
            if value is None:
                raise DataError(
                    f"head '{self.name}' multiplies its prediction by the sample's '{name}', which "
                    "is not known here (a bare video has no targets)"
                )
            score = score * value.to(score.device).float().reshape(score.shape)
        return {self.score_name: score.tolist()}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The true score in points."""
        return {self.score_name: batch["scores"][self.score_name].float().tolist()}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Spearman, Pearson, relative L2 (over the evaluated scores' range) and MSE."""
        name = self.score_name
        return score_metrics(predictions[name], references[name])


def _check_divisors(name: str, values: Tensor, keys: Any = None, who: str = "core") -> None:
    """Raise naming the samples whose difficulty is not a finite positive number.

    Args:
        name: The difficulty target's name.
        values: Its values, any shape.
        keys: The samples' keys in the same layout (a list, or a list of lists), if known.
        who: The head's registry name, for the message.
    """
    bad = ~torch.isfinite(values) | (values <= 0)
    if not bool(bad.any()):
        return
    flat_keys: list[Any] = []
    for k in keys or []:
        flat_keys.extend(k if isinstance(k, list | tuple) else [k])
    rows = bad.reshape(-1).nonzero().flatten().tolist()
    flat = values.reshape(-1).tolist()
    shown = ", ".join(
        f"{flat_keys[i] if len(flat_keys) == len(flat) else f'#{i}'} ({flat[i]:g})"
        for i in rows[:5]
    )
    raise DataError(
        f"head '{who}' divides scores by '{name}', which must be a finite number > 0, but "
        f"sample(s) {shown} have other values; fix the annotations or leave 'difficulty' unset"
    )
