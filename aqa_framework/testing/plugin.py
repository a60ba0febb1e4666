"""The pytest plugin of the test-kit: fixtures for plugin authors.

Installing aqa-framework registers this module with pytest (entry point ``aqa`` in the
``pytest11`` group), so every test session can ask for:

* ``write_video``: :func:`~aqa_framework.testing.write_video` with relative paths under the
  test's ``tmp_path``;
* ``run_spec``: :func:`~aqa_framework.testing.train_spec` into a new run folder under the
  test's ``tmp_path``; returns a :class:`~aqa_framework.testing.TrainedRun`.

pytest loads this module in every session of everyone who has aqa-framework installed, so it
imports nothing heavy: torch, PyAV and the engine are imported when a fixture is used. With
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load it with ``-p aqa_framework.testing.plugin``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aqa_framework.testing.runs import TrainedRun


@pytest.fixture
def write_video(tmp_path: Path) -> Callable[..., Path]:
    """Write a small H.264 video decord reads: ``write_video(path, frames_or_shape, fps=25)``.

    ``path`` is relative to ``tmp_path`` (or absolute); ``frames_or_shape`` is a
    ``(T, H, W, 3)`` array or the shape ``(T, H, W)`` of synthetic frames. See
    :func:`aqa_framework.testing.write_video` for the keyword arguments.
    """

    def write(
        path: str | Path, frames_or_shape: Any, fps: float = 25, **kwargs: Any
    ) -> Path:
        from aqa_framework.testing.videos import write_video as write_file

        return write_file(tmp_path / path, frames_or_shape, fps, **kwargs)

    return write


@pytest.fixture
def run_spec(tmp_path: Path) -> Callable[..., TrainedRun]:
    """Train a spec end to end: ``run_spec(spec, *overrides, registry=None, device="cpu")``.

    Each call trains into a new folder ``tmp_path/run-<n>`` and returns its
    :class:`~aqa_framework.testing.TrainedRun`. See :func:`aqa_framework.testing.train_spec`.
    """
    counter = itertools.count(1)

    def run(spec: Any, *overrides: str, **kwargs: Any) -> TrainedRun:
        from aqa_framework.testing.runs import train_spec

        return train_spec(spec, *overrides, run_dir=tmp_path / f"run-{next(counter)}", **kwargs)

    return run
