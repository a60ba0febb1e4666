"""Clip placement: explicit clip starts, uniform sampling and the whole-video window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import decode_clips, write_index_frames, write_index_video

from aqa_framework.errors import DataError
from aqa_framework.video.loader import ClipLoader
from aqa_framework.video.params import VideoParams, video_input_shape
from aqa_framework.video.sampling import TemporalSampling

RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}
MUSDL_STARTS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 87]
WHOLE = dict(RAW, window=None, sampling="uniform", jitter=0, num_clips=4, clip_length=8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Index-encoded videos of 70 and 95 frames and a frame folder of 50 frames."""
    root = tmp_path_factory.mktemp("whole")
    return {
        "short": write_index_video(root / "a.mp4", 70),
        "long": write_index_video(root / "b.mp4", 95),
        "frames": write_index_frames(root / "c", 50),
        "tiny": write_index_video(root / "tiny.mp4", 20),
    }


# --------------------------------------------------------------------------- clip_starts


def test_clip_starts_place_the_clips_and_give_num_clips():
    params = VideoParams(clip_starts=MUSDL_STARTS)
    assert params.num_clips == 10
    off = params.temporal_sampling().offsets()
    assert off.shape == (10, 16)
    assert off[:, 0].tolist() == MUSDL_STARTS
    assert off[-1, -1] == 102  # the last clip ends on the window's last frame
    assert (np.diff(off, axis=1) == 1).all()
    core = VideoParams(clip_starts=[*range(0, 90, 10), 86], num_clips=10)  # agreeing is fine
    assert core.temporal_sampling().offsets()[-1, 0] == 86
    assert video_input_shape(params) == (10, 3, 16, 112, 112)
    stepped = TemporalSampling(num_clips=2, clip_length=4, frame_step=3, clip_starts=(5, 60))
    assert stepped.offsets().tolist() == [[5, 8, 11, 14], [60, 63, 66, 69]]


def test_bad_clip_starts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="gives 10 clips but num_clips is 6"):
        VideoParams(clip_starts=MUSDL_STARTS, num_clips=6)
    with pytest.raises(ValueError, match=r"clip_starts \[88\] .* past the window of 103 .* 87"):
        VideoParams(clip_starts=[0, 88])
    with pytest.raises(ValueError, match=">= 0"):
        VideoParams(clip_starts=[-1, 10])
    with pytest.raises(ValueError, match="empty"):
        VideoParams(clip_starts=[])
    with pytest.raises(ValueError, match="'clips' sampling, not in 'uniform'"):
        VideoParams(clip_starts=[0, 10], sampling="uniform")


def test_clip_loader_reads_the_clips_at_their_starts(videos):
    params = VideoParams(**RAW, window=60, clip_starts=[0, 30, 52], clip_length=8)
    video = ClipLoader.from_params(params).load("s", videos["long"], end=90)
    assert video.shape == (3, 3, 8, 32, 64)
    assert decode_clips(video).tolist() == [[30 + s + k for k in range(8)] for s in (0, 30, 52)]


# ------------------------------------------------------------------------------- uniform


def test_uniform_takes_floor_of_linspace_over_the_window():
    s = TemporalSampling(window=400, mode="uniform", num_clips=10, clip_length=16, jitter=0)
    off = s.offsets()
    assert off.shape == (10, 16)
    expected = np.linspace(0, 399, 160).astype(np.int64)  # MUSDL's linspace(dtype=int)
    assert off.reshape(-1).tolist() == expected.tolist()
    assert off[0, 0] == 0 and off[-1, -1] == 399
    with pytest.raises(ValueError, match="160 distinct frames"):
        TemporalSampling(window=100, mode="uniform", num_clips=10, clip_length=16)


# ----------------------------------------------------------------------- whole video


