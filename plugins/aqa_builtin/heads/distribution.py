"""Score-distribution heads: USDL (one distribution over score bins) and MUSDL (one per judge).

Uncertainty-aware score distribution learning (Tang et al., CVPR 2020) predicts a softmax
distribution over discrete score bins instead of a single number. The target is a Gaussian
over the bin indices centred at the true value's (continuous) position, renormalised to sum
to 1, and the loss is the Kullback-Leibler divergence from it. USDL learns one distribution
for the final score; MUSDL learns one per judge over the marking scale and turns the decoded
marks into the final score with the sport's rule (:mod:`aqa_builtin.heads.judge_rules`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from aqa_builtin.heads.judge_rules import (
    JudgeRule,
    RuleFunction,
    load_rule,
    parse_rule,
)
from aqa_builtin.heads.score import (
    REL_L2_RANGE_HELP,
    SCORE_METRIC_DIRECTIONS,
    RelL2Range,
    fixed_score_range,
    score_metrics,
)
from aqa_builtin.layers import flat_size
from aqa_framework import metrics as M
from aqa_framework.component import PATH_PARAM
from aqa_framework.errors import DataError
from aqa_framework.interfaces import TaskHead
from aqa_framework.targets import ArrayTarget, TargetNeed, Targets

JUDGE_KINDS = ("judge_scores", "sub_scores")
"""Array target kinds MUSDL learns marks from."""

_SCORE_ROLE = "the final score the rule predicts"


def _increasing(value: tuple[float, float]) -> tuple[float, float]:
    if not (math.isfinite(value[0]) and math.isfinite(value[1]) and value[1] > value[0]):
        raise ValueError(f"a range needs finite high > low (got {list(value)})")
    return value


ValueRange = Annotated[tuple[float, float], AfterValidator(_increasing)]
"""A ``[low, high]`` param with finite ``high > low``."""

KLReduction = Literal["mean", "batchmean"]
Decode = Literal["argmax", "expectation"]


@dataclass(frozen=True)
class Bins:
    """Evenly spaced score bins: ``count`` values from ``low`` to ``high`` inclusive.

    Attributes:
        low: Value of the first bin.
        high: Value of the last bin.
        count: Number of bins (at least 2).
    """

    low: float
    high: float
    count: int

    @property
    def step(self) -> float:
        """Distance between two neighbouring bins."""
        return (self.high - self.low) / (self.count - 1)

    def centres(self, like: Tensor) -> Tensor:
        """The bins' values ``(count,)`` as float32 on ``like``'s device."""
        return self.low + self.step * torch.arange(self.count, device=like.device).float()

    def position(self, values: Tensor) -> Tensor:
        """Continuous bin index of each value (``0`` at ``low``, ``count - 1`` at ``high``)."""
        return (values.float() - self.low) / self.step

    def soft_labels(self, values: Tensor, sigma: float) -> Tensor:
        """Gaussian soft labels over the bin indices.

        The normal pdf with standard deviation ``sigma`` (in bins) centred at each value's
        :meth:`position`, evaluated at every bin index and renormalised to sum to 1. It is
        computed as a softmax of the log-density, which equals the renormalised pdf and stays
        finite where the pdf itself would underflow.

        Args:
            values: Values of any shape ``S``.
            sigma: Standard deviation in bins.

        Returns:
            ``(*S, count)`` float32 distributions.
        """
        index = torch.arange(self.count, device=values.device).float()
        z = (index - self.position(values).unsqueeze(-1)) / sigma
        return torch.softmax(-0.5 * z * z, dim=-1)

    def decode(self, log_probs: Tensor, how: Decode) -> Tensor:
        """Values of distributions: the bin of highest probability, or the expectation.

        Args:
            log_probs: ``(..., count)`` log-probabilities.
            how: ``argmax`` (the papers' decoding) or ``expectation``.

        Returns:
            ``(...)`` float32 values; ``nan`` where a distribution holds ``nan`` or ``+inf``
            (``argmax`` would otherwise pick the bin of a ``nan`` as if it were the peak).
        """
        if how == "argmax":
            values = self.low + self.step * log_probs.argmax(dim=-1).float()
            broken = (torch.isnan(log_probs) | torch.isposinf(log_probs)).any(dim=-1)
            return values.masked_fill(broken, float("nan"))
        return (log_probs.float().exp() * self.centres(log_probs)).sum(dim=-1)

    def outside(self, values: Tensor) -> Tensor:
        """Mask of values that are not finite or lie outside ``[low, high]``."""
        tol = 1e-6 * (self.high - self.low)
        v = values.float()
        return ~torch.isfinite(v) | (v < self.low - tol) | (v > self.high + tol)

    def describe(self) -> str:
        """``101 bins 0..104.5 (step 1.045)``."""
        return f"{self.count} bins {self.low:g}..{self.high:g} (step {self.step:g})"


def kl_divergence(log_probs: Tensor, target: Tensor, reduction: KLReduction = "mean") -> Tensor:
    """KL divergence from soft labels to predicted distributions, summed over judges.

    ``sum(target * (log(target) - log_probs))`` (zero where ``target`` is 0), divided by the
    number of samples times bins (``mean``: what ``nn.KLDivLoss()`` with its default reduction
    computes, as the USDL/MUSDL code does) or by the number of samples (``batchmean``: the KL
    divergence per sample). For ``(B, J, K)`` inputs this is the sum over the J judges of
    each judge's term, the MUSDL loss.

    Args:
        log_probs: ``(B, K)`` or ``(B, J, K)`` predicted log-probabilities.
        target: Soft labels of the same shape.
        reduction: ``mean`` or ``batchmean``.

    Returns:
        The scalar loss.
    """
    total = F.kl_div(log_probs.float(), target.float(), reduction="sum")
    batch, bins = log_probs.shape[0], log_probs.shape[-1]
    return total / (batch * bins if reduction == "mean" else batch)


def distribution_mlp(in_features: int, hidden: Sequence[int], bins: int) -> nn.Sequential:
    """The USDL/MUSDL evaluator: an MLP from features to bin logits.

    Linear + ReLU layers of the ``hidden`` widths, then ``bins`` logits (1024 -> 256 -> 128 ->
    K in the paper).
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, bins))
    return nn.Sequential(*layers)


