"""The aqa-7 dataset on the real split files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from data_helpers import decode_clips, write_index_frames, write_index_video
from pydantic import ValidationError

from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry

RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}


@pytest.fixture
def splits(shared_data):
    return shared_data / "aqa-7"


def open_split(root, split="train", train=False, **params):
    cls = get_registry().get("dataset", "aqa-7")
    return cls(cls.parse_params({"root": str(root), **params}), split, train)


def test_vault_is_the_default_action_with_scores_in_points(splits):
    train, test = open_split(splits), open_split(splits, "test")
    assert (len(train), len(test)) == (120, 56)
    scores = [r.scores["final_score"] for r in train.records + test.records]
    assert min(scores) == pytest.approx(12.3) and max(scores) == pytest.approx(16.87)
    target = train.targets.scores["final_score"]
    assert (target.low, target.high) == (pytest.approx(12.3), pytest.approx(16.87))
    assert train.targets.classes == {} and train.targets.captions is None
    assert train.keys[0].startswith("gym_vault_") and len(train.keys[0]) == len("gym_vault_000")
    assert train.records[0].source.parent.name == "gym_vault-out"


@pytest.mark.parametrize(
    ("action", "n_train", "n_test"),
    [
        ("diving", 300, 70),
        (3, 120, 55),
        ("snowboard_big_air", 140, 66),
        (5, 60, 28),
        ("sync_diving_10m", 63, 28),
    ],
)
def test_every_action_by_name_or_index(splits, action, n_train, n_test):
    assert len(open_split(splits, action=action)) == n_train
    assert len(open_split(splits, "test", action=action)) == n_test


def test_score_scale_is_detected_or_configured(splits, tmp_path):
    raw = open_split(splits, score_divisor=1)
    assert max(r.scores["final_score"] for r in raw.records) > 1000  # the file's x100 values
    rows = np.array([[2, 1, 14.5], [2, 2, 15.1]])
    for name in ("consolidated_train_list", "consolidated_test_list"):
        scipy.io.savemat(tmp_path / f"{name}.mat", {name: rows})
        rows = np.array([[2, 3, 14.9]])  # the test list: other samples
    points = open_split(tmp_path)  # a copy that stores points is read as points
    assert [r.scores["final_score"] for r in points.records] == [14.5, 15.1]


def test_bad_action_and_bad_files(splits, tmp_path):
    cls = get_registry().get("dataset", "aqa-7")
    with pytest.raises(ValidationError, match="unknown action 'vault'"):
        cls.parse_params({"root": str(splits), "action": "vault"})
    with pytest.raises(ValidationError, match="1..6"):
        cls.parse_params({"root": str(splits), "action": 7})
    with pytest.raises(DataError, match="split file not found"):
        open_split(splits, train_list="nope.mat")
    scipy.io.savemat(tmp_path / "consolidated_train_list.mat", {"x": np.zeros((3, 2))})
    with pytest.raises(DataError, match=r"shape \(3, 2\), expected \(N, 3\)"):
        open_split(tmp_path)


def test_first_103_frames_of_a_sample_folder_or_video(splits, tmp_path):
    train = open_split(splits, videos_dir=str(tmp_path), **RAW)
    key = train.keys[0]
    sample_no = int(key.rsplit("_", 1)[1])
    write_index_frames(
        tmp_path / "gym_vault-out" / f"{sample_no:03d}", 110, pattern="img_{index:05d}.jpg"
    )
    idx = decode_clips(train[0]["video"])
    assert (idx == np.arange(6)[:, None] * 16 + np.arange(16)).all()
    assert train[0]["scores"]["final_score"] == train.records[0].scores["final_score"]
    assert "classes" not in train[0]

    write_index_video(tmp_path / "gym_vault" / f"{sample_no:03d}.avi", 120)
    videos = open_split(splits, layout="videos", videos_dir=str(tmp_path), **RAW)
    assert decode_clips(videos[0]["video"])[0, 0] == 0
    with pytest.raises(DataError, match=f"sample {videos.keys[1]}: video not found"):
        videos[1]
