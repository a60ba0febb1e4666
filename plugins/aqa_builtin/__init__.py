"""The built-in plugin: registers every component that ships with aqa-framework.

It uses the same hooks as any third-party plugin; component modules are imported inside the
hooks so that importing this package stays cheap.
"""

from __future__ import annotations

from aqa_framework import hookimpl
from aqa_framework.hookspecs import Register


@hookimpl
def register_backbones(register: Register) -> None:
    """Register the built-in backbones."""
    from aqa_builtin.backbones.c3d import C3DBackbone
    from aqa_builtin.backbones.mscadc import MSCADCBackbone
    from aqa_builtin.backbones.timm_frames import TimmFramesBackbone

    register(C3DBackbone)
    register(MSCADCBackbone)
    register(TimmFramesBackbone)


@hookimpl
def register_aggregators(register: Register) -> None:
    """Register the built-in aggregators."""
    from aqa_builtin.aggregators import AverageAggregator, IdentityAggregator, LSTMAggregator

    register(AverageAggregator)
    register(LSTMAggregator)
    register(IdentityAggregator)


@hookimpl
def register_heads(register: Register) -> None:
    """Register the built-in heads."""
    from aqa_builtin.heads.caption import CaptionHead
    from aqa_builtin.heads.classification import ClassificationHead
    from aqa_builtin.heads.score import ScoreHead

    register(ScoreHead)
    register(ClassificationHead)
    register(CaptionHead)


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the built-in datasets."""
    from aqa_builtin.datasets.aqa7 import AQA7Dataset
    from aqa_builtin.datasets.mtl_aqa import MTLAQADataset
    from aqa_builtin.datasets.synthetic import SyntheticDivingDataset

    register(MTLAQADataset)
    register(AQA7Dataset)
    register(SyntheticDivingDataset)