def test_the_whole_video_window_takes_its_offsets_from_each_video():
    s = TemporalSampling(window=None, mode="uniform", num_clips=10, clip_length=16, jitter=0)
    for n in (160, 1000, 5641):
        plan = s.plan(n, source="v.avi")
        assert (plan.start, plan.length, plan.superset) == (0, n, (0, n))
        flat = s.offsets(plan.length).reshape(-1)
        assert flat.tolist() == np.floor(np.linspace(0, n - 1, 160)).astype(int).tolist()
    spread = TemporalSampling(window=None, mode="spread", num_clips=1, clip_length=16, jitter=0)
    assert spread.offsets(103).tolist() == [[int(i) for i in np.arange(0, 103, 6.5)]]
    segment = s.plan(900, start=100, end=700)  # anchors bound the whole window
    assert (segment.start, segment.length) == (100, 600)
    with pytest.raises(ValueError, match="pass its length"):
        s.offsets()


def test_the_whole_video_window_refuses_short_videos_fixed_clips_and_jitter():
    s = TemporalSampling(window=None, mode="uniform", num_clips=10, clip_length=16, jitter=0)
    with pytest.raises(DataError, match=r"trial\.avi has 159 frames, fewer than the 160"):
        s.plan(159, source="trial.avi")
    with pytest.raises(ValueError, match="needs sampling 'uniform' or 'spread'"):
        VideoParams(window=None, jitter=0)
    with pytest.raises(ValueError, match="set jitter: 0"):
        VideoParams(window=None, sampling="uniform")
    with pytest.raises(ValueError, match="'clips' sampling"):
        VideoParams(window=None, sampling="uniform", jitter=0, clip_starts=[0])


def test_loader_samples_videos_of_any_length_into_one_shape(videos):
    params = VideoParams(**WHOLE)
    loader = ClipLoader.from_params(params)
    for name, n in (("short", 70), ("long", 95), ("frames", 50)):
        video = loader.load(name, videos[name], train=True)  # no jitter, no flip to apply
        assert video.shape == (4, 3, 8, 32, 64)
        expected = np.floor(np.linspace(0, n - 1, 32)).astype(int).reshape(4, 8)
        assert (decode_clips(video) == expected).all(), name
    assert video_input_shape(params.model_copy(update={"crop": 16})) == (4, 3, 8, 16, 16)


def test_a_video_shorter_than_a_sample_is_an_error_naming_it(videos):
    loader = ClipLoader.from_params(VideoParams(**WHOLE))
    with pytest.raises(DataError, match=r"sample t1: .*tiny\.mp4 has 20 frames, fewer than the 32"):
        loader.load("t1", videos["tiny"])
    with pytest.raises(DataError, match=r"sample t1: .*tiny\.mp4 has 20 frames"):
        loader.check("t1", videos["tiny"])
    loader.check("ok", videos["short"])  # fits: no error


def test_the_cache_keeps_only_the_frames_a_whole_video_sample_uses(videos, tmp_path, monkeypatch):
    params = VideoParams(**WHOLE, cache_dir=str(tmp_path / "c"))
    cached = ClipLoader.from_params(params)
    first = cached.load("trial_1", videos["long"])
    files = list((tmp_path / "c").rglob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith("trial_1_0-95_f")
    assert np.load(files[0]).shape == (32, 32, 64, 3)  # 32 distinct frames, not the 95
    reader = cached.reader(videos["long"])

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(reader, "_read", no_decoding)
    monkeypatch.setattr(reader, "read_prepared", no_decoding)
    assert torch.equal(cached.load("trial_1", videos["long"]), first)
    other = ClipLoader.from_params(
        VideoParams(**{**WHOLE, "num_clips": 2}, cache_dir=params.cache_dir)
    )
    other.pool = cached.pool
    with pytest.raises(AssertionError, match="decoded again"):  # other frames: a new entry
        other.load("trial_1", videos["long"])


def test_load_any_reads_the_whole_video_and_stretches_short_ones(videos):
    loader = ClipLoader.from_params(VideoParams(**WHOLE))
    idx = decode_clips(loader.load_any(videos["long"]))
    assert (idx == np.floor(np.linspace(0, 94, 32)).astype(int).reshape(4, 8)).all()
    short = decode_clips(loader.load_any(videos["tiny"]))  # 20 frames for 32: repeats
    assert short.shape == (4, 8) and short[0, 0] == 0 and short[-1, -1] == 19
    assert (np.diff(short.reshape(-1)) >= 0).all()
