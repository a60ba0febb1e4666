"""``aqa_framework.resolve.load``: one way from a spec file, a mapping or a run folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import fakedives as fd
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.errors import SpecError
from aqa_framework.registry import Registry
from aqa_framework.resolve import (
    comparable_stored_spec,
    dump_resolved_spec,
    load,
    resolved_spec_dict,
)

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {"name": "fake.dives", "params": {"num_samples": 3}},
}


def test_load_reads_a_file_a_mapping_and_applies_overrides(tmp_path):
    reg = fd.registry()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(RAW))
    from_file = load(path, ["train.epochs=3"], registry=reg)
    assert from_file.source == str(path) and from_file.spec.train.epochs == 3
    from_mapping = load(RAW, ["data.params.num_samples=5"], registry=reg, label="m")
    assert from_mapping.dataset.params.num_samples == 5 and from_mapping.source == "m"
    assert RAW["data"]["params"]["num_samples"] == 3  # the mapping is left as it is


def test_load_reports_yaml_paths(tmp_path):
    reg = fd.registry()
    with pytest.raises(SpecError) as caught:
        load(RAW, ["model.heads.score.params.hiden=3", "eval.split=val"], registry=reg)
    paths = [p for p, _ in caught.value.problems]
    assert paths == ["model.heads.score.params.hiden"]  # pass two stops at the components
    with pytest.raises(SpecError) as caught:
        load(RAW, ["train.select_metric=score.spearmn", "eval.split=val"], registry=reg)
    assert [p for p, _ in caught.value.problems] == ["train.select_metric", "eval.split"]
    assert "declares: score.spearman" in str(caught.value)


def _run_folder(tmp_path: Path, spec: dict, cwd: Path | None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text(yaml.safe_dump(spec))
    if cwd is not None:
        (run / "environment.json").write_text(json.dumps({"cwd": str(cwd)}))
    return run


def test_load_a_run_folder_of_an_older_version_makes_its_paths_absolute(tmp_path):
    reg = fd.registry()
    raw = {
        **RAW,
        "model": {
            **RAW["model"],
            "backbone": {
                "name": "c3d",
                "params": {"width": 0.0625, "pretrained": "weights/c3d.pth"},
            },
        },
    }
    run = _run_folder(tmp_path, raw, cwd=tmp_path / "where-it-ran")
    resolved = load(run, registry=reg)
    assert resolved.source == str(run / "spec.yaml")
    expected = str(tmp_path / "where-it-ran" / "weights" / "c3d.pth")
    assert resolved.backbone.params.pretrained == expected
    # an override's relative path stays relative to the current directory
    moved = load(run, ["model.backbone.params.pretrained=other.pth"], registry=reg)
    assert moved.backbone.params.pretrained == "other.pth"


def test_load_a_checkpoint_folder_reads_the_spec_it_stores(tmp_path):
    folder = tmp_path / "checkpoints" / "last"
    folder.mkdir(parents=True)
    (folder / "checkpoint.json").write_text(json.dumps({"spec": RAW}))
    resolved = load(folder, registry=fd.registry())
    assert resolved.dataset.params.num_samples == 3
    with pytest.raises(SpecError, match="without spec.yaml or checkpoint.json"):
        load(tmp_path, registry=fd.registry())


# ------------------------------------------------------------------------ the stored spec


class _Old(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_samples: int = Field(4, description="Samples per split.")
    jitter: int = Field(2, description="A param whose default changes.")


class _New(_Old):
    jitter: int = Field(3, description="A param whose default changes.")


def _versioned(params: type[BaseModel]) -> Registry:
    class Versioned(fd.FakeDivesDataset):
        """Fake dives whose params change between two versions (tests only)."""

        name = "fake.versioned"
        Params = params

    class Plugin:
        from aqa_framework import hookimpl

        @hookimpl
        def register_datasets(self, register):
            register(Versioned)

    return Registry(entry_points=[], extra_plugins=[("fake", Plugin())])


def test_stored_spec_has_every_default_and_resume_notices_a_changed_default():
    from aqa_framework.engine.runner import spec_differences

    raw = {**RAW, "data": {"name": "fake.versioned", "params": {"num_samples": 3}}}
    before = load(raw, registry=_versioned(_Old))
    after = load(raw, registry=_versioned(_New))
    stored = resolved_spec_dict(before)
    assert stored["data"]["params"] == {"num_samples": 3, "jitter": 2}
    assert stored["model"]["heads"]["score"]["params"]["target_scale"] is not None
    assert stored != resolved_spec_dict(after)
    problems = spec_differences(comparable_stored_spec(stored, after), resolved_spec_dict(after))
    assert [p for p, _ in problems] == ["data.params.jitter"]
    # the same version resumes; a spec stored without defaults (an older run) compares equal
    same = comparable_stored_spec(stored, before)
    assert spec_differences(same, resolved_spec_dict(before)) == []
    old_style = before.spec.model_dump(mode="json")
    assert (
        spec_differences(comparable_stored_spec(old_style, after), resolved_spec_dict(after)) == []
    )


def test_stored_spec_reads_back_to_the_same_resolved_spec(tmp_path):
    reg = fd.registry()
    resolved = load(RAW, registry=reg)
    run = _run_folder(tmp_path, {}, cwd=None)
    (run / "spec.yaml").write_text(dump_resolved_spec(resolved))
    again = load(run, registry=reg)
    assert resolved_spec_dict(again) == resolved_spec_dict(resolved)


# ------------------------------------------------------------------------ deprecated ways in


def test_deprecated_entry_points_warn_and_still_resolve(tmp_path):
    from aqa_framework.cli.spec_cmd import load_and_resolve
    from aqa_framework.experiments.sweep import SweepRun, resolve_run

    path = tmp_path / "spec.yaml"
    raw = {**RAW, "data": {"name": "synthetic-diving"}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.warns(DeprecationWarning, match="aqa_framework.resolve.load"):
        assert load_and_resolve(path, ["train.epochs=2"]).spec.train.epochs == 2
    with pytest.warns(DeprecationWarning, match="aqa_framework.resolve.load"):
        resolved = resolve_run(SweepRun("a", {}, raw), "s.yaml")
    assert resolved.source == "s.yaml [a]"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(path)


# ------------------------------------------------------------------------ open_data


def test_open_data_bundles_the_splits_a_run_needs():
    from torch.utils.data import Subset

    from aqa_framework.data.open import open_data

    resolved = load(
        RAW, ["data.params.num_samples=10", "data.val_fraction=0.2"], registry=fd.registry()
    )
    data = open_data(resolved)
    assert isinstance(data.train, Subset) and isinstance(data.val, Subset)
    assert data.sizes == {"train": 8, "val": 2, "test": 10}
    assert data.input_shape == (2, 3, 16, 32, 32) and data.split == "test"
    assert data.targets.scores and data.full is not None and data.full.train

    only = open_data(resolved, training=False, split="train")
    assert only.train is None and only.val is None and only.test.split == "train"
    assert only.sizes == {"train": 10} and not only.test.train
    from aqa_framework.errors import DataError

    with pytest.raises(DataError, match="has no split 'val'"):
        open_data(resolved, training=False, split="val")