class _Unmet(ValueError):
    """A target the head needs is missing or does not fit (the message says which)."""


def _pick_score(head: str, name: str | None, targets: Targets, role: str) -> str:
    """The score target a head reports against: ``name``, or the dataset's only score."""
    need = TargetNeed("scores", name=name, role=role)
    problem = targets.explain(need, f"head '{head}'")
    if problem:
        raise _Unmet(problem)
    if name is None and len(targets.scores) > 1:
        raise _Unmet(
            f"head '{head}' needs one score target ({role}), but the dataset provides "
            f"{len(targets.scores)} ({', '.join(targets.scores)}); set its param 'score' to one "
            "of them"
        )
    return name or next(iter(targets.scores))


def _check_values(head: str, what: str, values: Tensor, bins: Bins, batch: Mapping) -> None:
    """Raise if a batch's true values are not finite or fall outside the bins."""
    bad = bins.outside(values)
    if not bool(bad.any()):
        return
    keys = list(batch.get("key") or [])
    rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
    flat = values.reshape(values.shape[0], -1).tolist()
    shown = ", ".join(
        f"{keys[i] if i < len(keys) else f'#{i}'} ({', '.join(f'{v:g}' for v in flat[i])})"
        for i in rows[:5]
    )
    raise DataError(
        f"head '{head}': {what} of sample(s) {shown} not finite or outside the {bins.describe()}; "
        "fix the annotations or widen the bins' range"
    )


