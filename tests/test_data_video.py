"""Video pipeline units: readers, sampling, transforms, frame cache, clip loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import decode_clips, decode_index, write_index_frames, write_index_video

from aqa_framework.errors import DataError
from aqa_framework.video.cache import FrameCache
from aqa_framework.video.loader import ClipLoader
from aqa_framework.video.params import VideoParams
from aqa_framework.video.readers import DecordVideoReader, JpegFolderReader, open_reader
from aqa_framework.video.sampling import TemporalSampling
from aqa_framework.video.transforms import FrameTransform, center_crop

RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    return write_index_video(tmp_path_factory.mktemp("vid") / "clip.mp4", 240)


# -------------------------------------------------------------------------------- sampling


def test_c3d_avg_offsets_are_six_clips_of_sixteen_from_zero_to_eighty():
    off = TemporalSampling().offsets()
    assert off.shape == (6, 16)
    assert off[:, 0].tolist() == [0, 16, 32, 48, 64, 80]
    assert off[-1, -1] == 95
    assert (np.diff(off, axis=1) == 1).all()


def test_mscadc_spread_matches_the_official_6_5_step():
    off = TemporalSampling(mode="spread", num_clips=1, clip_length=16).offsets()
    assert off.tolist() == [[int(i) for i in np.arange(0, 103, 6.5)]]


def test_spread_falls_back_to_an_even_step_when_half_frames_overflow():
    off = TemporalSampling(window=20, mode="spread", num_clips=1, clip_length=16).offsets()
    assert off.max() <= 19 and len(set(off.ravel().tolist())) == 16


def test_frame_step_subsamples_inside_clips():
    off = TemporalSampling(num_clips=6, clip_length=8, frame_step=2).offsets()
    assert off[0].tolist() == list(range(0, 16, 2))
    assert off[-1, -1] == 94


def test_inconsistent_sampling_is_rejected_with_a_reason():
    with pytest.raises(ValueError, match="span"):
        TemporalSampling(num_clips=7)
    with pytest.raises(ValueError, match="spread"):
        TemporalSampling(window=10, mode="spread", num_clips=1, clip_length=16)
    with pytest.raises(ValueError, match="span"):
        VideoParams(num_clips=7)
    with pytest.raises(ValueError, match="larger than the resized"):
        VideoParams(resize=(100, 80), crop=112)


def test_window_ends_at_end_frame_and_jitter_stays_inside_the_video():
    s = TemporalSampling()
    plan = s.plan(1000, end=500)
    assert (plan.start, plan.superset) == (397, (394, 503))
    assert s.plan(1000, end=500, shift=-3).start == 394
    assert s.plan(500, end=500, shift=3).start == 397  # clipped at the last frame
    assert s.plan(500, end=500).superset == (394, 500)
    assert s.plan(200, start=0).start == 0
    assert s.plan(150).start == 47  # no anchor: the last frames
    with pytest.raises(DataError, match="outside the 400 frames of v.mp4"):
        s.plan(400, end=500, source="v.mp4")
    with pytest.raises(DataError, match="outside"):
        s.plan(1000, end=50)


# ----------------------------------------------------------------------------- transforms


def test_transform_resizes_crops_flips_and_normalises():
    frames = np.zeros((2, 128, 171, 3), np.uint8)
    frames[:, :, :85] = 255  # left half white
    tr = FrameTransform()  # 171x128 -> 112, ImageNet
    out = tr(frames)
    assert out.shape == (2, 3, 112, 112) and out.dtype == torch.float32
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out[0, :, 50, 0], white, atol=1e-5)
    flipped = tr(frames, flip=True)
    assert torch.equal(flipped, out.flip(-1))
    small = FrameTransform(resize=(64, 48), crop=None, mean=None)(frames)
    assert small.shape == (2, 3, 48, 64) and small.min() >= 0 and small.max() <= 1


def test_center_crop_is_centered_and_rejects_oversize():
    x = torch.arange(10 * 12).view(1, 1, 10, 12)
    assert center_crop(x, (4, 6))[0, 0, 0, 0].item() == 3 * 12 + 3
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, (11, 4))


# -------------------------------------------------------------------------------- readers


def test_decord_reader_returns_the_requested_frames_in_order(index_video):
    reader = DecordVideoReader(index_video)
    assert reader.num_frames == 240
    frames = reader.read([200, 3, 3, 77])
    assert frames.dtype == np.uint8 and frames.shape == (4, 32, 64, 3)
    assert [decode_index(f) for f in frames] == [200, 3, 3, 77]
    with pytest.raises(DataError, match="240 is out of range"):
        reader.read([239, 240])


def test_prepared_reads_equal_preparing_a_full_read_in_any_order(index_video, tmp_path):
    prepare = FrameTransform(resize=(40, 20), crop=(16, 24), mean=None).prepare
    seen: list[int] = []

    def counting(frames):
        seen.append(frames.shape[0])
        return prepare(frames)

    # unsorted, repeated, two runs far apart, a chunk boundary inside the first run
    indices = [150, 5, 6, 30, 5, 151, 12, 200]
    for reader in (
        DecordVideoReader(index_video),
        JpegFolderReader(write_index_frames(tmp_path / "f", 240)),
    ):
        seen.clear()
        got = reader.read_prepared(indices, counting)
        expected = prepare(reader.read(indices))
        assert got.shape == (8, 3, 16, 24) and got.dtype == torch.uint8
        assert torch.equal(got, expected)
        assert sum(seen) == 7  # each distinct frame is prepared once
        if isinstance(reader, DecordVideoReader):
            assert max(seen) <= reader.chunk  # never a whole window of full frames at once
    with pytest.raises(DataError, match="240 is out of range"):
        DecordVideoReader(index_video).read_prepared([3, 240], prepare)


def test_jpeg_folder_reader_counts_frames_and_reads_them(tmp_path):
    folder = write_index_frames(tmp_path / "07", 37)
    reader = open_reader(folder)
    assert isinstance(reader, JpegFolderReader)
    assert reader.num_frames == 37
    assert [decode_index(f) for f in reader.read([36, 0])] == [36, 0]
    assert reader.frame_path(0).name == "000001.jpg"
    with pytest.raises(DataError, match="out of range"):
        reader.read([37])
    aqa7 = write_index_frames(tmp_path / "001", 5, pattern="img_{index:05d}.jpg")
    assert open_reader(aqa7, frame_pattern="img_{index:05d}.jpg").num_frames == 5


def test_missing_and_corrupt_sources_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_reader(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError, match="cannot open video .*bad.mp4"):
        open_reader(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no first frame"):
        _ = open_reader(tmp_path / "empty").num_frames


def _write_gray_video(path, width: int, height: int, n: int) -> None:
    """An H.264 (else MPEG-4) video whose frame ``i`` is a flat gray of level ``20 + 8 i``."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = np.full((height, width, 3), 20 + 8 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_videos_decord_cannot_decode_are_read_with_pyav(tmp_path):
    # decord fails on valid H.264 files 24 px wide ("The size must exactly match")
    path = tmp_path / "narrow.mp4"
    _write_gray_video(path, 24, 16, 12)
    reader = open_reader(path)
    frames = reader.read([7, 0, 7, 11])
    assert frames.shape == (4, 16, 24, 3)
    assert np.abs(frames.reshape(4, -1).mean(1) - [76, 20, 76, 108]).max() < 3
    assert reader.backend == "pyav" and reader.num_frames == 12
    prepare = FrameTransform(resize=(32, 32), crop=(16, 16), mean=None).prepare
    fresh = open_reader(path)  # the fallback also serves the chunked, prepared reads
    assert torch.equal(fresh.read_prepared([3, 1], prepare), prepare(reader.read([3, 1])))
    loader = ClipLoader.from_params(VideoParams(**RAW, window=10, num_clips=1, clip_length=4))
    assert loader.load("s", path, end=12).shape == (1, 3, 4, 16, 24)


