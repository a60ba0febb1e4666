"""`aqa plugins list` and `show` for callbacks, trackers and commands, not only components."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import fakeplugins as fp
import pytest
from pydantic import BaseModel, ConfigDict, Field

import aqa_framework.plugins as plugins
from aqa_framework import hookimpl
from aqa_framework.cli.main import main
from aqa_framework.engine.events import Callback
from aqa_framework.extensions import list_extensions, load_plugins
from aqa_framework.registry import Registry
from aqa_framework.tracking import Tracker


class CurlingStonesCallback(Callback):
    """Counts the stones thrown per epoch (a test callback)."""

    name = "curling.stones"

    def on_epoch_end(self, event):
        pass


class CurlingLedgerCallback(Callback):
    """Writes every run to the club ledger (a test callback that always runs)."""

    name = "curling.ledger"
    always = True
    all_ranks = True

    def on_run_start(self, event):
        pass

    def on_run_end(self, event):
        pass


class CurlingBoardTracker(Tracker):
    """Sends the metrics to the club scoreboard (a test tracker)."""

    name = "curling.board"
    requires = ("curling_scoreboard_client_absent",)
    extra = "curling-board"

    class Params(BaseModel):
        """Scoreboard parameters."""

        model_config = ConfigDict(extra="forbid")
        url: str = Field("http://localhost:8080", description="Scoreboard address.")

    def on_epoch_end(self, event):
        pass


class _Curling:
    @hookimpl
    def register_callbacks(self, register):
        register(CurlingStonesCallback)
        register(CurlingLedgerCallback)

    @hookimpl
    def register_trackers(self, register):
        register(CurlingBoardTracker)

    @hookimpl
    def register_commands(self, register):
        # a module that does not exist: listing or showing must never import the target
        register("curling", "curling_cli_never_imported:app", help="Curling tools.")


class _BadCallbacks:
    @hookimpl
    def register_callbacks(self, register):
        register(dict)

    @hookimpl
    def register_aggregators(self, register):
        register(fp.SkatingMeanAggregator)


def install(monkeypatch, *entry_points):
    """Make these the installed plugins (the registry is fresh in every test)."""
    monkeypatch.setattr(plugins, "iter_entry_points", lambda: list(entry_points))


def curling():
    return fp.FakeEntryPoint("curling", _Curling(), dist="aqa-curling", version="2.0")


def cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_list_json_has_callbacks_trackers_and_commands_with_their_plugin(monkeypatch, capsys):
    install(monkeypatch, curling())
    code, out, err = cli(capsys, "plugins", "list", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {c["kind"] for c in doc["components"]} == {"backbone", "aggregator", "head", "dataset"}
    callbacks = {c["name"]: c for c in doc["callbacks"]}
    assert list(callbacks) == ["curling.ledger", "curling.stones"]  # sorted by name
    ledger, stones = callbacks["curling.ledger"], callbacks["curling.stones"]
    assert ledger["always"] is True and ledger["all_ranks"] is True
    assert ledger["use"] == "every run (always)"
    assert stones["always"] is False and stones["use"] == "opt-in (spec callbacks:)"
    assert stones["summary"] == "Counts the stones thrown per epoch (a test callback)."
    assert stones["class"] == f"{__name__}:CurlingStonesCallback"
    assert (stones["plugin"], stones["distribution"], stones["version"]) == (
        "curling", "aqa-curling", "2.0"
    )
    assert stones["builtin"] is False

    trackers = {t["name"]: t for t in doc["trackers"]}
    assert {"csv", "mlflow", "tensorboard", "curling.board"} <= set(trackers)
    assert trackers["csv"]["builtin"] is True and trackers["csv"]["distribution"] == "aqa-framework"
    board = trackers["curling.board"]
    assert board["missing"] == ["curling_scoreboard_client_absent"]
    assert board["use"] == "opt-in (spec track:); needs pip install curling-board"

    assert doc["commands"] == [
        {
            "kind": "command", "name": "curling", "summary": "Curling tools.",
            "plugin": "curling", "distribution": "aqa-curling", "version": "2.0",
            "builtin": False, "use": "aqa curling", "target": "curling_cli_never_imported:app",
        }
    ]
    assert doc["problems"] == []
    assert "curling_cli_never_imported" not in sys.modules


def test_list_table_shows_provider_builtin_marker_and_always(monkeypatch, capsys):
    install(monkeypatch, curling())
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(capsys, "plugins", "list")
    assert code == 0, err
    assert "Registered components" in out and "Callbacks, trackers and commands" in out
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") == 6}
    assert "every run (always)" in rows["curling.ledger"]
    assert "aqa-curling 2.0" in rows["curling.ledger"]
    assert "opt-in (spec callbacks:)" in rows["curling.stones"]
    assert "aqa-framework" in rows["csv"] and "(built-in)" in rows["csv"]
    assert "(built-in)" not in rows["curling.board"]
    assert "aqa curling" in rows["curling"] and "Curling tools." in rows["curling"]


@pytest.mark.parametrize("kind", ["callback", "callbacks"])
def test_kind_filter_and_pattern_apply_to_the_new_kinds(monkeypatch, capsys, kind):
    install(monkeypatch, curling())
    code, out, _ = cli(capsys, "plugins", "list", "curling.s*", "--kind", kind, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["components"] == [] and doc["trackers"] == []
    assert [c["name"] for c in doc["callbacks"]] == ["curling.stones"]
    assert doc["commands"] == []
    code, out, _ = cli(capsys, "plugins", "list", "--kind", "trackers")
    assert code == 0 and "curling.board" in out and "Registered components" not in out
    assert "curling.stones" not in out
    code, out, _ = cli(capsys, "plugins", "list", "--kind", "heads", "--json")
    doc = json.loads(out)
    assert {c["kind"] for c in doc["components"]} == {"head"} and doc["callbacks"] == []
    code, _, err = cli(capsys, "plugins", "list", "--kind", "callbak")
    assert code == 1 and "Unknown kind 'callbak'" in err and "callback, tracker, command" in err


def test_show_a_callback_a_tracker_and_a_command(monkeypatch, capsys):
    install(monkeypatch, curling())
    code, out, err = cli(capsys, "plugins", "show", "curling.ledger", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "callback" and doc["always"] is True
    assert doc["events"] == ["run_start", "run_end"]
    assert "test_plugins_list_kinds.py:" in doc["source"]
    code, out, _ = cli(capsys, "plugins", "show", "curling.stones")
    assert "callback curling.stones - Counts the stones thrown per epoch" in out
    assert "provided by: aqa-curling 2.0 (plugin curling)" in out
    assert "runs: only when a spec names it (callbacks: [curling.stones]), on rank 0 only" in out
    assert "events: epoch_end" in out

    code, out, _ = cli(capsys, "plugins", "show", "curling.board")
    assert code == 0 and "tracker curling.board - Sends the metrics" in out
    assert "not installed: pip install curling-board" in out and "Scoreboard address." in out
    code, out, _ = cli(capsys, "plugins", "show", "csv")
    assert "provided by: aqa-framework" in out and "built-in plugin" in out

    code, out, _ = cli(capsys, "plugins", "show", "curling", "--json")
    doc = json.loads(out)
    assert doc["kind"] == "command" and doc["target"] == "curling_cli_never_imported:app"
    code, out, _ = cli(capsys, "plugins", "show", "curling")
    assert "use: aqa curling --help" in out
    assert "curling_cli_never_imported" not in sys.modules


def test_show_unknown_name_lists_near_matches_of_every_kind(monkeypatch, capsys):
    install(monkeypatch, curling())
    code, out, err = cli(capsys, "plugins", "show", "curling.stone")
    assert code == 1 and out == ""
    assert "Unknown name 'curling.stone'" in err
    assert "Did you mean 'curling.stones' (callback)" in err
    assert "aqa plugins list" in err
    code, _, err = cli(capsys, "plugins", "show", "curling.bord", "--kind", "tracker")
    assert code == 1 and "Unknown tracker 'curling.bord'. Did you mean 'curling.board'?" in err
    assert "Available: csv, curling.board, mlflow, tensorboard." in err
    code, _, err = cli(capsys, "plugins", "show", "c3dd")
    assert code == 1 and "Did you mean 'c3d' (backbone)?" in err


def test_a_bad_registration_is_named_and_the_rest_is_listed(monkeypatch, capsys):
    bad = fp.FakeEntryPoint("skating", _BadCallbacks())
    install(monkeypatch, curling(), bad)
    code, out, err = cli(capsys, "plugins", "list", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["callbacks"] == [] and len(doc["problems"]) == 1
    assert doc["problems"][0].startswith("callbacks: plugin 'skating' (aqa-skating 1.2.3)")
    assert "register_callbacks got <class 'dict'>" in doc["problems"][0]
    assert "curling.board" in {t["name"] for t in doc["trackers"]}
    assert "skating.mean" in {c["name"] for c in doc["components"]}
    code, out, _ = cli(capsys, "plugins", "list")
    assert "Registrations that failed:" in out and "register_callbacks got" in out


def test_list_extensions_api(monkeypatch):
    reg = Registry(entry_points=[curling()])
    listing = list_extensions(reg, ["tracker", "callback"], "curling.*")
    assert [(e.kind, e.name) for e in listing.entries] == [
        ("callback", "curling.ledger"), ("callback", "curling.stones"),
        ("tracker", "curling.board"),
    ]
    assert listing.entries[-1].install == "pip install curling-board"
    commands = list_extensions(load_plugins([curling()]), ["command"]).entries
    assert [(c.name, c.provider) for c in commands] == [("curling", "aqa-curling 2.0")]
    with pytest.raises(ValueError, match="unknown extension kind"):
        list_extensions(reg, ["head"])


def test_listing_commands_imports_neither_torch_nor_components():
    script = textwrap.dedent(
        """
        import sys
        from types import SimpleNamespace
        import aqa_framework.plugins as plugins
        from aqa_framework import hookimpl
        from aqa_framework.cli.main import main

        @hookimpl
        def register_commands(register):
            register("curling", "curling_cli_never_imported:app", help="Curling tools.")

        ep = SimpleNamespace(
            name="curling", value="curling.plugin",
            load=lambda: SimpleNamespace(register_commands=register_commands),
            dist=SimpleNamespace(metadata={"Name": "aqa-curling"}, version="2.0"),
        )
        plugins.iter_entry_points = lambda: [ep]
        for args in (["list", "-k", "commands", "--json"], ["show", "curling", "-k", "command"]):
            try:
                main(["plugins", *args])
            except SystemExit as exc:
                assert not exc.code, exc.code
        """
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = json.loads(proc.stdout[: proc.stdout.index("command curling")])
    assert [c["name"] for c in listed["commands"]] == ["curling"]
    assert "target: curling_cli_never_imported:app" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
    assert not any(m.startswith("aqa_builtin") for m in imported)
    assert "curling_cli_never_imported" not in imported


def test_the_example_plugin_lists_its_callback_and_command(capsys):
    pytest.importorskip("aqa_gymnastics", reason="example plugin aqa-gymnastics not installed")
    code, out, err = cli(capsys, "plugins", "list", "gymnastics*", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [(c["name"], c["use"]) for c in doc["callbacks"]] == [
        ("gymnastics.podium", "opt-in (spec callbacks:)")
    ]
    assert doc["callbacks"][0]["distribution"] == "aqa-gymnastics"
    assert [(c["name"], c["target"]) for c in doc["commands"]] == [
        ("gymnastics", "aqa_gymnastics.cli:app")
    ]
    code, out, _ = cli(capsys, "plugins", "show", "gymnastics.podium")
    assert code == 0 and "aqa_gymnastics.callbacks:PodiumCallback" in out
    assert "events: run_end" in out