class _DistributionParams(BaseModel):
    """Parameters shared by :class:`USDLHead` and :class:`MUSDLHead`."""

    model_config = ConfigDict(extra="forbid")

    score: str | None = Field(
        None,
        description="Score target the head predicts and is evaluated against; default: the "
        "dataset's only score (an error when it declares several).",
    )
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        [256, 128],
        description="Widths of the linear + ReLU layers before the bin logits (the papers' "
        "1024 -> 256 -> 128 -> K); [] for a single linear layer.",
    )
    sigma: float = Field(
        5.0,
        gt=0,
        description="Standard deviation of the Gaussian soft labels, in bins (the papers: 5 on "
        "MTL-AQA, 1 on JIGSAWS).",
    )
    kl_reduction: KLReduction = Field(
        "mean",
        description="KL loss reduction: 'mean' divides the summed divergence by samples x bins "
        "(nn.KLDivLoss() default, as the papers' code), 'batchmean' by samples only.",
    )
    decode: Decode = Field(
        "argmax",
        description="How a distribution becomes a value: 'argmax' (the bin of highest "
        "probability, the papers' code) or 'expectation' (the probability-weighted mean).",
    )
    rel_l2_range: RelL2Range = Field("evaluated", description=REL_L2_RANGE_HELP)
    pretrained: str | None = Field(
        None,
        description="Local weight file loaded after construction: this head's own state dict.",
        json_schema_extra=PATH_PARAM,
    )


class USDLParams(_DistributionParams):
    """Parameters of :class:`USDLHead`."""

    bins: int = Field(
        101,
        ge=2,
        description="Number of score bins K, evenly spread over the range (the paper: 101 on "
        "MTL-AQA, 25 for JIGSAWS' 6..30).",
    )
    bin_range: ValueRange | None = Field(
        None,
        description="[low, high] the bins cover; default: the range the dataset declares for "
        "the score. True scores outside it are an error.",
    )


