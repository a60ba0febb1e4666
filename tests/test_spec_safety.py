"""Spec files that are hostile or subtly wrong: alias bombs, duplicate keys, NaN and infinity."""

from __future__ import annotations

import resource
import time

import pytest

from aqa_framework.errors import SpecError
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, load_raw, load_spec, parse_spec
from aqa_framework.yamlio import YAMLProblem, load_yaml, short_repr

BASE = """
model:
  backbone: {name: c3d}
  heads:
    score: {name: score}
data:
  name: mtl-aqa
  params: {root: data/mtl-aqa}
train:
  epochs: 2
  optimizer: {lr: 0.001}
"""


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(exc_info):
    return dict(exc_info.value.problems)


def billion_laughs() -> str:
    """A ~400-byte YAML file that expands to 10**9 strings."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 10)}]\n"
    return text


# -- item 13: size and alias limits ------------------------------------------------------------


def test_alias_bomb_is_refused_quickly_without_memory(tmp_path):
    path = write(tmp_path, billion_laughs())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 values") as info:
        load_spec(path)
    assert time.perf_counter() - start < 5
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200
    assert len(str(info.value)) < 400


def test_alias_bomb_in_an_override_is_refused(tmp_path):
    bomb = "&a0 [1,1,1,1,1,1,1,1,1,1]"
    for i in range(1, 8):
        bomb = f"&a{i} [{bomb}, {', '.join([f'*a{i - 1}'] * 9)}]"
    with pytest.raises(SpecError, match="expands to more than"):
        apply_overrides({}, [f"description={bomb}"])


def test_recursive_alias_and_deep_nesting_are_refused():
    with pytest.raises(YAMLProblem, match="alias refers to the value that contains it"):
        load_yaml("a: &x [1, *x]\n")
    with pytest.raises(YAMLProblem, match="nested more than 64 levels"):
        load_yaml("a: " + "[" * 200 + "]" * 200)


def test_too_large_spec_file_is_refused_before_reading(tmp_path):
    path = write(tmp_path, BASE + "description: " + "x" * 1_100_000 + "\n")
    with pytest.raises(SpecError, match="at most 1,000,000 are read"):
        load_raw(path)


def test_error_messages_show_bounded_values(tmp_path):
    shared = ", ".join(["*a"] * 300)
    text = BASE + f"seed: [&a [{', '.join(['1'] * 300)}], {shared}]\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert "seed" in problems(info)
    assert len(str(info.value)) < 300
    assert len(short_repr(list(range(10**6)))) <= 60


def test_merge_keys_and_anchors_still_work(tmp_path):
    text = BASE + "eval: &e {every: 2}\noutput: {name: run}\ndescription: x\n"
    assert load_spec(write(tmp_path, text)).eval.every == 2
    assert load_yaml("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n") == {
        "b": {"x": 1, "y": 2},
        "m": {"x": 3, "y": 2},
    }


# -- item 8: duplicate keys --------------------------------------------------------------------


def test_duplicate_key_is_an_error_with_its_path(tmp_path):
    text = BASE.replace(
        "    score: {name: score}\n",
        "    score: {name: score}\n    score: {name: classification}\n",
    )
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    (msg,) = problems(info).values()
    assert list(problems(info)) == ["model.heads.score"]
    assert "duplicate key (first at line 5, again at line 6)" in msg


def test_duplicate_top_level_key_in_a_sweep_file(tmp_path):
    from aqa_framework.experiments.sweep import load_sweep

    write(tmp_path, BASE, "base.yaml")
    sweep = write(tmp_path, "base: base.yaml\naxes: {seed: [1, 2]}\naxes: {seed: [3]}\n", "s.yaml")
    with pytest.raises(SpecError, match="axes: duplicate key"):
        load_sweep(sweep)


# -- item 6: NaN and infinity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("train.optimizer.lr=.inf", "train.optimizer.lr"),
        ("train.optimizer.lr=inf", "train.optimizer.lr"),
        ("model.heads.score.loss_weight=.inf", "model.heads.score.loss_weight"),
        ("train.grad_clip=.nan", "train.grad_clip"),
        (
            "model.heads.score.params.rel_l2_range=[0, .inf]",
            "model.heads.score.params.rel_l2_range.1",
        ),
    ],
)
def test_nonfinite_numbers_are_refused_with_their_path(tmp_path, override, path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, BASE), [override])
    assert path in problems(info)
    assert "finite number" in problems(info)[path]


def test_nonfinite_number_in_the_file_is_refused(tmp_path):
    text = BASE.replace("{lr: 0.001}", "{lr: .inf}") + "seed: .nan\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert problems(info)["train.optimizer.lr"] == "must be a finite number (got .inf)"
    assert "seed" in problems(info)


def test_nonfinite_string_coerced_by_a_component_param_is_refused(tmp_path):
    raw = load_raw(write(tmp_path, BASE))
    raw["model"]["heads"]["score"]["params"] = {"target_scale": "inf"}
    spec = parse_spec(raw)
    with pytest.raises(SpecError) as info:
        resolve(spec)
    assert problems(info) == {
        "model.heads.score.params.target_scale": "must be a finite number (got .inf)"
    }
