"""``aqa predict`` through VideoDataset.read_video, for a dataset that is no ClipDataset."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch

from aqa_framework import testing
from aqa_framework.cli.main import main
from aqa_framework.engine import runner
from aqa_framework.engine.inference import load_video
from aqa_framework.errors import PredictNotSupported
from aqa_framework.interfaces import _overrides_load_video
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec
from aqa_framework.video.dataset import ClipDataset

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 16}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "toy.tensors",
        "params": {"num_samples": 4, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 2,
        "val_fraction": 0.25,
    },
    "train": {"epochs": 1},
    "seed": 0,
}


class TensorVideoDataset(testing.TinyVideoDataset):
    """A plugin-style dataset whose videos are tensors saved with ``torch.save``."""

    name: ClassVar[str] = "toy.tensors"
    seen: ClassVar[list[Any]] = []

    def frame_size(self) -> tuple[int, int] | None:
        """Frames are ``size`` x ``size``."""
        return (self.params.size, self.params.size)

    @classmethod
    def read_video(cls, params, path, *, frame_size=None):
        """The saved tensor, cut to this dataset's clips."""
        cls.seen.append(frame_size)
        video = torch.load(path, weights_only=True)
        p = params
        return video[: p.num_clips, :, : p.frames, : p.size, : p.size].float()


class LegacyVideoDataset(testing.TinyVideoDataset):
    """A dataset written for 0.1: it supports predict through the instance method."""

    name: ClassVar[str] = "toy.legacy"

    def load_video(self, path):
        """A constant video of this split's shape."""
        return torch.full((1, 3, 2, 4, 4), float(self.split == "test"))


def test_a_plugin_dataset_supports_predict_through_read_video(tmp_path, capsys):
    reset_registry(testing.registry_with("toy", [TensorVideoDataset]))
    run = runner.run_training(resolve(parse_spec(RAW), source="toy.yaml"), run_dir=tmp_path / "r")
    video = tmp_path / "dive.pt"
    torch.save(torch.rand(1, 3, 16, 32, 32), video)
    TensorVideoDataset.seen.clear()
    try:
        main(["predict", str(video), "-c", str(run), "--json"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc["predictions"]["score"]["final_score"], float)
    assert TensorVideoDataset.seen == [(32, 32)]  # the frame size the checkpoint recorded


def test_a_dataset_without_read_video_says_it_does_not_support_predict(tmp_path):
    tiny = testing.TinyVideoDataset
    params = tiny.parse_params({})
    trained = SimpleNamespace(
        resolved=SimpleNamespace(dataset=SimpleNamespace(cls=tiny, params=params)),
        checkpoint=SimpleNamespace(meta={}),
    )
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    message = r"dataset 'testing.tiny' does not support predict \(implement VideoDataset.read_v"
    with pytest.raises(PredictNotSupported, match=message):
        load_video(trained, video)
    with pytest.raises(NotImplementedError, match=message):  # as 0.1's load_video raised
        tiny(params, "test").load_video(video)


def test_a_0_1_dataset_with_its_own_load_video_still_predicts_with_a_deprecation_warning():
    params = LegacyVideoDataset.parse_params({})
    with pytest.warns(DeprecationWarning, match="implement the class method VideoDataset.read_v"):
        video = LegacyVideoDataset.read_video(params, "any.mp4", frame_size=(4, 4))
    assert video.shape == (1, 3, 2, 4, 4) and bool((video == 1).all())  # the test split's

    class OwnClips(ClipDataset):
        def load_video(self, path):
            return super().load_video(path)

    class NewClips(ClipDataset):
        @classmethod
        def read_video(cls, params, path, *, frame_size=None):
            return super().read_video(params, path, frame_size=frame_size)

    assert _overrides_load_video(LegacyVideoDataset) and _overrides_load_video(OwnClips)
    assert not _overrides_load_video(ClipDataset) and not _overrides_load_video(NewClips)
    assert not _overrides_load_video(TensorVideoDataset)