def test_a_video_neither_reader_can_read_names_both(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000)
    with pytest.raises(DataError, match=r"bad\.mp4 with decord or PyAV \(decord: .+; PyAV: .+\)"):
        open_reader(bad)


# ---------------------------------------------------------------------------- loader/cache


def test_clip_loader_picks_the_frames_of_the_window(index_video):
    loader = ClipLoader.from_params(VideoParams(**RAW))
    video = loader.load("s", index_video, end=200)
    assert video.shape == (6, 3, 16, 32, 64)
    assert (decode_clips(video) == 97 + TemporalSampling().offsets()).all()
    spread = ClipLoader.from_params(
        VideoParams(**RAW, sampling="spread", num_clips=1, clip_length=16)
    ).load("s", index_video, end=103)
    assert decode_clips(spread)[0].tolist() == [int(i) for i in np.arange(0, 103, 6.5)]


def test_training_jitter_shifts_the_whole_window_and_flip_mirrors(index_video):
    loader = ClipLoader.from_params(VideoParams(**{**RAW, "flip": True}))
    offsets = TemporalSampling().offsets()
    torch.manual_seed(0)
    starts, flips = set(), 0
    for _ in range(12):
        video = loader.load("s", index_video, end=200, train=True)
        idx = decode_clips(video)
        if not (idx == idx[0, 0] + offsets).all():  # mirrored frames do not spell their index
            flips += 1
            idx = decode_clips(video.flip(-1))
        assert (idx == idx[0, 0] + offsets).all()
        starts.add(int(idx[0, 0]))
    assert starts <= set(range(94, 101)) and len(starts) > 1
    assert 0 < flips < 12


def test_frame_cache_serves_later_epochs_without_decoding(index_video, tmp_path, monkeypatch):
    params = VideoParams(resize=(48, 24), crop=(16, 40), flip=False, cache_dir=str(tmp_path / "c"))
    cached = ClipLoader.from_params(params)
    plain = ClipLoader.from_params(params.model_copy(update={"cache_dir": None}))
    first = cached.load("ev_01", index_video, end=150)
    files = list((tmp_path / "c").rglob("*.npy"))
    assert len(files) == 1 and files[0].name == "ev_01_44-153.npy"
    assert np.load(files[0], mmap_mode="r").shape == (109, 16, 40, 3)  # resized and cropped
    assert not list((tmp_path / "c").rglob("*.tmp"))
    assert torch.equal(first, plain.load("ev_01", index_video, end=150))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    reader = cached.reader(index_video)
    monkeypatch.setattr(reader, "_read", no_decoding)
    torch.manual_seed(1)
    again = cached.load("ev_01", index_video, end=150, train=True)  # jittered, from the cache
    assert again.shape == first.shape


