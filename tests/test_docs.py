"""The documentation: generated pages cover every hook, built-in component, spec key and
command; every snippet exists; the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import docgen  # docs/docgen/, on sys.path through conftest.py
import pytest
import yaml
from docgen.markdown import cell, plain
from pydantic import BaseModel

from aqa_framework import hookspecs
from aqa_framework.hookspecs import HOOKS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SNIPPET_RE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$', re.MULTILINE)


@pytest.fixture(scope="module")
def registry():
    return docgen.builtin_registry()


@pytest.fixture(scope="module")
def pages(registry):
    return docgen.generated_pages(registry, root=REPO)


def test_every_builtin_component_is_documented(registry, pages):
    assert docgen.documentation_problems(registry) == []
    catalog = pages["user-guide/catalog.md"]
    entries = registry.list_components()
    assert {e.kind for e in entries} == set(HOOKS), "every kind has built-in components"
    for entry in entries:
        section = docgen.component_section(entry)
        assert section in catalog
        assert f"{{#{docgen.component_anchor(entry.kind, entry.name)}}}" in section
        assert entry.summary and plain(entry.summary) in section
        for name, field in entry.cls.Params.model_fields.items():
            assert f"| `{name}` |" in section, f"{entry.name}: param {name} missing"
            assert field.description and cell(field.description) in section


def test_documentation_problems_names_undescribed_params():
    from pydantic import ConfigDict

    from aqa_framework import testing
    from aqa_framework.interfaces import Aggregator

    class Bare(Aggregator):
        name = "doc.bare"

        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            size: int = 3

        def forward(self, clip_features):
            return clip_features.mean(1)

    reg = testing.registry_with("doc", [Bare], builtins=False)
    problems = docgen.documentation_problems(reg)
    assert any("no summary" in p for p in problems)
    assert any("param 'size' has no description" in p for p in problems)


def test_every_hook_is_documented(registry, pages):
    page = pages["plugin-guide/hooks.md"]
    specs = {n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "aqa_spec")}
    assert specs == set(hookspecs.ALL_HOOKS), "ALL_HOOKS lists every hook specification"
    for hook in hookspecs.EXTENSION_HOOKS.values():
        assert f"## `{hook}`" in page
    assert "## Training events" in page and "`on_<event>(event)`" in page
    for kind, hook in HOOKS.items():
        summary = (getattr(hookspecs, hook).__doc__ or "").strip().splitlines()[0]
        assert f"## `{hook}`" in page and plain(summary) in page
        for entry in registry.list_components(kind):
            assert f"#{docgen.component_anchor(kind, entry.name)})" in page


def _spec_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        ann = field.annotation
        args = typing.get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _spec_keys(ann, key + ".")
        elif (
            typing.get_origin(ann) is dict
            and isinstance(args[1], type)
            and issubclass(args[1], BaseModel)
        ):
            keys += _spec_keys(args[1], key + ".<task>.")
    return keys


def test_spec_reference_covers_every_key(pages):
    from aqa_framework.spec import Spec

    page = pages["user-guide/spec-reference.md"]
    keys = _spec_keys(Spec)
    assert "model.heads.<task>.loss_weight" in keys and "train.optimizer.lr" in keys
    for key in keys:
        assert f"| `{key}` |" in page, f"spec key {key} is not documented"


def test_cli_reference_covers_every_command_and_option(pages):
    import typer.main

    from aqa_framework.cli.main import app

    page = pages["user-guide/cli-reference.md"]
    root = typer.main.get_command(app)

    def walk(cmd, path):
        yield cmd, path
        for name in getattr(cmd, "commands", {}):
            yield from walk(cmd.commands[name], f"{path} {name}")

    seen = 0
    for cmd, path in walk(root, "aqa"):
        seen += 1
        assert f"## `{path}`" in page, f"command {path} is not documented"
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert opt in page
    assert seen >= 10
    assert "## `aqa plugins new`" in page


def test_reproducing_page_has_every_table4_spec(pages):
    page = pages["reproducing.md"]
    specs = sorted((REPO / "examples" / "table4").glob("*.yaml"))
    assert len(specs) == 8
    for spec in specs:
        assert f'--8<-- "examples/table4/{spec.name}"' in page
        assert f"aqa run examples/table4/{spec.name}" in page
    for value in ("89.60", "89.62", "88.78", "90.44", "84.72", "85.76", "85.47", "86.12"):
        assert value in page


def _nav_files(nav) -> list[str]:
    out = []
    for item in nav:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                out += _nav_files(value) if isinstance(value, list) else [value]
    return out


def test_nav_and_snippets_point_at_real_files(pages):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    for path in _nav_files(config["nav"]):
        assert (DOCS / path).is_file() or path in pages, f"nav entry {path} has no page"
    texts = [p.read_text() for p in DOCS.rglob("*.md")] + list(pages.values())
    included = {m for text in texts for m in SNIPPET_RE.findall(text)}
    assert "examples/aqa-gymnastics/src/aqa_gymnastics/d_plus_e_head.py" in included
    for rel in included:
        assert (REPO / rel).is_file(), f"snippet {rel} does not exist"


def test_tutorial_includes_the_example_plugin_instead_of_copies():
    tutorial = (DOCS / "plugin-guide" / "tutorial.md").read_text()
    package = REPO / "examples" / "aqa-gymnastics"
    for rel in ("pyproject.toml", "vault.yaml", "src/aqa_gymnastics/plugin.py",
                "src/aqa_gymnastics/vault_dataset.py", "src/aqa_gymnastics/d_plus_e_head.py"):
        assert (package / rel).is_file()
        assert f'--8<-- "examples/aqa-gymnastics/{rel}"' in tutorial
    assert "class VaultSyntheticDataset" not in tutorial  # shown through the snippet only


@pytest.mark.slow
def test_site_builds_strict_with_navigation_search_and_api(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="needs the docs extra: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    home = (site / "index.html").read_text()
    for target in ("getting-started/", "plugin-guide/tutorial/", "user-guide/catalog/",
                   "reproducing/", "api/aqa_framework.testing/", "changelog/"):
        assert f'href="{target}"' in home, f"navigation lacks {target}"
    index = json.loads((site / "search" / "search_index.json").read_text())
    locations = {d["location"] for d in index["docs"]}
    assert "plugin-guide/tutorial/" in locations and "user-guide/catalog/#backbone-c3d" in locations
    api = (site / "api" / "aqa_framework.testing" / "index.html").read_text()
    assert "check_head" in api and "Round-trip a head" in api
    tutorial = (site / "plugin-guide" / "tutorial" / "index.html").read_text()
    assert "VaultSyntheticDataset" in tutorial and "entry-points" in tutorial
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Keep a Changelog" in changelog


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml[^\n]*\n(.*?)```", text, re.DOTALL)


def test_yaml_shown_in_the_docs_validates():
    """Spec fragments written in the pages (not included from files) are checked too."""
    from aqa_framework.registry import Registry
    from aqa_framework.spec import DataSpec, ModelSpec

    registry = Registry()
    checked = 0
    for page in DOCS.rglob("*.md"):
        for block in _yaml_blocks(page.read_text()):
            if "--8<--" in block:
                continue  # included from a file that other tests validate
            raw = yaml.safe_load(block)
            if not isinstance(raw, dict):
                continue
            if "data" in raw:
                data = DataSpec.model_validate(raw["data"])
                registry.get("dataset", data.name).parse_params(data.params)
                checked += 1
            if "model" in raw:
                model = ModelSpec.model_validate(raw["model"])
                for kind, comp in (("backbone", model.backbone), ("aggregator", model.aggregator)):
                    registry.get(kind, comp.name).parse_params(comp.params)
                for head in model.heads.values():
                    registry.get("head", head.name).parse_params(head.params)
                checked += 1
    assert checked >= 2
