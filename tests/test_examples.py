"""Every YAML file under examples/ validates: run specs and data files resolve (and build where
their data is available), sweep files expand into valid runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aqa_framework.registry import Registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*.yaml") if "build" not in p.parts)
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Datasets whose spec points at release files; the build uses the copies in ../shared/data
# (annotations only: opening a split and building on the meta device reads no video).
# Keyed by the spec's data.params.root: several specs read other variants of one dataset.
RELEASE_ROOTS = {
    "data/mtl-aqa": "mtl-aqa/MTL-AQA_split_0_data",
    "data/musdl-mtl-aqa": "musdl-mtl-aqa",
    "data/core-mtl-aqa": "core-mtl-aqa",
    "data/aqa-7": "aqa-7",
    "data/jigsaws/info": "jigsaws",
    "data/rhythmic-gymnastics": "rhythmic-gymnastics",
    "data/epic-skills/EPIC-Skills2018": "epic-skills/EPIC-Skills2018",
    "data/best": "best",
}


def _shared() -> Path:
    import os

    return Path(os.environ.get("AQA_SHARED_DATA", SHARED))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _kind(raw: dict) -> str:
    if "base" in raw and "axes" in raw:
        return "sweep"
    if "model" in raw:
        return "spec"
    if set(raw) == {"data"}:
        return "data"
    return "unknown"


def _needs_missing_plugin(names: list[str], registry: Registry) -> str | None:
    known = {e.name for e in registry.list_components()}
    missing = sorted(n for n in names if "." in n and n not in known)
    if missing:
        return f"needs the plugin components {', '.join(missing)} (install the example plugin)"
    return None


def _component_names(raw: dict) -> list[str]:
    model = raw.get("model", {})
    names = [model.get("backbone", {}).get("name", ""), model.get("aggregator", {}).get("name", "")]
    names += [h.get("name", "") for h in (model.get("heads") or {}).values() if h]
    names.append(raw.get("data", {}).get("name", ""))
    return [n for n in names if n]


def test_examples_exist():
    kinds = {_kind(yaml.safe_load(p.read_text())) for p in EXAMPLES}
    assert {"spec", "sweep"} <= kinds, "examples/ should hold run specs and sweeps"
    assert "unknown" not in kinds


@pytest.mark.parametrize("path", EXAMPLES, ids=_rel)
def test_example_validates(path):
    from aqa_framework.resolve import load

    registry = Registry()
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    kind = _kind(raw)
    if kind == "sweep":
        from aqa_framework.experiments.sweep import expand, load_sweep, run_label

        sweep = load_sweep(path)
        base = yaml.safe_load(sweep.base_path.read_text(encoding="utf-8"))
        reason = _needs_missing_plugin(_component_names(base), registry)
        if reason:
            pytest.skip(reason)
        runs = expand(sweep)
        assert runs
        for run in runs:
            load(run.raw, registry=registry, label=run_label(run, _rel(path)))
        return
    if kind == "data":
        from aqa_framework.spec import DataSpec

        data = DataSpec.model_validate(raw["data"])
        registry.get("dataset", data.name).parse_params(data.params)
        return

    reason = _needs_missing_plugin(_component_names(raw), registry)
    if reason:
        pytest.skip(reason)
    resolved = load(path, registry=registry, label=_rel(path))
    assert resolved.heads


def _buildable() -> list[Path]:
    out = []
    for path in EXAMPLES:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if _kind(raw) == "spec":
            out.append(path)
    return out


@pytest.mark.parametrize("path", _buildable(), ids=_rel)
def test_example_builds_where_its_data_is_available(path, tmp_path):
    """Open the train split and assemble the model on the meta device (aqa validate)."""
    from aqa_framework.builder import check_spec
    from aqa_framework.resolve import load

    registry = Registry()
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    reason = _needs_missing_plugin(_component_names(raw), registry)
    if reason:
        pytest.skip(reason)
    dataset = raw["data"]["name"]
    spec_root = (raw["data"].get("params") or {}).get("root")
    overrides = []
    pretrained = (raw["model"]["backbone"].get("params") or {}).get("pretrained")
    if pretrained and not Path(pretrained).is_file():  # weights are not shipped: build without
        overrides.append("model.backbone.params.pretrained=null")
    release = spec_root in RELEASE_ROOTS
    if release:
        root = _shared() / RELEASE_ROOTS[spec_root]
        if not root.is_dir():
            pytest.skip(f"release files for '{dataset}' not found at {root}")
        overrides.append(f"data.params.root={root.resolve()}")
    elif dataset == "synthetic-diving":  # generated on first use: keep it to 8 dives here
        overrides += [
            f"data.params.root={tmp_path / 'synthetic'}",
            "data.params.dives=8",
            "data.params.dives_per_event=4",
        ]
    elif dataset == "synthetic-jigsaws":
        overrides += [
            f"data.params.root={tmp_path / 'synthetic'}",
            "data.params.trials_per_task=12",
        ]
    elif dataset == "synthetic-routines":
        overrides += [f"data.params.root={tmp_path / 'synthetic'}", "data.params.routines=16"]
    elif dataset == "finediving":  # its annotation files are not redistributed: a tiny fake
        from test_data_finediving import write_finediving

        overrides.append(f"data.params.root={write_finediving(tmp_path / 'finediving')}")
    elif dataset in {"mtl-aqa", "aqa-7", "jigsaws", "rhythmic-gymnastics"}:
        pytest.fail(f"{_rel(path)}: root {spec_root!r} is not mapped to ../shared/data here")
    resolved = load(path, overrides, registry=registry, label=_rel(path))
    # the release copies hold annotations only: no video to check the samples against
    report = check_spec(resolved, samples=not release)
    assert "parameters" in report