def test_frame_cache_store_and_load_round_trip(tmp_path):
    cache = FrameCache(tmp_path)
    frames = np.random.default_rng(0).integers(0, 255, (5, 4, 6, 3), dtype=np.uint8)
    path = cache.store("01/12", 10, 15, "abc", frames)
    assert path.parent.name == "abc" and "/" not in path.name
    assert np.array_equal(cache.load("01/12", 10, 15, "abc"), frames)
    assert cache.load("01/12", 10, 15, "other") is None
    path.write_bytes(b"garbage")
    assert cache.load("01/12", 10, 15, "abc") is None  # unreadable entries are rebuilt
    with pytest.raises(ValueError):
        cache.store("k", 0, 4, "abc", frames)


def test_load_any_resamples_short_videos(index_video):
    loader = ClipLoader.from_params(VideoParams(**RAW, window=300, num_clips=1, clip_length=4))
    idx = decode_clips(loader.load_any(index_video))[0]
    assert idx[0] == 0 and (np.diff(idx) >= 0).all()
    long = ClipLoader.from_params(VideoParams(**RAW)).load_any(index_video)
    assert decode_clips(long)[0, 0] == 240 - 103


def _write_scene_video(path, width: int, height: int, n: int = 12) -> None:
    """The same smooth scene (stripes across the whole frame) at any frame size."""
    import av

    x = np.linspace(0, 1, width, endpoint=False)[None, :]
    y = np.linspace(0, 1, height, endpoint=False)[:, None]
    img = np.stack(
        [
            127.5 + 100 * np.sin(2 * np.pi * 3 * x) + 0 * y,
            127.5 + 100 * np.cos(2 * np.pi * 2 * y) + 0 * x,
            np.full((height, width), 90.0),
        ],
        axis=-1,
    ).astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for _ in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_load_any_gives_a_video_of_another_size_the_training_field_of_view(tmp_path):
    import warnings

    from aqa_framework.video.loader import FieldOfViewWarning

    small, big, wide = tmp_path / "small.mp4", tmp_path / "big.mp4", tmp_path / "wide.mp4"
    _write_scene_video(small, 64, 48)  # the training videos' size
    _write_scene_video(big, 128, 96)  # the same scene, twice as large
    _write_scene_video(wide, 128, 48)
    params = {**RAW, "crop": 32, "window": 8, "num_clips": 1, "clip_length": 4}
    loader = ClipLoader.from_params(VideoParams(**params))  # crop without resize
    with warnings.catch_warnings():
        warnings.simplefilter("error", FieldOfViewWarning)
        expected = loader.load_any(small, frame_size=(64, 48))
        got = loader.load_any(big, frame_size=(64, 48))
    assert got.shape == expected.shape == (1, 3, 4, 32, 32)
    # resized to 64x48 first, then cropped: the same view (up to compression, ~0.02)
    assert (got - expected).abs().mean() < 0.05
    with pytest.warns(FieldOfViewWarning, match="not recorded"):
        as_is = loader.load_any(big)  # training size unknown: cropped as it is, and said so
    assert (as_is - expected).abs().mean() > 0.1  # a crop of the big frames: another view
    with pytest.warns(FieldOfViewWarning, match="stretches"):
        loader.load_any(wide, frame_size=(64, 48))
    assert loader.frame_size(big) == (128, 96) and loader.frame_size(tmp_path / "no.mp4") is None
    resized = ClipLoader.from_params(VideoParams(**{**params, "resize": (40, 30), "crop": 24}))
    with pytest.warns(FieldOfViewWarning, match="stretches"):
        resized.load_any(wide, frame_size=(64, 48))


def test_video_decodes_full_frames_and_jpegs_decode_at_a_draft_size(index_video, tmp_path):
    idx = [10, 11, 150]
    with pytest.warns(DeprecationWarning, match="size"):
        reader = DecordVideoReader(index_video, size=(40, 20))  # scaling while decoding: gone
    frames = reader.read(idx)
    assert frames.shape == (3, 32, 64, 3)  # full frames; the transform resizes them
    assert [decode_index(f) for f in frames] == idx

    folder = write_index_frames(tmp_path / "f", 4)
    big = np.kron(np.asarray(JpegFolderReader(folder).read([2]))[0], np.ones((4, 4, 1), np.uint8))
    from PIL import Image

    Image.fromarray(big).save(folder / "000003.jpg", quality=95)  # a 256x128 frame 2
    draft = JpegFolderReader(folder, size=(64, 32)).read([2])
    assert draft.shape[1:3] == (32, 64)  # decoded at 1/4 scale, not 128x256
    assert decode_index(draft[0]) == 2
