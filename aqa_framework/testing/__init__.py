"""Public test-kit: contract checks, tiny synthetic data and pytest fixtures for plugin authors.

Every component kind has one check that exercises its contract on tiny CPU shapes and raises
:class:`ContractError` (an ``AssertionError``, so pytest shows it as a failed assertion) with a
message that names the component and the broken rule::

    from aqa_framework import testing

    def test_my_head():
        testing.check_head(MyHead, testing.tiny_targets())

    def test_my_dataset():
        testing.check_dataset(MyDataset(MyDataset.parse_params({}), split="train"))

    def test_installed():
        testing.check_registered("skating.tcn", "backbone")

The data helpers (:func:`tiny_targets`, :func:`fake_sample`, :func:`fake_batch`,
:class:`TinyVideoDataset`) produce data in exactly the layout the framework uses (see
:mod:`aqa_framework.targets`), collated with PyTorch's default collate as the engine does.
:func:`write_video` writes small H.264 files at sizes decord reads, and :func:`train_spec`
trains a spec end to end.

Installing aqa-framework also installs a pytest plugin (:mod:`aqa_framework.testing.plugin`)
with the fixtures ``write_video`` and ``run_spec``, which wrap those two into the test's
``tmp_path``::

    def test_my_spec_trains(run_spec):
        run = run_spec("spec.yaml", "train.epochs=1")
        assert "score.spearman" in run.metrics

The package is split into :mod:`~aqa_framework.testing.checks`,
:mod:`~aqa_framework.testing.datasets`, :mod:`~aqa_framework.testing.videos` and
:mod:`~aqa_framework.testing.runs`; every name is imported from here, and only when first
used, so that pytest loading the plugin does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aqa_framework.testing.checks import (
        ContractError,
        check_aggregator,
        check_backbone,
        check_component_class,
        check_dataset,
        check_head,
        check_registered,
        registry_with,
    )
    from aqa_framework.testing.datasets import (
        TinyVideoDataset,
        TinyVideoDatasetParams,
        fake_batch,
        fake_sample,
        tiny_targets,
    )
    from aqa_framework.testing.runs import TrainedRun, train_spec
    from aqa_framework.testing.videos import (
        DECORD_WIDTH_MULTIPLE,
        decord_safe_size,
        synthetic_frames,
        write_video,
    )

_EXPORTS: dict[str, str] = {
    "ContractError": "checks",
    "check_aggregator": "checks",
    "check_backbone": "checks",
    "check_component_class": "checks",
    "check_dataset": "checks",
    "check_head": "checks",
    "check_registered": "checks",
    "registry_with": "checks",
    "TinyVideoDataset": "datasets",
    "TinyVideoDatasetParams": "datasets",
    "fake_batch": "datasets",
    "fake_sample": "datasets",
    "tiny_targets": "datasets",
    "TrainedRun": "runs",
    "train_spec": "runs",
    "DECORD_WIDTH_MULTIPLE": "videos",
    "decord_safe_size": "videos",
    "synthetic_frames": "videos",
    "write_video": "videos",
}
"""Public name -> the submodule that defines it."""

__all__ = [
    "DECORD_WIDTH_MULTIPLE",
    "ContractError",
    "TinyVideoDataset",
    "TinyVideoDatasetParams",
    "TrainedRun",
    "check_aggregator",
    "check_backbone",
    "check_component_class",
    "check_dataset",
    "check_head",
    "check_registered",
    "decord_safe_size",
    "fake_batch",
    "fake_sample",
    "registry_with",
    "synthetic_frames",
    "tiny_targets",
    "train_spec",
    "write_video",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
