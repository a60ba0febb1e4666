"""The API reference pages: one mkdocstrings page per public module."""

from __future__ import annotations

import importlib.util

API_MODULES: tuple[tuple[str, str], ...] = (
    ("aqa_framework", "Package"),
    ("aqa_framework.interfaces", "Interfaces"),
    ("aqa_framework.component", "Component identity"),
    ("aqa_framework.targets", "Targets"),
    ("aqa_framework.hookspecs", "Hook specifications"),
    ("aqa_framework.kinds", "Component kinds"),
    ("aqa_framework.registry", "Registry"),
    ("aqa_framework.plugins", "Plugin loading"),
    ("aqa_framework.extensions", "Plugin extensions: callbacks, trackers, commands"),
    ("aqa_framework.spec", "Spec"),
    ("aqa_framework.resolve", "Spec resolution"),
    ("aqa_framework.builder", "Builder"),
    ("aqa_framework.data.open", "Opening the data"),
    ("aqa_framework.data.padding", "Padding sequences of different lengths"),
    ("aqa_framework.model", "Multitask model"),
    ("aqa_framework.metrics", "Metrics"),
    ("aqa_framework.engine.runner", "Engine: training"),
    ("aqa_framework.engine.inference", "Engine: inference"),
    ("aqa_framework.engine.checkpoint", "Engine: checkpoints"),
    ("aqa_framework.experiments", "Experiment tools"),
    ("aqa_framework.experiments.sweep", "Experiments: sweeps"),
    ("aqa_framework.experiments.probe", "Experiments: layer probes"),
    ("aqa_framework.experiments.features", "Experiments: feature extraction"),
    ("aqa_framework.testing", "Test-kit"),
    ("aqa_framework.testing.plugin", "Test-kit: pytest fixtures"),
    ("aqa_framework.experiments.scaffold", "Experiments: plugin scaffold"),
    ("aqa_framework.errors", "Errors"),
)
"""Module -> page title, in navigation order; modules that do not exist are skipped."""


def available_api_modules() -> list[tuple[str, str]]:
    """The modules of :data:`API_MODULES` that exist in this installation."""
    found = []
    for module, title in API_MODULES:
        try:
            if importlib.util.find_spec(module) is not None:
                found.append((module, title))
        except ModuleNotFoundError:
            continue
    return found


def api_file(module: str) -> str:
    """The docs path of a module's API page, e.g. ``api/aqa_framework.spec.md``."""
    return f"api/{module}.md"


def api_page(module: str, title: str) -> str:
    """An mkdocstrings page for one module."""
    return f"# {title}\n\n::: {module}\n"


def api_index(modules: list[tuple[str, str]]) -> str:
    """The API reference landing page."""
    out = [
        "# API reference",
        "",
        "The Python API, generated from the docstrings. Plugin authors mostly need the "
        "[interfaces](aqa_framework.interfaces.md), [targets](aqa_framework.targets.md) and "
        "the [test-kit](aqa_framework.testing.md).",
        "",
        "| module | |",
        "|---|---|",
    ]
    out += [f"| [`{module}`]({module}.md) | {title} |" for module, title in modules]
    return "\n".join(out) + "\n"


def api_nav() -> list[dict[str, str]]:
    """Navigation entries of the API pages (used by the docs hook)."""
    return [{title: api_file(module)} for module, title in available_api_modules()]
