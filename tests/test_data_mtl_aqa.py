"""The mtl-aqa dataset on the real release files, with small videos placed at real frame indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aqa_builtin.datasets.mtl_aqa import load_release_pickle
from data_helpers import decode_clips, write_index_frames, write_index_video

from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry

RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}
C3D_OFFSETS = np.arange(6)[:, None] * 16 + np.arange(16)[None, :]


@pytest.fixture
def release(shared_data):
    return shared_data / "mtl-aqa" / "MTL-AQA_split_0_data"


def open_split(root, split="train", train=False, **params):
    cls = get_registry().get("dataset", "mtl-aqa")
    return cls(cls.parse_params({"root": str(root), **params}), split, train)


def test_real_release_splits_and_targets(release):
    train, test = open_split(release), open_split(release, "test")
    assert (len(train), len(test)) == (1059, 353)
    assert not set(train.keys) & set(test.keys)
    t = train.targets
    assert {k: v.num_classes for k, v in t.classes.items()} == {
        "position": 3,
        "armstand": 2,
        "rotation_type": 4,
        "ss_no": 10,
        "tw_no": 8,
    }
    assert t.classes["position"].labels == ["free", "pike", "tuck"]
    assert t.classes["rotation_type"].labels == ["back", "forward", "inward", "reverse"]
    assert t.classes["ss_no"].labels[3] == "1.5 somersaults"
    assert t.classes["ss_no"].labels[2] == "1 somersault"
    assert t.classes["tw_no"].labels[4] == "2 twists"
    assert (t.scores["final_score"].low, t.scores["final_score"].high) == (0.0, 104.5)
    caps = t.captions
    assert caps.vocab_size == 5781  # the file's size, not the paper's 5779
    assert (caps.sos_index, caps.eos_index, caps.pad_index, caps.max_length) == (1, 0, 0, 98)


def test_keys_records_and_captions_follow_the_release(release):
    train = open_split(release)
    ann = load_release_pickle(release / "final_annotations_dict.pkl")
    split = load_release_pickle(release / "train_split_0.pkl")
    assert train.keys[0] == f"{split[0][0]:02d}_{split[0][1]:02d}"
    rec = train.records[0]
    assert rec.end == ann[split[0]]["end_frame"]
    assert rec.scores["final_score"] == ann[split[0]]["final_score"]
    assert rec.source == release / "whole_videos" / f"{split[0][0]:02d}.mp4"
    lengths = [len(r.caption) for r in train.records]
    assert max(lengths) == 100  # 98 words + <sos> + <eos>, as the official 100 tokens
    long = [r for r in train.records if len(r.caption) == 100]
    assert long and all(r.caption[0] == 1 and r.caption[-1] == 0 for r in long)
    words = train.targets.captions.decode(train.records[0].caption)
    assert words and "<sos>" not in words
    short = open_split(release, max_caption_length=10)
    assert max(len(r.caption) for r in short.records) == 12


def test_records_keep_the_complete_caption_for_the_metrics(release):
    train = open_split(release)
    caps = load_release_pickle(release / "final_captions_dict.pkl")
    by_key = {f"{int(e):02d}_{int(d):02d}": words for (e, d), words in caps.items()}
    rec = next(r for r in train.records if len(r.caption) == 100)  # cut for training
    words = rec.caption_text.split()
    assert words == by_key[rec.key][1:-1] and len(words) > 98
    assert words[:98] == train.targets.captions.decode(rec.caption).split()


def test_numpy_caption_keys_are_matched(release):
    caps = load_release_pickle(release / "final_captions_dict.pkl")
    assert any(type(k[0]).__module__ == "numpy" for k in caps)
    assert all(r.caption for r in open_split(release, "test").records)


def test_event_video_frames_decode_at_the_real_indices(release, tmp_path):
    # event 14 holds test dive (14, 1) ending at frame 1210 and train dive (14, 2) at 2594
    write_index_video(tmp_path / "videos" / "14.mp4", 2600)
    test = open_split(release, "test", videos_dir=str(tmp_path / "videos"), **RAW)
    sample = test[test.keys.index("14_01")]
    assert sample["video"].shape == (6, 3, 16, 32, 64)
    assert (decode_clips(sample["video"]) == 1210 - 103 + C3D_OFFSETS).all()
    assert sample["classes"].keys() == test.targets.classes.keys()
    assert sample["caption"].shape == (100,) and sample["caption"][0] == 1
    assert sample["caption"][sample["caption_length"] - 1] == 0
    cut = test.targets.captions.decode(sample["caption"].tolist())
    assert sample["caption_text"].startswith(cut)

    train = open_split(release, "train", True, videos_dir=str(tmp_path / "videos"), **RAW)
    torch.manual_seed(0)
    idx = decode_clips(train[train.keys.index("14_02")]["video"])
    assert 2594 - 106 <= idx[0, 0] <= 2594 - 100
    assert (idx == idx[0, 0] + C3D_OFFSETS).all()
    with pytest.raises(DataError, match=r"sample 14_03: .*outside the 2600 frames.*14\.mp4"):
        test[test.keys.index("14_03")]  # ends at 3764


def test_official_frame_folders_decode_at_the_real_indices(release, tmp_path):
    write_index_frames(tmp_path / "frames" / "14", 1210)  # 000001.jpg = frame 0
    test = open_split(
        release,
        "test",
        layout="frames",
        videos_dir=str(tmp_path / "frames"),
        sampling="spread",
        num_clips=1,
        **RAW,
    )
    idx = decode_clips(test[test.keys.index("14_01")]["video"])
    assert idx[0].tolist() == [1210 - 103 + int(o) for o in np.arange(0, 103, 6.5)]
    # the last frame of the window is the file named after end_frame, as the official loader
    assert idx[0, -1] + 1 <= 1210


def test_missing_release_files_are_named(tmp_path, release):
    with pytest.raises(DataError, match="root folder not found"):
        open_split(tmp_path / "nope")
    with pytest.raises(DataError, match="annotation file not found: .*missing.pkl"):
        open_split(release, annotations="missing.pkl")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(DataError, match="refusing to load"):
        load_release_pickle(evil)