class _DistributionHead(TaskHead):
    """What both distribution heads share: the evaluator MLPs, KL loss and decoding."""

    consumes = "video"
    target_kind = "scores"
    Params: ClassVar[type[BaseModel]] = _DistributionParams

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Every problem of :meth:`_problems`, joined, or ``None``."""
        return "; ".join(cls._problems(params, targets)) or None

    @classmethod
    def _problems(cls, params: BaseModel, targets: Targets) -> list[str]:
        raise NotImplementedError

    def _evaluators(self, judges: int, bins: int) -> nn.ModuleList:
        width = flat_size(self.in_shape)
        return nn.ModuleList(
            distribution_mlp(width, self.params.hidden, bins) for _ in range(judges)
        )

    def _log_probs(self, features: Tensor) -> Tensor:
        """``(B, J, K)`` log-probabilities, one distribution per evaluator."""
        x = features.flatten(1)
        logits = torch.stack([mlp(x) for mlp in self.evaluators], dim=1)
        return F.log_softmax(logits.float(), dim=-1)

    def _kl(self, log_probs: Tensor, true: Tensor, bins: Bins) -> Tensor:
        target = bins.soft_labels(true.to(log_probs.device), self.params.sigma)
        return kl_divergence(log_probs, target, self.params.kl_reduction)

    def _score_metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        name = self.score_name
        fixed = fixed_score_range(self.params.rel_l2_range, self.targets.scores[name])
        return score_metrics(predictions[name], references[name], fixed)

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """True score in points (subclasses add their own columns)."""
        return {self.score_name: torch.as_tensor(batch["scores"][self.score_name]).float().tolist()}


class USDLHead(_DistributionHead):
    """USDL: a softmax distribution over score bins, learnt from Gaussian soft labels by KL.

    An MLP (``hidden`` widths, ReLU; 1024 -> 256 -> 128 -> K in the paper) maps the video
    feature to K = ``bins`` probabilities over evenly spaced scores covering the score's
    declared range (or ``bin_range``). Training targets are Gaussians over bin indices
    (standard deviation ``sigma`` bins) centred at the true score's position, renormalised;
    the loss is their KL divergence (``kl_reduction``). A distribution decodes to a score by
    ``argmax`` (the paper) or ``expectation``. Predictions are in points, under the score's
    name; metrics are the score head's: Spearman, Pearson, relative L2 (range in
    ``rel_l2_low``/``rel_l2_high``) and MSE.
    """

    name = "usdl"
    metric_directions = SCORE_METRIC_DIRECTIONS
    Params = USDLParams

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """The score target (``score``, or any)."""
        return [TargetNeed("scores", name=params.score, role="the score the head learns")]

    @classmethod
    def _problems(cls, params: BaseModel, targets: Targets) -> list[str]:
        try:
            cls._layout(params, targets)
        except _Unmet as exc:
            return [str(exc)]
        return []

    @classmethod
    def _layout(cls, params: USDLParams, targets: Targets) -> tuple[str, Bins]:
        score = _pick_score(cls.name, params.score, targets, "the score the head learns")
        declared = targets.scores[score]
        low, high = params.bin_range or (declared.low, declared.high)
        return score, Bins(float(low), float(high), params.bins)

    def __init__(self, params: USDLParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        self.score_name, self.bins = self._layout(params, targets)
        self.evaluators = self._evaluators(1, self.bins.count)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """``{"log_probs": (B, K)}``: log-probabilities over the score bins."""
        return {"log_probs": self._log_probs(features)[:, 0]}

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """KL divergence from the true scores' Gaussian soft labels (``kl_reduction``).

        Raises:
            DataError: Naming the samples whose true score is not finite or lies outside the
                bins.
        """
        true = torch.as_tensor(batch["scores"][self.score_name]).float()
        _check_values(self.name, self.score_name, true, self.bins, batch)
        return self._kl(outputs["log_probs"], true, self.bins)

    def predict(self, outputs: dict) -> dict[str, list]:
        """Decoded scores in points."""
        values = self.bins.decode(outputs["log_probs"].detach(), self.params.decode)
        return {self.score_name: values.cpu().tolist()}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Spearman, Pearson, relative L2 (with the range it used) and MSE."""
        return self._score_metrics(predictions, references)


class MUSDLParams(_DistributionParams):
    """Parameters of :class:`MUSDLHead`."""

    judges: str | None = Field(
        None,
        description="Array target of kind 'judge_scores' or 'sub_scores' holding the marks, "
        "one per judge (or item); default: the dataset's only one.",
    )
    step: float | None = Field(
        None,
        gt=0,
        description="Marking step, one bin per step (0.5 in diving: 21 bins for 0..10); "
        "default: the marks target's info['step'].",
    )
    marks_range: ValueRange | None = Field(
        None,
        description="[low, high] of a mark; default: the bounds the marks target declares.",
    )
    rule: JudgeRule | str = Field(
        "sum",
        validate_default=True,
        description="How the decoded marks make the final score: a mapping {drop_highest, "
        "drop_lowest, combine: sum|mean, multiply_by: <scalar 'difficulty' target> or null}, "
        "a preset ('sum', 'mean', 'trimmed_mean', 'diving' = drop 2 highest and 2 lowest, sum, "
        "x difficulty) or 'package.module:function' called as f(marks (B, J), inputs) -> (B,) "
        "with inputs the rule_inputs of the batch. Default: the sum of all marks (JIGSAWS).",
    )
    rule_inputs: list[str] = Field(
        default_factory=list,
        description="Targets an import-path rule reads when predicting (known before the "
        "performance is judged, like a difficulty); it gets {'arrays': {...}, 'scores': {...}} "
        "with exactly these. A mapping rule's multiply_by is added automatically.",
    )

    @field_validator("rule", mode="before")
    @classmethod
    def _parse_rule(cls, value: Any) -> Any:
        return parse_rule(value)


