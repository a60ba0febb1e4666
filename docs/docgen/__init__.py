"""Reference pages generated from the code: spec, CLI, component catalog, hooks, API, paper.

The documentation site calls :func:`generated_pages` at build time (``docs/hooks.py``), so
these pages can never drift from the pydantic models, the typer app, the registry and the
example specs. Every function returns Markdown (mkdocs-material flavour).

This package is part of the repository, not of the installed ``aqa_framework``: it lives in
``docs/docgen/``, is imported as ``docgen`` with ``docs/`` on ``sys.path`` (the docs hook and
the tests put it there), and finds the repository through its own path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docgen.api import api_file, api_index, api_nav, api_page, available_api_modules
from docgen.components import (
    KIND_TITLES,
    builtin_registry,
    catalog,
    component_anchor,
    component_section,
    hook_reference,
)
from docgen.paper import reproducing_page
from docgen.reference import cli_reference, spec_reference

__all__ = [
    "KIND_TITLES",
    "api_nav",
    "builtin_registry",
    "catalog",
    "cli_reference",
    "component_anchor",
    "component_section",
    "documentation_problems",
    "generated_pages",
    "hook_reference",
    "reproducing_page",
    "spec_reference",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``docs/docgen/__init__.py`` -> ``.`` (holds ``docs/`` and ``examples/``)."""


def documentation_problems(registry: Any = None) -> list[str]:
    """Components whose generated documentation would be incomplete.

    Args:
        registry: Registry to check; defaults to the built-in registry.

    Returns:
        One message per missing summary or undescribed parameter (empty when all is well):
        the problems :func:`aqa_framework.kinds.component_problems` finds.
    """
    from aqa_framework.kinds import component_problems

    registry = registry or builtin_registry()
    return [
        f"{entry.kind} '{entry.name}' ({entry.qualname}): {problem}"
        for entry in registry.list_components()
        for problem in component_problems(entry.cls, entry.kind)
    ]


def generated_pages(registry: Any = None, root: str | Path | None = None) -> dict[str, str]:
    """Every generated page, keyed by its path under ``docs/``.

    Args:
        registry: Registry for the catalog and hook pages; defaults to the built-ins.
        root: Repository root holding ``examples/``; defaults to this checkout.

    Returns:
        Path (e.g. ``user-guide/catalog.md``) -> Markdown.
    """
    registry = registry or builtin_registry()
    root = Path(root) if root is not None else REPO_ROOT
    modules = available_api_modules()
    pages = {
        "user-guide/spec-reference.md": spec_reference(),
        "user-guide/cli-reference.md": cli_reference(),
        "user-guide/catalog.md": catalog(registry),
        "plugin-guide/hooks.md": hook_reference(registry),
        "reproducing.md": reproducing_page(root),
        "api/index.md": api_index(modules),
    }
    for module, title in modules:
        pages[api_file(module)] = api_page(module, title)
    return pages
