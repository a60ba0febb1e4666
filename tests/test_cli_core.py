import json
import subprocess
import sys

import pytest

from aqa_framework.cli.main import main

SPEC = """
model:
  backbone: {name: c3dd}
  heads:
    score: {name: score}
data: {name: mtl-aqa}
"""


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("aqa-framework ")


def test_plugins_list_json_is_stable(capsys):
    code, out, _ = run_cli(capsys, "plugins", "list", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["python"] == sys.executable
    kinds = {c["kind"] for c in doc["components"]}
    assert kinds == {"backbone", "aggregator", "head", "dataset"}
    for comp in doc["components"]:
        assert set(comp) == {
            "kind", "name", "summary", "plugin", "distribution", "version", "class"
        }
        assert comp["summary"], comp
    builtin = [p for p in doc["plugins"] if p["name"] == "builtin"]
    assert builtin and builtin[0]["distribution"] == "aqa-framework"
    # sorted by kind order then name: stable across runs
    code2, out2, _ = run_cli(capsys, "plugins", "list", "--json")
    assert out2 == out


def test_plugins_list_table_groups_by_kind(capsys):
    code, out, _ = run_cli(capsys, "plugins", "list")
    assert code == 0
    for name in ("c3d", "average", "score", "mtl-aqa"):
        assert name in out
    assert "aqa-framework" in out and "Python:" in out


def test_plugins_show_lists_params(capsys):
    code, out, _ = run_cli(capsys, "plugins", "show", "c3d", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "backbone" and doc["params"]
    assert all(p["description"] for p in doc["params"])
    code, out, err = run_cli(capsys, "plugins", "show", "c3dd")
    assert code == 1 and "Did you mean 'c3d'" in err


def test_validate_unknown_backbone_is_one_clear_line(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC)
    code, out, err = run_cli(capsys, "validate", str(spec))
    assert code == 1
    assert "model.backbone.name" in err and "Did you mean 'c3d'" in err
    assert "Traceback" not in err + out


def test_validate_unknown_param_full_path(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    bad = SPEC.replace("c3dd", "c3d").replace("{name: score}", "{name: score, params: {hiden: 3}}")
    spec.write_text(bad)
    code, _, err = run_cli(capsys, "validate", str(spec), "--no-build")
    assert code == 1 and "model.heads.score.params.hiden: unknown key" in err


def test_debug_env_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("AQA_DEBUG", "1")
    with pytest.raises(Exception, match="spec file not found"):
        main(["validate", str(tmp_path / "missing.yaml")])


def test_spec_schema_and_show(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "spec", "schema")
    assert code == 0 and json.loads(out)["title"] == "aqa-framework run spec"
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("c3dd", "c3d"))
    code, out, _ = run_cli(capsys, "spec", "show", str(spec), "--set", "train.epochs=7")
    assert code == 0 and "epochs: 7" in out and "optimizer:" in out


def test_help_is_fast_and_imports_neither_torch_nor_plugins():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys; from aqa_framework.cli.main import main; sys.argv=['aqa','--help']; main()"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
    assert not any(m.startswith("aqa_builtin") for m in imported)
    assert not any(m.startswith("decord") or m.startswith("pycocoevalcap") for m in imported)


def test_errors_from_dataloader_workers_are_shown_with_their_own_message():
    from torch._utils import ExceptionWrapper

    from aqa_framework.errors import DataError, user_message

    def reraised(exc):
        try:
            raise exc
        except Exception:
            wrapper = ExceptionWrapper(where="in DataLoader worker process 1")
        with pytest.raises(type(exc)) as info:
            wrapper.reraise()
        return info.value

    worker = reraised(DataError("2 bad sample(s):\n  sample 01_02: video not found"))
    assert "Traceback" in str(worker)
    assert user_message(worker) == "2 bad sample(s):\n  sample 01_02: video not found"
    assert user_message(reraised(ValueError("crop too large"))) == "crop too large"
    assert user_message(DataError("plain")) == "plain"
