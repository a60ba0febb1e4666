"""One override dialect: ``--set`` strings and sweep override sets mean the same."""

from __future__ import annotations

import copy

import pytest

from aqa_framework.errors import SpecError
from aqa_framework.experiments.sweep import apply_override_set
from aqa_framework.spec import apply_overrides, override_entry, parse_override

BASE = {
    "model": {
        "backbone": {"name": "c3d"},
        "heads": {"score": {"name": "score"}, "caption": {"name": "caption"}},
    },
    "train": {"epochs": 3, "max_nonfinite_steps": 10},
}


def both(strings: list[str], mapping: dict) -> tuple[dict, dict]:
    """The base after the overrides as ``--set`` strings and as a sweep override set."""
    a = apply_overrides(copy.deepcopy(BASE), strings)
    b = copy.deepcopy(BASE)
    apply_override_set(b, mapping, "axes.x.y")
    return a, b


def test_null_stores_null_in_both_forms():
    a, b = both(["train.max_nonfinite_steps=null"], {"train.max_nonfinite_steps": None})
    assert a == b
    assert a["train"]["max_nonfinite_steps"] is None


def test_a_head_set_to_null_is_dropped_in_both_forms():
    a, b = both(["model.heads.caption=null"], {"model.heads.caption": None})
    assert a == b
    assert a["model"]["heads"].keys() == {"score"}
    with pytest.raises(SpecError, match="model.heads.captoin"):
        apply_overrides(copy.deepcopy(BASE), ["model.heads.captoin=null"])


def test_tilde_removes_in_both_forms():
    a, b = both(["~train.epochs"], {"~train.epochs": None})
    assert a == b
    assert "epochs" not in a["train"]
    with pytest.raises(SpecError, match="must be null"):
        apply_override_set(copy.deepcopy(BASE), {"~train.epochs": 3}, "axes.x.y")
    with pytest.raises(SpecError, match=r"axes.x.y: train.epoch"):
        apply_override_set(copy.deepcopy(BASE), {"~train.epoch": None}, "axes.x.y")


def test_values_and_parsing():
    a, b = both(["train.epochs=5", "model.x=[1, 2]"], {"train.epochs": 5, "model.x": [1, 2]})
    assert a == b
    assert parse_override(" ~a.b ") == ("a.b", None, True)
    assert parse_override("a.b=1e-4") == ("a.b", 1e-4, False)
    assert override_entry("a.b", "x") == ("a.b", "x", False)
    with pytest.raises(SpecError, match="~ must be followed"):
        override_entry("~", None)
