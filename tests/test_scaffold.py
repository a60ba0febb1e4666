"""``aqa plugins new``: names, files, CLI, and a scaffolded package that installs and passes its
own tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aqa_framework.cli.main import main
from aqa_framework.errors import AQAError
from aqa_framework.experiments.scaffold import create_plugin, package_names, render


def test_names_follow_the_conventions():
    names = package_names("figure-skating")
    assert names["dist"] == "aqa-figure-skating"
    assert names["package"] == "aqa_figure_skating"
    assert package_names("ski_jump")["dist"] == "aqa-ski-jump"


@pytest.mark.parametrize("bad", ["Skating", "1ski", "ski jump", "ski.jump", "ski-", ""])
def test_invalid_names_are_refused(bad):
    with pytest.raises(AQAError, match="must be lower case"):
        package_names(bad)


def test_reserved_names_are_refused():
    with pytest.raises(AQAError, match="reserved"):
        package_names("builtin")


def test_rendered_package_is_valid_python_with_the_entry_point():
    tomllib = pytest.importorskip("tomllib")
    files = render("skating")
    assert set(files) == {
        "pyproject.toml",
        "README.md",
        "spec.yaml",
        "src/aqa_skating/__init__.py",
        "src/aqa_skating/plugin.py",
        "src/aqa_skating/dataset.py",
        "src/aqa_skating/head.py",
        "tests/test_aqa_skating.py",
    }
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["entry-points"]["aqa"] == {"skating": "aqa_skating.plugin"}
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")
    assert 'name: ClassVar[str] = "skating.synthetic"' in files["src/aqa_skating/dataset.py"]
    assert "SYNTHETIC" in files["README.md"]


def test_cli_creates_the_package_and_refuses_to_overwrite(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins", "new", "skating", "--dir", str(tmp_path)])
    assert exit_info.value.code == 0
    assert (tmp_path / "aqa-skating" / "src" / "aqa_skating" / "plugin.py").is_file()
    assert "pip install -e ." in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins", "new", "skating", "--dir", str(tmp_path)])
    assert exit_info.value.code == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_scaffolded_package_installs_and_passes_its_own_tests(tmp_path):
    root = create_plugin("skating", tmp_path)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(root)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "AQA_PLUGINS_STRICT": "1"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root, env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout
