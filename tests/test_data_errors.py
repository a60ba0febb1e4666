"""Bad data gets one clear DataError naming the sample and file, or is skipped with a warning."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import annotation, decode_clips, write_index_video, write_release

from aqa_framework.data.skipping import collate, is_skipped
from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry
from aqa_framework.video.dataset import DataSkipWarning

RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}
CAPTION = ["<sos>", "a", "clean", "dive", "<eos>"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_index_video(folder / "01.mp4", 400)  # event 1: 400 frames
    (folder / "03.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000)  # corrupt
    return folder  # event 2 has no video


def release(tmp_path, anns, split, caption_keys=None, **params):
    caps = {k: list(CAPTION) for k in (anns if caption_keys is None else caption_keys)}
    root = write_release(tmp_path / "release", anns, caps, split, [(99, 99)])
    cls = get_registry().get("dataset", "mtl-aqa")
    return lambda split="train", **more: cls(
        cls.parse_params({"root": str(root), **RAW, **params, **more}), split, False
    )


GOOD = {(1, 1): annotation(150), (1, 2): annotation(300)}


def test_split_key_without_annotation(tmp_path, videos):
    open_ = release(tmp_path, GOOD, [(1, 1), (9, 9), (1, 2)], videos_dir=str(videos))
    with pytest.raises(
        DataError,
        match=r"sample 09_09: split key \(9, 9\) in train_split_0\.pkl "
        r"has no annotation in final_annotations_dict\.pkl",
    ):
        open_()
    with pytest.warns(DataSkipWarning, match="skipped 1 bad sample"):
        ds = open_(on_error="skip")
    assert ds.keys == ["01_01", "01_02"]


def test_annotation_without_caption(tmp_path, videos):
    anns = {**GOOD, (1, 3): annotation(200)}
    open_ = release(tmp_path, anns, list(anns), caption_keys=GOOD, videos_dir=str(videos))
    with pytest.raises(DataError, match=r"sample 01_03: no caption in final_captions_dict\.pkl"):
        open_()
    with pytest.warns(DataSkipWarning):
        assert open_(on_error="skip").keys == ["01_01", "01_02"]
    assert len(open_(captions=None)) == 3  # a dataset without captions does not need them


def test_bad_annotation_values_are_reported(tmp_path, videos):
    anns = {**GOOD, (1, 3): annotation(200, position=5), (1, 4): {"end_frame": 9}}
    open_ = release(tmp_path, anns, list(anns), videos_dir=str(videos))
    with pytest.raises(DataError) as exc:
        open_()
    assert "sample 01_03: position=5 outside 0..2" in str(exc.value)
    assert "sample 01_04: annotation in final_annotations_dict.pkl lacks field" in str(exc.value)
    assert "2 bad sample(s)" in str(exc.value)


def test_missing_corrupt_and_too_short_videos(tmp_path, videos):
    anns = {**GOOD, (1, 3): annotation(450), (2, 1): annotation(150), (3, 1): annotation(150)}
    open_ = release(tmp_path, anns, list(anns), videos_dir=str(videos))
    ds = open_()
    assert len(ds) == 5  # videos are checked when read
    assert (decode_clips(ds[0]["video"]) == 47 + np.arange(6)[:, None] * 16 + np.arange(16)).all()
    with pytest.raises(DataError, match=r"sample 01_03: .*outside the 400 frames of .*01\.mp4"):
        ds[2]
    with pytest.raises(DataError, match=r"sample 02_01: video not found: .*02\.mp4"):
        ds[3]
    with pytest.raises(DataError, match=r"sample 03_01: cannot open video .*03\.mp4"):
        ds[4]


def test_skip_drops_missing_videos_at_open_and_leaves_out_unreadable_samples(tmp_path, videos):
    anns = {**GOOD, (1, 3): annotation(450), (2, 1): annotation(150), (3, 1): annotation(150)}
    open_ = release(tmp_path, anns, list(anns), videos_dir=str(videos), on_error="skip")
    with pytest.warns(DataSkipWarning, match=r"02_01: video not found"):
        ds = open_()
    assert ds.keys == ["01_01", "01_02", "01_03", "03_01"]
    assert ds.dropped_keys == ["02_01"]
    with pytest.warns(DataSkipWarning) as record:
        samples = [ds[i] for i in range(len(ds))]
    assert [s["key"] for s in samples] == ds.keys  # each sample is itself or left out
    assert [is_skipped(s) for s in samples] == [False, False, True, True]
    messages = " ".join(str(w.message) for w in record)
    assert "leaving out sample 01_03" in messages and "leaving out sample 03_01" in messages
    batch = collate(samples)  # the engine's collate drops them and names them
    assert batch["key"] == ["01_01", "01_02"] and batch["video"].shape[0] == 2
    assert batch["skipped"] == ["01_03", "03_01"]


def test_unknown_caption_word_and_unknown_split(tmp_path, videos):
    anns = dict(GOOD)
    caps = {(1, 1): list(CAPTION), (1, 2): ["<sos>", "zebra", "<eos>"]}
    root = write_release(
        tmp_path / "r",
        anns,
        caps,
        list(anns),
        [(99, 99)],
        words=["<eos>", "<sos>", "a", "clean", "dive"],
    )
    cls = get_registry().get("dataset", "mtl-aqa")
    with pytest.raises(DataError, match="sample 01_02: caption .*'zebra'"):
        cls(cls.parse_params({"root": str(root)}), "train")
    with pytest.raises(DataError, match="no split 'val'"):
        cls(cls.parse_params({"root": str(root)}), "val")
