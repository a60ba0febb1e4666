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
    from aqa_builtin.backbones.i3d import I3DBackbone
    from aqa_builtin.backbones.identity import IdentityBackbone
    from aqa_builtin.backbones.mscadc import MSCADCBackbone
    from aqa_builtin.backbones.timm_frames import TimmFramesBackbone
    from aqa_builtin.backbones.torchvision_video import TorchvisionVideoBackbone

    register(C3DBackbone)
    register(MSCADCBackbone)
    register(TimmFramesBackbone)
    register(I3DBackbone)
    register(TorchvisionVideoBackbone)
    register(IdentityBackbone)


@hookimpl
def register_aggregators(register: Register) -> None:
    """Register the built-in aggregators."""
    from aqa_builtin.aggregators import (
        AverageAggregator,
        IdentityAggregator,
        LSTMAggregator,
        TransformerAggregator,
    )

    register(AverageAggregator)
    register(LSTMAggregator)
    register(IdentityAggregator)
    register(TransformerAggregator)


@hookimpl
def register_heads(register: Register) -> None:
    """Register the built-in heads."""
    from aqa_builtin.heads.caption import CaptionHead
    from aqa_builtin.heads.classification import ClassificationHead
    from aqa_builtin.heads.core import CoReHead
    from aqa_builtin.heads.distribution import MUSDLHead, USDLHead
    from aqa_builtin.heads.gdlt import GDLTHead
    from aqa_builtin.heads.ranking import RankingHead
    from aqa_builtin.heads.score import ScoreHead
    from aqa_builtin.heads.tpt import TPTHead

    register(ScoreHead)
    register(ClassificationHead)
    register(CaptionHead)
    register(USDLHead)
    register(MUSDLHead)
    register(GDLTHead)
    register(CoReHead)
    register(TPTHead)
    register(RankingHead)


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the built-in datasets."""
    from aqa_builtin.datasets.aqa7 import AQA7Dataset
    from aqa_builtin.datasets.best import BESTDataset
    from aqa_builtin.datasets.epic_skills import EpicSkillsDataset
    from aqa_builtin.datasets.features import FeaturesDataset
    from aqa_builtin.datasets.finediving import FineDivingDataset
    from aqa_builtin.datasets.jigsaws import JIGSAWSDataset
    from aqa_builtin.datasets.mtl_aqa import MTLAQADataset
    from aqa_builtin.datasets.rhythmic_gymnastics import RhythmicGymnasticsDataset
    from aqa_builtin.datasets.synthetic import SyntheticDivingDataset
    from aqa_builtin.datasets.synthetic_jigsaws import SyntheticJIGSAWSDataset
    from aqa_builtin.datasets.synthetic_pairs import SyntheticPairsDataset
    from aqa_builtin.datasets.synthetic_routines import SyntheticRoutinesDataset

    register(MTLAQADataset)
    register(AQA7Dataset)
    register(SyntheticDivingDataset)
    register(JIGSAWSDataset)
    register(SyntheticJIGSAWSDataset)
    register(FeaturesDataset)
    register(RhythmicGymnasticsDataset)
    register(SyntheticRoutinesDataset)
    register(EpicSkillsDataset)
    register(BESTDataset)
    register(SyntheticPairsDataset)
    register(FineDivingDataset)


@hookimpl
def register_trackers(register: Register) -> None:
    """Register the built-in experiment trackers (tensorboard, mlflow, csv)."""
    from aqa_framework.tracking.csv_file import CsvTracker
    from aqa_framework.tracking.mlflow_store import MLflowTracker
    from aqa_framework.tracking.tensorboard import TensorBoardTracker

    register(TensorBoardTracker)
    register(MLflowTracker)
    register(CsvTracker)
