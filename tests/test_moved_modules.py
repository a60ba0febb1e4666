"""Modules moved into :mod:`aqa_framework.experiments` stay importable from their 0.1 paths."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MOVED = {
    "aqa_framework.sweep": ("aqa_framework.experiments.sweep", ["load_sweep", "_resolve_run"]),
    "aqa_framework.probe": ("aqa_framework.experiments.probe", ["run_probe", "_load_checkpoint"]),
    "aqa_framework.features": (
        "aqa_framework.experiments.features",
        ["FeatureCache", "_capture_layers"],
    ),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_is_the_moved_module(old):
    new, names = MOVED[old]
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('error')\n"
        f"importlib.import_module({new!r})\n"  # the new path is silent
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        f"assert all(hasattr(old, n) for n in {names!r})\n"
        "print('|'.join(f'{w.category.__name__}:{w.message}' for w in caught))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == f"DeprecationWarning:{old} moved to {new}"


def test_from_import_of_old_names_still_works():
    with pytest.warns(DeprecationWarning, match="moved to aqa_framework.experiments"):
        sys.modules.pop("aqa_framework.sweep", None)
        old = importlib.import_module("aqa_framework.sweep")
    from aqa_framework.experiments.sweep import load_sweep

    assert old.load_sweep is load_sweep