@dataclass(frozen=True)
class _Panel:
    """What a MUSDL head reads from the targets: marks, bins, score, columns and rule."""

    judges: str
    bins: Bins
    score: str
    columns: list[str]
    rule: JudgeRule | RuleFunction


class MUSDLHead(_DistributionHead):
    """MUSDL: one score distribution per judge, combined by the sport's judging rule.

    One MLP per judge (or per item of a ``sub_scores`` target, as JIGSAWS' six GRS items)
    predicts a softmax distribution over that judge's marking scale: one bin per ``step``
    from the marks' lower to upper bound (21 bins for diving's 0..10 in half points). The
    loss is the sum over judges of the KL divergence from Gaussian soft labels (``sigma``
    bins). Each distribution decodes to a mark (``argmax`` as the paper, or ``expectation``);
    ``rule`` turns the marks into the final score (diving: drop the 2 highest and 2 lowest of
    7, sum the middle 3, multiply by the degree of difficulty). Predictions: the final score
    under the score's name and one column per judge (the marks target's labels). Metrics: the
    score head's on the final score, ``<judge>_spearman`` and ``<judge>_mae`` per judge,
    ``judge_spearman`` (Fisher-z mean) and ``judge_mae`` (mean absolute error of all marks).

    A rule that reads the batch (``multiply_by``, or an import-path rule that uses it) needs
    :meth:`predict` to be given the batch.
    """

    name = "musdl"
    target_kind = "judge_scores"
    metric_directions = {**SCORE_METRIC_DIRECTIONS, "mae": "min"}
    Params = MUSDLParams

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """The marks, the score the rule's result is compared with, the rule's multiplier.

        The marks need is listed as a ``judge_scores`` target; :meth:`check_targets` accepts a
        ``sub_scores`` one too.
        """
        needs = [
            TargetNeed("judge_scores", name=params.judges, role="the marks to learn"),
            TargetNeed("scores", name=params.score, role=_SCORE_ROLE),
        ]
        rule = params.rule
        if isinstance(rule, JudgeRule) and rule.multiply_by:
            needs.append(_multiplier_need(rule))
        return needs

    @classmethod
    def prediction_inputs(cls, params: BaseModel) -> list[str]:
        """The rule's multiplier (``multiply_by``) and ``rule_inputs``: known before judging."""
        rule = params.rule
        names = [rule.multiply_by] if isinstance(rule, JudgeRule) and rule.multiply_by else []
        return names + [n for n in params.rule_inputs if n not in names]

    @classmethod
    def _problems(cls, params: BaseModel, targets: Targets) -> list[str]:
        problems: list[str] = [
            f"head '{cls.name}': rule_inputs names '{name}', which is neither a score nor an "
            f"open target of the dataset ({targets.describe()})"
            for name in params.rule_inputs
            if name not in targets.arrays and name not in targets.scores
        ]
        marks = _attempt(problems, lambda: cls._marks(params, targets))
        _attempt(problems, lambda: _pick_score(cls.name, params.score, targets, _SCORE_ROLE))
        count = targets.arrays[marks[0]].shape[0] if marks else None
        _attempt(problems, lambda: cls._rule(params, targets, count))
        return problems

    @classmethod
    def _marks(cls, params: MUSDLParams, targets: Targets) -> tuple[str, Bins]:
        """The marks target's name and its bins."""
        found = {
            k: v
            for k, v in targets.arrays.items()
            if v.kind in JUDGE_KINDS and params.judges in (None, k)
        }
        named = f" named '{params.judges}'" if params.judges else ""
        if not found:
            raise _Unmet(
                f"head '{cls.name}' needs a 'judge_scores' or 'sub_scores' target{named} (the "
                f"marks to learn), but the dataset provides {targets.describe()}"
            )
        if len(found) > 1:
            raise _Unmet(
                f"head '{cls.name}' needs one marks target, but the dataset provides "
                f"{len(found)} ({', '.join(found)}); set its param 'judges' to one of them"
            )
        name, target = next(iter(found.items()))
        if len(target.shape) != 1:
            raise _Unmet(
                f"head '{cls.name}' needs the marks target '{name}' to be a vector (one mark "
                f"per judge), but it has shape {list(target.shape)}"
            )
        return name, _mark_bins(cls.name, name, target, params)

    @classmethod
    def _rule(
        cls, params: MUSDLParams, targets: Targets, judges: int | None
    ) -> JudgeRule | RuleFunction:
        """The rule: a checked :class:`JudgeRule` or the imported function."""
        rule = params.rule
        if not isinstance(rule, JudgeRule):
            try:
                return load_rule(rule)
            except ValueError as exc:
                raise _Unmet(f"head '{cls.name}': {exc}") from None
        if judges is not None and rule.kept(judges) < 1:
            raise _Unmet(
                f"head '{cls.name}': the rule ({rule.describe()}) keeps none of {judges} marks; "
                "drop fewer"
            )
        if rule.multiply_by:
            problem = targets.explain(_multiplier_need(rule), f"head '{cls.name}'")
            if problem:
                raise _Unmet(problem)
        return rule

    @classmethod
    def _layout(cls, params: MUSDLParams, targets: Targets) -> _Panel:
        judges, bins = cls._marks(params, targets)
        score = _pick_score(cls.name, params.score, targets, _SCORE_ROLE)
        target = targets.arrays[judges]
        rule = cls._rule(params, targets, target.shape[0])
        return _Panel(judges, bins, score, _columns(judges, target, score), rule)

    def __init__(self, params: MUSDLParams, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        panel = self._layout(params, targets)
        self.judges, self.bins, self.score_name = panel.judges, panel.bins, panel.score
        self.columns, self.rule = panel.columns, panel.rule
        self.evaluators = self._evaluators(len(self.columns), self.bins.count)

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """``{"log_probs": (B, J, K)}``: per judge, log-probabilities over the mark bins."""
        return {"log_probs": self._log_probs(features)}

    def _marks_of(self, batch: Mapping[str, Any]) -> Tensor:
        return torch.as_tensor(batch["arrays"][self.judges]).float().reshape(-1, len(self.columns))

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Sum over judges of the KL divergence from the true marks' soft labels.

        Raises:
            DataError: Naming the samples whose marks are not finite or lie outside the bins.
        """
        marks = self._marks_of(batch)
        _check_values(self.name, f"marks '{self.judges}'", marks, self.bins, batch)
        return self._kl(outputs["log_probs"], marks, self.bins)

    def final_scores(self, marks: Tensor, batch: Mapping[str, Any] | None = None) -> Tensor:
        """The rule's final scores ``(B,)`` for marks ``(B, J)``.

        Args:
            marks: Marks, one column per judge.
            batch: The prediction inputs (see :meth:`prediction_inputs`) or a collated batch,
                for a rule's multiplier; ``None`` for none.

        A sample with a non-finite mark (a diverged model) gets a ``nan`` final score: the
        rule never sees it as a mark to sort and drop.

        Raises:
            DataError: If the rule needs a value the batch does not carry, or its result is
                not one finite score per sample of finite marks.
        """
        rule = self.rule
        if isinstance(rule, JudgeRule):
            multiplier = None
            if rule.multiply_by:
                arrays = (batch or {}).get("arrays") or {}
                if rule.multiply_by not in arrays:
                    given = "for a bare video" if batch is None else "without it"
                    raise DataError(
                        f"head '{self.name}': the rule ({rule.describe()}) needs each sample's "
                        f"'{rule.multiply_by}' to turn marks into final scores, but predict() "
                        f"was called {given} (a dataset sample carries it)"
                    )
                multiplier = torch.as_tensor(arrays[rule.multiply_by]).to(marks.device).float()
            final = rule.apply(marks, multiplier)
        else:
            final = torch.as_tensor(rule(marks, batch))
        broken = ~torch.isfinite(marks).all(dim=1)
        if final.shape != (marks.shape[0],) or not bool(torch.isfinite(final[~broken]).all()):
            raise DataError(
                f"head '{self.name}': the rule {self.params.rule!r} must give one finite score "
                f"per sample, shape ({marks.shape[0]},), but gave {_brief(final)}"
            )
        return final.float().masked_fill(broken.to(final.device), float("nan"))

    def predict(self, outputs: dict, batch: Mapping[str, Any] | None = None) -> dict[str, list]:
        """The final score (under the score's name) and each judge's decoded mark.

        Args:
            outputs: What :meth:`forward` returned.
            batch: The prediction inputs the engine hands over (:meth:`prediction_inputs`),
                for a rule that reads them (``multiply_by``, ``rule_inputs``).
        """
        marks = self.bins.decode(outputs["log_probs"].detach(), self.params.decode)
        out = {self.score_name: self.final_scores(marks, batch).cpu().tolist()}
        for j, col in enumerate(self.columns):
            out[col] = marks[:, j].cpu().tolist()
        return out

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """True final score and each judge's true mark."""
        out = super().references(batch)
        marks = self._marks_of(batch)
        for j, col in enumerate(self.columns):
            out[col] = marks[:, j].tolist()
        return out

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Score metrics of the final score, plus per-judge Spearman and mean absolute error."""
        out = self._score_metrics(predictions, references)
        errors: list[float] = []
        rhos: list[float] = []
        for col in self.columns:
            pred, true = predictions[col], references[col]
            diff = [abs(p - t) for p, t in zip(pred, true, strict=True)]
            rho = M.spearman(pred, true)
            out[f"{col}_spearman"] = rho
            out[f"{col}_mae"] = sum(diff) / len(diff)
            rhos.append(rho)
            errors += diff
        out["judge_spearman"] = M.fisher_z_mean(rhos)
        out["judge_mae"] = sum(errors) / len(errors)
        return out


def _attempt(problems: list[str], step: Callable[[], Any]) -> Any:
    """Run one check; on an unmet need, note its message and return ``None``."""
    try:
        return step()
    except _Unmet as exc:
        problems.append(str(exc))
        return None


def _multiplier_need(rule: JudgeRule) -> TargetNeed:
    return TargetNeed(
        "difficulty",
        name=rule.multiply_by,
        shape=(),
        role=f"the multiplier of the rule ({rule.describe()})",
    )


def _mark_bins(head: str, name: str, target: ArrayTarget, params: MUSDLParams) -> Bins:
    """One bin per marking step between the marks' bounds."""
    low, high = params.marks_range or (target.low, target.high)
    if low is None or high is None:
        raise _Unmet(
            f"head '{head}' needs bounds for the marks '{name}' ({target.describe()}); set its "
            "param 'marks_range' to [low, high]"
        )
    step = params.step or target.info.get("step")
    if not isinstance(step, int | float) or isinstance(step, bool) or not step > 0:
        raise _Unmet(
            f"head '{head}' needs the marking step of '{name}' (the target's info has no "
            f"positive 'step': {target.info}); set its param 'step' (0.5 for diving)"
        )
    steps = (high - low) / step
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        raise _Unmet(
            f"head '{head}': the marks range {low:g}..{high:g} of '{name}' is not a whole "
            f"number of steps of {step:g}; set 'step' or 'marks_range'"
        )
    return Bins(float(low), float(high), round(steps) + 1)


def _columns(judges: str, target: ArrayTarget, score: str) -> list[str]:
    """Prediction column of each judge: its label as a plain name, or ``<judges>_<i>``."""
    count = target.shape[0]
    names = [re.sub(r"\W+", "_", label).strip("_") for label in target.labels or []]
    if len(names) != count or not all(names) or len(set(names)) < count or score in names:
        names = [f"{judges}_{i + 1}" for i in range(count)]
    return names


def _brief(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}: {value.flatten()[:4].tolist()}"
    return repr(value)[:80]
