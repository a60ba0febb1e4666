import json

import pytest

from aqa_framework.errors import SpecError
from aqa_framework.resolve import resolve
from aqa_framework.spec import apply_overrides, json_schema, load_spec, parse_spec

BASE = """
model:
  backbone: {name: c3d}
  aggregator: {name: average}
  heads:
    score: {name: score, loss_weight: 1.0}
data:
  name: mtl-aqa
  params: {root: data/mtl-aqa}
train: {epochs: 2}
"""


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(exc_info):
    return dict(exc_info.value.problems)


def test_valid_spec_fills_defaults(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.train.epochs == 2
    assert spec.train.optimizer.name == "adam" and spec.train.optimizer.lr == 1e-4
    assert spec.data.batch_size == 3
    assert spec.model.heads["score"].loss_weight == 1.0


def test_unknown_envelope_key_reports_its_path(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, BASE), ["train.epochz=3"])
    assert problems(info) == {"train.epochz": "unknown key"}


def test_wrong_type_reports_path_and_value(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, BASE), ["train.epochs=many"])
    (msg,) = problems(info).values()
    assert "train.epochs" in problems(info) and "'many'" in msg


def test_every_problem_is_listed(tmp_path):
    raw = BASE.replace("heads:\n    score: {name: score, loss_weight: 1.0}", "heads: {}")
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, raw), ["seed=-1", "data.batch_size=0"])
    assert set(problems(info)) == {"model.heads", "seed", "data.batch_size"}
    assert str(info.value).startswith(f"{tmp_path / 'spec.yaml'}: 3 problems")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(write(tmp_path, "model:\n  backbone: [\n"))
    with pytest.raises(SpecError, match="mapping at the top level"):
        load_spec(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SpecError, match="empty"):
        load_spec(write(tmp_path, ""))


def test_overrides_parse_yaml_values_and_create_paths():
    raw = {"train": {"epochs": 1}}
    apply_overrides(raw, ["train.epochs=5", "train.optimizer.lr=3e-4", "model.x=[1, 2]", "a=null"])
    assert raw == {
        "train": {"epochs": 5, "optimizer": {"lr": 3e-4}},
        "model": {"x": [1, 2]},
        "a": None,
    }
    with pytest.raises(SpecError, match="not of the form"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(SpecError, match="train.epochs is not a mapping"):
        apply_overrides({"train": {"epochs": 1}}, ["train.epochs.x=1"])


def test_unknown_backbone_suggests_the_close_name(tmp_path):
    spec = load_spec(write(tmp_path, BASE.replace("name: c3d}", "name: c3dd}")))
    with pytest.raises(SpecError) as info:
        resolve(spec)
    msg = problems(info)["model.backbone.name"]
    assert "Unknown backbone 'c3dd'. Did you mean 'c3d'?" in msg


def test_unknown_component_param_reports_full_path(tmp_path):
    spec = load_spec(write(tmp_path, BASE), ["model.heads.score.params.hiden=3"])
    with pytest.raises(SpecError) as info:
        resolve(spec)
    assert problems(info) == {"model.heads.score.params.hiden": "unknown key"}


def test_resolve_binds_classes_and_params(tmp_path):
    resolved = resolve(load_spec(write(tmp_path, BASE)))
    assert resolved.backbone.cls.name == "c3d"
    assert resolved.heads["score"].path == "model.heads.score"
    assert resolved.dataset.cls.name == "mtl-aqa"


def test_json_schema_is_serialisable_and_describes_fields():
    schema = json_schema()
    text = json.dumps(schema)
    assert schema["title"] == "aqa-framework run spec"
    assert "loss_weight" in text and "val_fraction" in text


def test_parse_spec_accepts_mapping():
    spec = parse_spec({"model": {"backbone": {"name": "c3d"}, "heads": {"s": {"name": "score"}}},
                       "data": {"name": "mtl-aqa"}})
    assert spec.model.aggregator.name == "average"
