"""finediving: the release's pickles (a synthetic root of the documented structure), the
96-frame linspace sampling, the targets TSA and CoRe need, and the errors for bad files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from aqa_builtin.datasets.finediving import step_transitions
from data_helpers import decode_clips, write_index_frames

from aqa_framework.errors import DataError
from aqa_framework.registry import Registry, get_registry
from aqa_framework.testing import check_dataset

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "finediving" / "finediving-core.yaml"
FILES = (
    "train_split.pkl",
    "test_split.pkl",
    "FineDiving_coarse_annotation.pkl",
    "FineDiving_fine-grained_annotation.pkl",
    "Sub_action_Types_Table.pkl",
)
NOT_REDISTRIBUTED = "FineDiving annotation files are not redistributed"

TABLE = {1: "Forward", 4: "Inward", 25: "3.5 Soms.Tuck", 36: "Entry", 38: "Background"}
EVENT = "FINADivingWorldCup2021_Men3m_final_r1"
# key -> (action_type, start_frame, frame count, dive_score, difficulty, step lengths, step ids)
DIVES = {
    (EVENT, 0): ("107b", 489, 24, 72.0, 3.0, (6, 10, 8), (1, 25, 36)),
    (EVENT, 1): ("107b", 120, 30, 66.0, 3.0, (8, 12, 10), (1, 25, 36)),
    (EVENT, 2): ("407c", 300, 20, 52.8, 3.2, (4, 5, 5, 6), (4, 25, 4, 36)),
    ("01", 3): ("407c", 10, 22, 70.4, 3.2, (7, 8, 7), (4, 25, 36)),
    (EVENT, 3): ("107b", 50, 26, 81.0, 3.0, (5, 13, 8), (1, 25, 36)),
    ("02", 1): ("207c", 0, 21, 60.0, 3.4, (6, 9, 6), (1, 25, 36)),
}
TRAIN = [(EVENT, 0), (EVENT, 1), (EVENT, 2), ("01", 3)]
TEST = [(EVENT, 3), ("02", 1)]


def _labels(lengths: tuple[int, ...], ids: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(
        [np.full(n, i, dtype=np.int64) for n, i in zip(lengths, ids, strict=True)]
    )


def write_finediving(root: Path, frames: bool = True) -> Path:
    """A tiny FineDiving root: the five release pickles and 64x32 index-encoded frame folders."""
    root.mkdir(parents=True, exist_ok=True)
    coarse, fine = {}, {}
    for key, (code, start, n, score, dd, lengths, ids) in DIVES.items():
        labels = _labels(lengths, ids)
        assert len(labels) == n
        coarse[key] = {
            "action_type": code,
            "start_frame": start,
            "end_frame": start + n - 1,
            "dive_score": score,
            "difficulty": dd,
            "judge_scores": [np.float64(8.0), np.float64(8.0), np.float64(8.0)],
        }
        firsts = np.cumsum((0, *lengths[:-1]))[1:] + start
        fine[key] = {
            "action_type": code,
            "dive_score": score,
            "difficulty": dd,
            "steps_transit_frames": firsts.astype(np.int64),
            "frames_labels": labels,
            "sub-action_types": {np.int64(i): TABLE[i] for i in ids},
        }
        if frames:
            write_index_frames(root / key[0] / str(key[1]), n, "{index:05d}.jpg", first=start)
    for name, data in zip(FILES, (TRAIN, TEST, coarse, fine, TABLE), strict=True):
        (root / name).write_bytes(pickle.dumps(data))
    return root


def open_split(root, split="train", train=False, **params):
    cls = get_registry().get("dataset", "finediving")
    return cls(cls.parse_params({"root": str(root), **params}), split, train)


RAW = {"resize": None, "crop": None, "normalize": False, "flip": False}  # frames as written


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_finediving(tmp_path_factory.mktemp("finediving"))


def _rewrite(root: Path, name: str, change) -> None:
    data = pickle.loads((root / name).read_bytes())
    change(data)
    (root / name).write_bytes(pickle.dumps(data))


def test_counts_keys_and_targets(root):
    train, test = open_split(root, "train"), open_split(root, "test")
    assert len(train) == 4 and len(test) == 2
    assert train.keys[0] == f"{EVENT}_0" and test.keys[1] == "02_1"
    targets = train.targets
    assert targets.classes["action_type"].labels == ["107b", "207c", "407c"]
    assert targets.scores["final_score"].high == 81.0
    arrays = targets.arrays
    assert {n: a.kind for n, a in arrays.items()} == {
        "difficulty": "difficulty",
        "frame_labels": "step_labels",
        "transitions": "step_transitions",
    }
    assert arrays["frame_labels"].shape == (96,) and arrays["transitions"].shape == (2,)
    assert arrays["frame_labels"].info["sub_action_types"]["25"] == "3.5 Soms.Tuck"
    row = train.sample_targets(2)  # (EVENT, 2): 407c, four steps
    assert row["scores"] == {"final_score": 52.8}
    assert row["classes"] == {"action_type": 2}
    assert float(row["arrays"]["difficulty"]) == pytest.approx(3.2)
    labels = _labels((4, 5, 5, 6), (4, 25, 4, 36))
    sampled = labels[np.floor(np.linspace(0, 19, 96)).astype(int)]
    assert row["arrays"]["frame_labels"].tolist() == sampled.tolist()
    # 4 (take-off) then 25 then 4 again then 36: the steps in order of first appearance are
    # 4, 25, 36; 25 first at the sampled frame of frame 4, 36 at that of frame 14
    first_25 = int(np.argmax(sampled == 25))
    first_36 = int(np.argmax(sampled == 36))
    assert row["arrays"]["transitions"].tolist() == [first_25 - 1, first_36 - 1]


def test_step_transitions():
    assert step_transitions(np.array([1, 1, 25, 25, 25, 36])) == (1, 4)
    assert step_transitions(np.array([1, 1, 36, 36])) == (1, 1)
    assert step_transitions(np.array([5, 5, 5])) is None


def test_96_frames_by_linspace_in_nine_clips(root):
    ds = open_split(root, "train", **RAW)
    sample = ds[0]  # 24 frames: the linspace repeats frames
    assert tuple(sample["video"].shape) == (9, 3, 16, 32, 64)
    positions = np.floor(np.linspace(0, 23, 96)).astype(int)
    expected = np.stack([positions[s : s + 16] for s in range(0, 81, 10)])
    assert decode_clips(sample["video"]).tolist() == expected.tolist()
    assert sample["arrays"]["frame_labels"].shape == (96,)


def test_default_transforms_and_kit(root):
    cls = get_registry().get("dataset", "finediving")
    params = cls.parse_params({"root": str(root)})
    assert cls.input_shape(params) == (9, 3, 16, 112, 112)
    assert (params.resize, params.crop) == ((200, 112), 112)
    offsets = params.temporal_sampling().offsets(101)
    assert offsets[:, 0].tolist() == np.floor(np.linspace(0, 100, 96))[::10][:9].tolist()
    ds = cls(params, "test")
    assert tuple(ds[0]["video"].shape) == (9, 3, 16, 112, 112)
    check_dataset(ds)


def test_inconsistent_sampling_refused(root):
    with pytest.raises(ValueError, match="span 104 frames, more than the num_frames 96"):
        open_split(root, clip_stride=11)
    with pytest.raises(ValueError, match="window null"):
        open_split(root, window=96)


def test_unsafe_pickle_refused(tmp_path):
    root = write_finediving(tmp_path / "fd", frames=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    (root / "test_split.pkl").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(DataError, match=r"test_split\.pkl.*refusing to load"):
        open_split(root, "test")


def test_not_a_key_list(tmp_path):
    root = write_finediving(tmp_path / "fd", frames=False)
    (root / "train_split.pkl").write_bytes(pickle.dumps([("ok", 1), ("bad/name", 2)]))
    with pytest.raises(DataError, match=r"train_split\.pkl: key .*bad/name"):
        open_split(root)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "FineDiving_fine-grained_annotation.pkl",
            lambda d: d[(EVENT, 1)].update(dive_score=60.0),
            r"FINADivingWorldCup2021_Men3m_final_r1', 1\): dive_score is 60\.0 in "
            r"FineDiving_fine-grained_annotation\.pkl but 66\.0",
        ),
        (
            "FineDiving_fine-grained_annotation.pkl",
            lambda d: d[("01", 3)].update(frames_labels=np.ones(5, dtype=np.int64)),
            r"\('01', 3\): frames_labels in FineDiving_fine-grained_annotation\.pkl has 5 "
            r"labels, but the dive has 22 frames",
        ),
        (
            "FineDiving_fine-grained_annotation.pkl",
            lambda d: d[(EVENT, 0)]["frames_labels"].__setitem__(0, 99),
            r"sub-action type\(s\) \[99\] that Sub_action_Types_Table\.pkl does not list",
        ),
        (
            "FineDiving_coarse_annotation.pkl",
            lambda d: d[(EVENT, 2)].pop("end_frame"),
            r"FineDiving_coarse_annotation\.pkl lacks 'end_frame'",
        ),
        (
            "FineDiving_coarse_annotation.pkl",
            lambda d: d.pop(("01", 3)),
            r"\('01', 3\) of train_split\.pkl has no entry in FineDiving_coarse_annotation",
        ),
    ],
    ids=["score-disagrees", "label-count", "unknown-type", "no-end-frame", "no-entry"],
)
def test_bad_annotation_named(tmp_path, name, change, message):
    root = write_finediving(tmp_path / "fd")
    _rewrite(root, name, change)
    with pytest.raises(DataError, match=message):
        open_split(root)
    with pytest.warns(UserWarning, match="skipped 1 bad sample"):
        assert len(open_split(root, on_error="skip")) == 3


def test_missing_or_short_frame_folder(tmp_path):
    root = write_finediving(tmp_path / "fd")
    for path in sorted((root / "02" / "1").iterdir()):
        path.unlink()
    (root / "02" / "1").rmdir()
    ds = open_split(root, "test", **RAW)
    with pytest.raises(DataError, match=r"02[/\\]1"):
        ds.check_samples()
    with pytest.raises(DataError, match=r"02[/\\]1"):
        ds[1]
    last = sorted((root / EVENT / "3").iterdir())[-1]
    last.unlink()
    ds = open_split(root, "test", **RAW)
    with pytest.raises(DataError, match=r"holds 25 frames, but the annotations give the dive 26"):
        ds[0]


def test_example_validates_against_the_fixture(tmp_path):
    from aqa_framework.builder import check_spec
    from aqa_framework.resolve import load

    root = write_finediving(tmp_path / "fd", frames=False)
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert raw["data"]["partners"]["group_by"] == "action_type"
    overrides = [f"data.params.root={root}", "model.backbone.params.pretrained=null"]
    resolved = load(EXAMPLE, overrides, registry=Registry(), label="finediving-core")
    report = check_spec(resolved, samples=False)
    assert "parameters" in report


def _shared_root() -> Path:
    return Path(os.environ.get("AQA_SHARED_DATA", REPO / ".." / "shared" / "data")) / "finediving"


def test_documented_structure_fits_the_reader():
    """STATS.json's counts (the real files are not here) fit what the reader assumes."""
    stats_path = _shared_root() / "STATS.json"
    if not stats_path.is_file():
        pytest.skip(f"FineDiving STATS.json not found at {stats_path}")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    assert stats["n_train"] + stats["n_test"] == stats["n_samples"]
    assert stats["train_test_overlap"] == 0
    assert stats["same_keys_in_all_three_dicts"] and stats["coarse_matches_fine_grained_scores"]
    n = stats["n_samples"]
    assert stats["frames_labels_length_equals_end_minus_start_plus_1"] == n
    assert stats["frames_labels_length"]["min"] >= 1
    # every dive has at least two transitions: TSA's two transition targets always exist
    assert sum(stats["steps_transit_frames_length"].values()) == n
    assert min(map(int, stats["steps_transit_frames_length"])) >= 2
    assert set(stats["sub_action_ids_used"]) <= set(range(stats["sub_action_table_size"] + 1))
    assert stats["difficulty"]["min"] >= 1.0 and stats["difficulty"]["max"] <= 5.0


def test_real_files_if_present():
    root = _shared_root()
    if not all((root / name).is_file() for name in FILES):
        pytest.skip(NOT_REDISTRIBUTED)
    stats = json.loads((root / "STATS.json").read_text(encoding="utf-8"))
    train, test = open_split(root, "train"), open_split(root, "test")
    assert len(train) == stats["n_train"] and len(test) == stats["n_test"]
    assert len(train.targets.classes["action_type"].labels) == stats["n_action_types"]
