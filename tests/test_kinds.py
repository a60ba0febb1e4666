"""The kind table, the shared component rules and the declared interface members."""

from __future__ import annotations

import docgen  # docs/docgen/, on sys.path through conftest.py
import pytest
from pydantic import BaseModel, ConfigDict, Field

from aqa_framework import hookspecs, testing
from aqa_framework.errors import PluginError
from aqa_framework.interfaces import Aggregator, Backbone, TaskHead, VideoDataset
from aqa_framework.kinds import KINDS, component_problems


def test_one_table_names_every_kind_its_interface_hook_and_title():
    assert list(KINDS) == ["backbone", "aggregator", "head", "dataset"]
    assert [k.interface for k in KINDS.values()] == [Backbone, Aggregator, TaskHead, VideoDataset]
    for name, kind in KINDS.items():
        assert kind.interface.kind == name and kind.interface_name == kind.interface.__name__
        assert callable(getattr(hookspecs, kind.hook))
    assert {k: KINDS[k].hook for k in KINDS} == hookspecs.HOOKS
    assert {k: KINDS[k].title for k in KINDS} == docgen.KIND_TITLES
    assert "Task heads" in docgen.catalog()


class Sloppy(Aggregator):
    name = "toy.Sloppy"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = 3

    def forward(self, clip_features):
        return clip_features.mean(1)


def test_component_problems_serve_the_registry_the_test_kit_and_the_docs():
    problems = component_problems(Sloppy)
    assert [p.split(" ")[0] for p in problems] == ["name", "no", "param"]
    # registration needs only the first group of rules
    assert component_problems(Sloppy, documentation=False) == problems[:1]
    assert component_problems(int, "head") == ["is not a subclass of TaskHead"]
    assert component_problems(Sloppy, "nothing")[0].startswith("unknown kind 'nothing'")
    with pytest.raises(testing.ContractError, match=r"aggregator 'toy.Sloppy' .*: name 'toy.Sl"):
        testing.check_component_class(Sloppy)
    with pytest.raises(PluginError, match="register_aggregators got .*Sloppy: name 'toy.Sl"):
        testing.registry_with("toy", [Sloppy])

    class Loose(Sloppy):
        """Registers, but documents nothing of its params."""

        name = "toy.loose"

    reg = testing.registry_with("toy", [Loose], builtins=False)
    assert docgen.documentation_problems(reg) == [
        f"aggregator 'toy.loose' ({reg.entry('aggregator', 'toy.loose').qualname}): "
        + problems[2]
    ]

    class NotPydantic(Loose):
        """Params that are not a pydantic model."""

        name = "toy.not-pydantic"

        class Params:
            model_config = {"extra": "forbid"}

    with pytest.raises(PluginError, match="Params must be a pydantic model"):
        testing.registry_with("toy", [NotPydantic], builtins=False)


class Weighted(Aggregator):
    """An aggregator whose weight file is its ``weights`` param."""

    name = "toy.weighted"
    pretrained_param = "weights"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        weights: str | None = Field(None, description="Weight file.")

    def forward(self, clip_features):
        return clip_features.mean(1)


def test_pretrained_file_is_a_declared_member_with_a_default_for_0_1_components():
    from plugins.aqa_builtin.aggregators import AverageAggregator  # declares `pretrained`

    params = AverageAggregator.parse_params({"pretrained": "w.pt"})
    assert AverageAggregator.pretrained_file(params) == "w.pt"
    cleared = AverageAggregator.without_pretrained(params)
    assert cleared.pretrained is None and params.pretrained == "w.pt"
    assert AverageAggregator.pretrained_file(cleared) is None
    custom = Weighted.parse_params({"weights": "mine.pt"})
    assert Weighted.pretrained_file(custom) == "mine.pt"
    assert Weighted.without_pretrained(custom).weights is None
    assert Sloppy.pretrained_file(Sloppy.parse_params({})) is None  # Params without the field
    assert Sloppy.without_pretrained(p := Sloppy.parse_params({})) is p


def test_frame_cache_dir_and_frame_files_are_declared_members():
    from aqa_framework.video.params import VideoParams
    from plugins.aqa_builtin.datasets.aqa7 import AQA7Dataset

    tiny = testing.TinyVideoDataset
    assert tiny.frame_cache_dir(tiny.parse_params({})) is None
    params = AQA7Dataset.parse_params({"root": "x", "cache_dir": ".cache/frames"})
    assert AQA7Dataset.frame_cache_dir(params) == ".cache/frames"
    assert AQA7Dataset.frame_files(params) == ("img_{index:05d}.jpg", 1)
    renamed = params.model_copy(update={"frame_pattern": "f{index}.png", "first_frame_number": 0})
    assert AQA7Dataset.frame_files(renamed) == ("f{index}.png", 0)
    assert VideoDataset.frame_cache_dir(VideoParams()) is None
