"""``aqa runs list`` / ``aqa runs compare``, and commands that plugins add to ``aqa``."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from aqa_framework import hookimpl, testing
from aqa_framework.cli import commands
from aqa_framework.cli.main import main
from aqa_framework.engine import runner
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 4,
        "val_fraction": 0.25,
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}},
    "seed": 5,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    parent = tmp_path_factory.mktemp("runs")
    for name, lr in (("slow", 0.001), ("fast", 0.01)):
        raw = copy.deepcopy(RAW)
        raw["train"]["optimizer"]["lr"] = lr
        runner.run_training(resolve(parse_spec(raw), source="tiny.yaml"), run_dir=parent / name)
    (parent / "not-a-run").mkdir()
    yield parent
    reset_registry(None)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from aqa_framework.cli import console

    monkeypatch.setattr(console.out, "_width", 250)


def cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_runs_list_shows_status_epochs_and_final_metrics(runs, capsys):
    code, out, _ = cli(capsys, "runs", "list", str(runs))
    assert code == 0
    assert "fast" in out and "slow" in out and "not-a-run" not in out
    assert out.count("finished") == 2 and "2/2" in out and "score.spearman" in out
    fast = json.loads((runs / "fast" / "results.json").read_text())["metrics"]
    assert f"{fast['score.spearman']:.4f}" in out


def test_runs_compare_tables_spec_differences_and_metrics_and_plots_curves(runs, capsys, tmp_path):
    plot = tmp_path / "curves.svg"
    code, out, _ = cli(
        capsys, "runs", "compare", str(runs / "slow"), str(runs / "fast"), "--plot", str(plot)
    )
    assert code == 0, out
    assert "train.optimizer.lr" in out and "0.001" in out and "0.01" in out
    assert "output.name" not in out and "model.backbone.name" not in out  # only differences
    slow = json.loads((runs / "slow" / "results.json").read_text())["metrics"]
    assert "score.pearson" in out and f"{slow['score.pearson']:.4f}" in out
    svg = plot.read_text()
    assert svg.lstrip().startswith("<?xml") and "slow (val)" in svg and "fast (val)" in svg
    assert "Curves of score.spearman (2 run(s))" in out


def test_runs_compare_names_a_folder_that_is_no_run(runs, capsys):
    code, _, err = cli(capsys, "runs", "compare", str(runs / "not-a-run"))
    assert code == 1 and "not-a-run is not a run folder (no spec.yaml)" in err


def fake_entry_point(name, plugin):
    return SimpleNamespace(
        name=name,
        value=f"{name}.plugin",
        load=lambda: plugin,
        dist=SimpleNamespace(metadata={"Name": f"aqa-{name}"}, version="1.0"),
    )


def greet(who: str = "world") -> None:
    """Say hello."""
    print(f"hello {who}")


def test_a_plugin_command_is_listed_with_its_plugin_and_loaded_only_when_run(monkeypatch, capsys):
    loaded = []

    def load_target():
        loaded.append(True)
        return greet

    @hookimpl
    def register_commands(register):
        register("curling", f"{__name__}:greet", help="Curling tools.")

    plugin = SimpleNamespace(register_commands=register_commands)
    found = commands.plugin_commands([fake_entry_point("curling", plugin)])
    assert list(found) == ["curling"]
    cmd = found["curling"]
    assert cmd.label == "plugin curling, aqa-curling"
    assert "Curling tools. (plugin curling, aqa-curling)" in cmd.placeholder().short_help

    monkeypatch.setattr(commands, "plugin_commands", lambda entry_points=None: found)
    monkeypatch.setattr(commands.PluginCommandsGroup, "_plugins", None)
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "curling" in out and "Plugin commands" in out
    code, out, _ = cli(capsys, "curling", "--who", "ice")
    assert code == 0 and "hello ice" in out


def test_a_plugin_command_must_carry_the_plugin_name():
    @hookimpl
    def register_commands(register):
        register("run-fast", greet)

    plugin = SimpleNamespace(register_commands=register_commands)
    with pytest.raises(Exception, match="command 'run-fast' must be named 'curling'"):
        commands.plugin_commands([fake_entry_point("curling", plugin)])
