import sys
import textwrap
import warnings

import fakeplugins as fp
import pytest

from aqa_framework.errors import PluginError, UnknownComponentError
from aqa_framework.plugins import PluginLoadWarning
from aqa_framework.registry import Registry


def make(eps, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        return Registry(entry_points=eps, **kw)


def test_third_party_plugin_registers_through_entry_point():
    reg = make([fp.FakeEntryPoint("skating", fp.skating)])
    entry = reg.entry("aggregator", "skating.mean")
    assert entry.cls is fp.SkatingMeanAggregator
    assert entry.plugin.distribution == "aqa-skating"
    assert entry.plugin.version == "1.2.3"
    assert entry.summary == "Averages clip features (a test plugin)."
    assert not reg.failed


def test_builtins_register_through_the_same_hooks():
    reg = make([])
    builtin = [p for p in reg.plugins if p.builtin]
    assert [p.name for p in builtin] == ["builtin"]
    assert builtin[0].distribution == "aqa-framework"
    for entry in reg.list_components():
        assert entry.plugin.builtin
        assert "." not in entry.name


def test_broken_import_is_recorded_and_everything_else_works():
    eps = [
        fp.FakeEntryPoint("broken", ImportError("No module named 'numpyy'"), dist="aqa-broken"),
        fp.FakeEntryPoint("skating", fp.skating),
    ]
    with pytest.warns(PluginLoadWarning, match="broken"):
        reg = Registry(entry_points=eps)
    assert [p.name for p in reg.failed] == ["broken"]
    assert "numpyy" in reg.failed[0].error
    assert reg.get("aggregator", "skating.mean") is fp.SkatingMeanAggregator


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    monkeypatch.setenv("AQA_PLUGINS_STRICT", "1")
    with pytest.raises(PluginError, match="broken.*failed to load"):
        Registry(entry_points=[fp.FakeEntryPoint("broken", RuntimeError("boom"))])


def test_misspelled_hook_is_rejected_with_the_hook_names():
    reg = make([fp.FakeEntryPoint("skating", fp.misspelled)])
    (failed,) = reg.failed
    assert "register_backbone" in failed.error
    assert "register_backbones" in failed.error


def test_hook_that_raises_is_recorded():
    reg = make([fp.FakeEntryPoint("skating", fp.raises)])
    assert "hook exploded" in reg.failed[0].error


def test_third_party_names_must_carry_the_plugin_prefix():
    reg = make([fp.FakeEntryPoint("skating", fp.unprefixed)])
    assert "must carry the plugin prefix 'skating.'" in reg.failed[0].error
    assert "mean2" not in reg.names("aggregator")


def test_params_must_forbid_extra_keys():
    reg = make([fp.FakeEntryPoint("skating", fp.loose)])
    assert "extra='forbid'" in reg.failed[0].error


def test_duplicate_entry_point_names_both_owners():
    eps = [
        fp.FakeEntryPoint("skating", fp.skating, dist="aqa-skating", version="1.0"),
        fp.FakeEntryPoint("skating", fp.skating, dist="skating-fork", version="2.0"),
    ]
    reg = make(eps)
    (failed,) = reg.failed
    assert "aqa-skating 1.0" in failed.error and "skating-fork 2.0" in failed.error
    assert reg.get("aggregator", "skating.mean") is fp.SkatingMeanAggregator


def test_duplicate_component_name_names_both_owners():
    class Twice:
        from aqa_framework import hookimpl

        @hookimpl
        def register_aggregators(self, register):
            register(fp.SkatingMeanAggregator)
            register(fp.SkatingMeanAggregator)

    reg = make([fp.FakeEntryPoint("skating", Twice())])
    msg = reg.failed[0].error
    assert "registered twice" in msg and msg.count("skating") >= 2


def test_allow_and_block_lists(monkeypatch):
    eps = [fp.FakeEntryPoint("skating", fp.skating)]
    monkeypatch.setenv("AQA_PLUGINS_BLOCK", "skat*")
    assert "skating.mean" not in make(eps).names("aggregator")
    monkeypatch.delenv("AQA_PLUGINS_BLOCK")
    monkeypatch.setenv("AQA_PLUGINS_ALLOW", "other")
    assert "skating.mean" not in make(eps).names("aggregator")
    monkeypatch.setenv("AQA_PLUGINS_ALLOW", "skating")
    assert "skating.mean" in make(eps).names("aggregator")


def test_unknown_name_suggests_close_matches_and_lists_failures():
    eps = [
        fp.FakeEntryPoint("skating", fp.skating),
        fp.FakeEntryPoint("broken", ImportError("nope"), dist="aqa-broken"),
    ]
    reg = make(eps)
    with pytest.raises(UnknownComponentError) as info:
        reg.get("aggregator", "skating.maen")
    msg = str(info.value)
    assert "Unknown aggregator 'skating.maen'. Did you mean 'skating.mean'?" in msg
    assert "Available:" in msg and "skating.mean" in msg
    assert "broken (ImportError: nope)" in msg


def test_list_components_pattern_and_kind():
    reg = make([fp.FakeEntryPoint("skating", fp.skating)])
    names = [e.name for e in reg.list_components("aggregator", "skating.*")]
    assert names == ["skating.mean"]
    assert reg.list_components("backbone", "skating.*") == []
    with pytest.raises(UnknownComponentError, match="Unknown component kind"):
        reg.list_components("bakbone")


def test_real_installed_distribution_is_discovered(tmp_path, monkeypatch):
    """A package on sys.path with an entry point in group 'aqa' is found and attributed."""
    pkg = tmp_path / "aqa_curling"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            '''
            from aqa_framework import hookimpl
            from fakeplugins import SkatingMeanAggregator

            class CurlingMeanAggregator(SkatingMeanAggregator):
                """Curling stones, averaged."""
                name = "curling.mean"

            @hookimpl
            def register_aggregators(register):
                register(CurlingMeanAggregator)
            '''
        )
    )
    dist = tmp_path / "aqa_curling-0.4.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aqa-curling\nVersion: 0.4.0\n")
    (dist / "entry_points.txt").write_text("[aqa]\ncurling = aqa_curling\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make(None)
    entry = reg.entry("aggregator", "curling.mean")
    assert (entry.plugin.distribution, entry.plugin.version) == ("aqa-curling", "0.4.0")
    sys.modules.pop("aqa_curling", None)


def test_registry_is_lazy_and_loaded_once(monkeypatch):
    import aqa_framework.registry as registry

    calls = []
    real = registry.Registry

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(registry, "Registry", counting)
    assert registry._default is None
    registry.get_registry()
    registry.get_registry()
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("raised", "shown"),
    [
        (SystemExit(3), "SystemExit: the plugin called sys.exit(3)"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (BaseException("odd"), "BaseException: odd"),
    ],
)
def test_plugin_that_exits_or_interrupts_at_import_is_a_broken_plugin(raised, shown):
    eps = [
        fp.FakeEntryPoint("quitter", raised, dist="aqa-quitter"),
        fp.FakeEntryPoint("skating", fp.skating),
    ]
    with pytest.warns(PluginLoadWarning, match="quitter"):
        reg = Registry(entry_points=eps)
    assert [(p.name, p.error) for p in reg.failed] == [("quitter", shown)]
    assert reg.get("aggregator", "skating.mean") is fp.SkatingMeanAggregator


def test_plugin_exit_is_fatal_in_strict_mode():
    with pytest.raises(PluginError, match=r"quitter.*failed to load.*sys.exit\(0\)"):
        Registry(entry_points=[fp.FakeEntryPoint("quitter", SystemExit(0))], strict=True)


def test_hook_that_calls_sys_exit_is_recorded():
    reg = make([fp.FakeEntryPoint("skating", fp.exits)])
    assert reg.failed[0].error == (
        "register_aggregators raised SystemExit: the plugin called sys.exit(2)"
    )


class _PressesCtrlC:
    """An entry point whose import is interrupted by a real SIGINT (the user's Ctrl-C)."""

    name, value = "slow", "fake:slow"
    dist = None

    def load(self):
        import os
        import signal
        import time

        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler interrupts this at once
        raise AssertionError("SIGINT did not interrupt the import")


def test_ctrl_c_pressed_while_plugins_load_still_interrupts():
    import signal

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        make([_PressesCtrlC()])
    assert signal.getsignal(signal.SIGINT) is before


def test_cli_names_a_plugin_that_exits_at_import(monkeypatch, capsys):
    import aqa_framework.plugins as plugins
    from aqa_framework.cli.main import main

    monkeypatch.setattr(
        plugins, "iter_entry_points", lambda: [fp.FakeEntryPoint("quitter", SystemExit(0))]
    )
    with pytest.raises(SystemExit) as info:
        main(["plugins", "list"])
    out, err = capsys.readouterr()
    assert info.value.code == 0
    assert "c3d" in out and "quitter" in out + err
