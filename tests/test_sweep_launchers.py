"""aqa sweep --launcher ray|slurm: points handed to submitit or Ray, recorded in the sweep."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from aqa_framework import testing
from aqa_framework.errors import AQAError
from aqa_framework.experiments.launchers import LauncherSpec, launch_points
from aqa_framework.experiments.sweep import load_sweep, run_sweep, sweep_status
from aqa_framework.registry import reset_registry

BASE = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {"name": "testing.tiny",
             "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32},
             "batch_size": 3},
    "train": {"epochs": 1},
}


@pytest.fixture
def sweep_file(tmp_path):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text("base: base.yaml\naxes:\n  seed: [0, 1]\n"
                    "launcher: {name: slurm, cluster: debug, time_min: 5}\n", encoding="utf-8")
    yield path
    reset_registry()


def test_slurm_launcher_records_points_and_resume_skips_them(sweep_file, tmp_path,
                                                             one_intra_op_thread):
    pytest.importorskip("submitit", reason="the 'slurm' extra (submitit) is not installed")
    sw = load_sweep(sweep_file)
    assert sw.file.launcher.name == "slurm" and sw.file.launcher.time_min == 5
    events = []
    statuses = run_sweep(sw, tmp_path / "out", on_event=lambda k, s: events.append(k))
    assert sorted(events) == ["done", "done", "start", "start"]
    assert all(s.state == "done" and "score.spearman" in s.metrics for s in statuses)
    assert [s.state for s in sweep_status(sw, tmp_path / "out")] == ["done", "done"]
    again = []
    run_sweep(sw, tmp_path / "out", on_event=lambda k, s: again.append(k))
    assert again == ["skip", "skip"]  # nothing redone


def test_missing_extra_is_named(tmp_path):
    for name, module in (("ray", "ray"), ("slurm", "submitit")):
        if importlib.util.find_spec(module) is not None:
            continue
        from aqa_framework.experiments.launchers import PointJob

        job = PointJob("a", {}, "a", str(tmp_path / "a"), False)
        with pytest.raises(AQAError, match=rf"pip install 'aqa-framework\[{name}\]'"):
            launch_points(LauncherSpec(name=name), [job], tmp_path, lambda j, p: None)

