"""Open targets: datasets declare targets of any kind, heads ask for them by kind and name.

The third-party components below use a kind no built-in knows (``skating.element_scores``),
through exactly the public doors a plugin package has: ``ArrayTarget`` on the dataset side,
``target_needs`` on the head side, ``sample["arrays"]`` in between.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from aqa_framework import testing
from aqa_framework.interfaces import TaskHead
from aqa_framework.metrics import fisher_z_mean, spearman
from aqa_framework.registry import reset_registry
from aqa_framework.targets import ArrayTarget, TargetNeed, Targets

ELEMENTS = ["jump", "spin", "step"]
KIND = "skating.element_scores"


def element_target() -> ArrayTarget:
    return ArrayTarget(
        kind=KIND, shape=(3,), low=-5.0, high=5.0, labels=ELEMENTS, description="GOE per element"
    )


class SkatingParams(testing.TinyVideoDatasetParams):
    """Parameters of :class:`SkatingDataset`."""

    model_config = ConfigDict(extra="forbid")


class SkatingDataset(testing.TinyVideoDataset):
    """A third-party dataset whose samples carry a vector of element scores.

    Element ``i`` is the brightness of colour channel ``i``, so a model can learn it.
    """

    name: ClassVar[str] = "skating.routines"
    Params = SkatingParams

    def __init__(self, params: Any, split: str = "train", train: bool = False) -> None:
        super().__init__(params, split, train)
        base = self._targets
        self._targets = Targets(
            scores=base.scores, classes=base.classes, arrays={"elements": element_target()}
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        """A tiny sample with its three element scores."""
        sample = super().__getitem__(index)
        video = sample["video"]  # (N, C, T, H, W) in [-1, 1]
        sample["arrays"] = {"elements": (video.mean(dim=(0, 2, 3, 4)) * 40).clamp(-5, 5)}
        return sample


class ElementHeadParams(BaseModel):
    """Parameters of :class:`ElementHead`."""

    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(None, description="Name of the element-score target.")


class ElementHead(TaskHead):
    """A third-party head that regresses every element score of a routine."""

    name = "skating.elements"
    consumes = "video"
    target_kind = KIND
    metric_directions = {"spearman": "max"}
    Params = ElementHeadParams

    @classmethod
    def target_needs(cls, params: ElementHeadParams) -> list[TargetNeed]:
        """One element-score vector (by name if given)."""
        return [TargetNeed(KIND, params.target, role="the element scores to regress")]

    def __init__(self, params: ElementHeadParams, in_shape: tuple[int, ...], targets: Targets):
        super().__init__(params, in_shape, targets)
        found = targets.matching(self.target_needs(params)[0])
        self.target_name, self.target = next(iter(found.items()))
        self.labels = self.target.labels
        self.out = nn.Linear(math.prod(in_shape), self.target.size)

    def forward(self, features, batch=None):
        """Element scores ``(B, 3)``."""
        return {"elements": self.out(features.flatten(1))}

    def loss(self, outputs, batch):
        """MSE against ``batch['arrays'][target]``."""
        true = batch["arrays"][self.target_name].to(outputs["elements"])
        return nn.functional.mse_loss(outputs["elements"], true)

    def predict(self, outputs):
        """One column per element."""
        pred = outputs["elements"].detach().float().cpu()
        return {label: pred[:, i].tolist() for i, label in enumerate(self.labels)}

    def references(self, batch):
        """True element scores, one column per element."""
        true = batch["arrays"][self.target_name].float()
        return {label: true[:, i].tolist() for i, label in enumerate(self.labels)}

    def metrics(self, predictions, references):
        """Spearman per element and their Fisher-z mean."""
        per = {f"{k}_spearman": spearman(predictions[k], references[k]) for k in self.labels}
        return {**per, "spearman": fisher_z_mean(list(per.values()))}


# ----------------------------------------------------------------------------- declarations


def test_array_target_validates_its_declaration():
    with pytest.raises(ValidationError, match="labels"):
        ArrayTarget(kind="judge_scores", shape=(7,), labels=["a", "b"])
    with pytest.raises(ValidationError, match="must exceed"):
        ArrayTarget(kind="judge_scores", shape=(7,), low=10, high=0)
    with pytest.raises(ValidationError):
        ArrayTarget(kind="Judge Scores")  # not a kind name
    with pytest.raises(ValidationError):
        ArrayTarget(kind="difficulty", low=float("nan"))


def test_array_target_problems_name_what_is_wrong():
    judges = ArrayTarget(kind="judge_scores", shape=(7,), low=0, high=10)
    assert judges.problem([9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5]) is None
    bad = judges.problem([2.5, 4.0, 4.0, 45.0, 3.5, 5.0, 4.0])
    assert "45" in bad and "0..10" in bad
    assert "shape [6]" in judges.problem([1.0] * 6)
    assert "not finite" in judges.problem([1.0] * 6 + [float("nan")])
    assert "not numeric" in judges.problem(["a"] * 7)
    assert ArrayTarget(kind="difficulty").problem(3.2) is None
    assert "shape [2]" in ArrayTarget(kind="difficulty").problem([3.2, 1])


def test_find_and_explain_by_kind_and_name():
    targets = testing.tiny_targets(
        captions=False,
        arrays={
            "judges": ArrayTarget(kind="judge_scores", shape=(7,), low=0, high=10),
            "dd": ArrayTarget(kind="difficulty"),
        },
    )
    assert list(targets.find("judge_scores")) == ["judges"]
    assert list(targets.find("scores")) == ["final_score"]
    assert targets.find("captions") == {}
    assert targets.explain(TargetNeed("judge_scores")) is None
    assert targets.explain(TargetNeed("sub_scores", optional=True)) is None
    msg = targets.explain(TargetNeed("judge_scores", "marks", role="the marks"), "head 'x'")
    assert msg.startswith("head 'x' needs a 'judge_scores' target named 'marks' (the marks)")
    assert "arrays (judges: judge_scores[7] 0..10, dd: difficulty)" in msg
    assert "named 'judges'" in msg
    shape = targets.explain(TargetNeed("judge_scores", shape=(5,)))
    assert "of shape [5]" in shape and "judges: [7]" in shape
    assert "captions targets" in targets.explain(TargetNeed("captions"))


def test_targets_round_trip_through_a_checkpoint_dump():
    targets = testing.tiny_targets(arrays={"elements": element_target()})
    again = Targets.model_validate_json(targets.model_dump_json())
    assert again == targets
    old = {k: v for k, v in testing.tiny_targets().model_dump(mode="json").items() if k != "arrays"}
    assert Targets.model_validate(old) == testing.tiny_targets()  # a 0.1 checkpoint's targets


# ----------------------------------------------------------------------------- third party


def test_third_party_kind_passes_the_test_kit():
    targets = testing.tiny_targets(captions=False, arrays={"elements": element_target()})
    metrics = testing.check_head(ElementHead, targets, in_shape=(8,))
    assert {"jump_spearman", "spin_spearman", "step_spearman", "spearman"} <= set(metrics)
    problem = ElementHead.check_targets(ElementHead.Params(), testing.tiny_targets())
    assert "needs a 'skating.element_scores' target (the element scores to regress)" in problem
    dataset = SkatingDataset(SkatingDataset.Params(num_samples=3), "train")
    testing.check_dataset(dataset)


def test_the_test_kit_catches_a_sample_without_its_declared_array():
    class Forgetful(SkatingDataset):
        """Declares element scores but does not carry them."""

        name: ClassVar[str] = "skating.forgetful"

        def __getitem__(self, index):
            sample = super().__getitem__(index)
            del sample["arrays"]
            return sample

    with pytest.raises(testing.ContractError, match="arrays"):
        testing.check_dataset(Forgetful(Forgetful.Params(num_samples=2), "train"))


def test_a_third_party_head_learns_a_third_party_kind_end_to_end(run_spec):
    reset_registry(testing.registry_with("skating", [SkatingDataset, ElementHead]))
    spec = {
        "model": {
            "backbone": {"name": "c3d", "params": {"width": 0.0625}},
            "aggregator": {"name": "average", "params": {"shared_fc": 16}},
            "heads": {"elements": {"name": "skating.elements"}},
        },
        "data": {
            "name": "skating.routines",
            "params": {"num_samples": 24, "num_clips": 1, "frames": 16, "size": 32},
            "batch_size": 4,
            "val_fraction": 0.25,
        },
        "train": {
            "epochs": 6,
            "optimizer": {"lr": 0.003},
            "select_metric": "elements.spearman",
        },
        "seed": 0,
    }
    try:
        run = run_spec(spec)
    finally:
        reset_registry()
    assert run.results["split"] == "test"
    assert set(run.predictions[0]) >= {"key", "elements.jump", "elements.spin", "elements.step"}
    first, last = run.history[0], run.history[-1]
    assert last["train"]["loss"] < first["train"]["loss"]
    assert run.metrics["elements.spearman"] is not None
