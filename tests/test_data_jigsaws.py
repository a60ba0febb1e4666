"""The ``jigsaws`` dataset (MUSDL's files) and ``synthetic-jigsaws`` (generated, not real)."""

from __future__ import annotations

import json
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from aqa_builtin.datasets.jigsaws import GRS_ITEMS, JIGSAWSDataset
from aqa_builtin.datasets.synthetic_jigsaws import SyntheticJIGSAWSDataset
from conftest import SHARED_DATA
from data_helpers import decode_clips, write_index_frames, write_index_video
from pydantic import ValidationError

from aqa_framework.errors import DataError
from aqa_framework.testing import check_component_class, check_dataset
from aqa_framework.video.dataset import DataSkipWarning

TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
RAW = {"resize": None, "crop": None, "normalize": False}
SMALL = {"num_clips": 2, "clip_length": 4}


@pytest.fixture
def real_root() -> Path:
    """MUSDL's label.pkl and splits.pkl (../shared/data/jigsaws); skips when absent."""
    root = SHARED_DATA / "jigsaws"
    if not (root / "label.pkl").is_file():
        pytest.skip(f"JIGSAWS annotation files not found at {root} (set AQA_SHARED_DATA)")
    return root


def jig(root, split="train", **params) -> JIGSAWSDataset:
    return JIGSAWSDataset(JIGSAWSDataset.parse_params({"root": str(root), **params}), split)


def write_pickles(root: Path, labels: dict, splits: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.pkl").write_bytes(pickle.dumps(labels, protocol=3))
    (root / "splits.pkl").write_bytes(pickle.dumps(splits, protocol=3))
    return root


def tiny_release(root: Path, **labels: list) -> Path:
    """Four Suturing folds of one trial each, labels overridable by trial name."""
    names = [f"Suturing_B00{i}" for i in range(1, 5)]
    base = {n: [i % 5 + 1, 2, 3, 4, 5, 1] for i, n in enumerate(names)}
    return write_pickles(root, {**base, **labels}, {"Suturing": [[n] for n in names]})


# --------------------------------------------------------------------------- real files


def test_real_files_give_musdl_folds_per_task(real_root):
    stats = json.loads((real_root / "STATS.json").read_text())
    for task in TASKS:
        total = stats["trials_per_task"][task]
        seen: set[str] = set()
        for fold, size in enumerate(stats["folds"][task]):
            test = jig(real_root, "test", task=task, fold=fold)
            train = jig(real_root, "train", task=task, fold=fold)
            assert (len(test), len(train)) == (size, total - size), (task, fold)
            assert not set(test.keys) & set(train.keys)
            assert len(set(test.keys) | set(train.keys)) == total
            assert all(k.startswith(f"{task}_") for k in test.keys + train.keys)
            seen |= set(test.keys)
        assert len(seen) == total  # the four test folds cover the task
    suturing = jig(real_root, "test", task="Suturing", fold=0)
    assert (len(suturing), len(jig(real_root, "train", task="Suturing", fold=0))) == (9, 30)


def test_real_labels_are_six_items_summing_to_the_grs(real_root):
    stats = json.loads((real_root / "STATS.json").read_text())
    items_of = {}
    for task in TASKS:
        for fold in range(4):
            for rec in jig(real_root, "test", task=task, fold=fold).records:
                items = rec.arrays["grs_items"]
                assert len(items) == 6 and all(1 <= v <= 5 and v == int(v) for v in items)
                assert sum(items) == rec.scores["grs"]
                items_of[rec.key] = items
    assert len(items_of) == stats["n_labelled_trials"]
    assert items_of["Suturing_B001"] == [3.0, 2.0, 1.0, 2.0, 2.0, 3.0]  # as in the README
    grs = [sum(v) for v in items_of.values()]
    assert (min(grs), max(grs)) == (stats["grs_total"]["min"], stats["grs_total"]["max"])
    assert np.mean(grs) == pytest.approx(stats["grs_total"]["mean"], abs=1e-3)
    targets = jig(real_root, task="Knot_Tying").targets
    assert (targets.scores["grs"].low, targets.scores["grs"].high) == (6, 30)
    items = targets.arrays["grs_items"]
    assert (items.kind, items.shape, items.low, items.high) == ("sub_scores", (6,), 1, 5)
    assert items.labels == list(GRS_ITEMS) and items.info == {"step": 1}
    assert items.labels[0] == "respect_for_tissue" and items.labels[-1].startswith("quality")


def test_musdl_defaults_and_the_sources_of_both_layouts(real_root):
    ds = jig(real_root, "test")
    p = ds.params
    assert (p.window, p.sampling, p.num_clips, p.clip_length) == (None, "uniform", 10, 16)
    assert (p.crop, p.resize, p.flip, p.jitter, p.camera) == (224, None, False, 0, "capture1")
    assert JIGSAWSDataset.input_shape(p) == (10, 3, 16, 224, 224)
    key = ds.keys[0]
    source = ds.sample_source(key)  # MUSDL's data/frames next to data/info
    assert source.resolve() == (real_root.parent / "frames" / f"{key}_capture1").resolve()
    videos = jig(real_root, "test", layout="videos", videos_dir="/data/JIGSAWS", camera="capture2")
    assert videos.sample_source(key) == Path(f"/data/JIGSAWS/Suturing/video/{key}_capture2.avi")
    check_component_class(JIGSAWSDataset, "dataset")
    check_component_class(SyntheticJIGSAWSDataset, "dataset")


# ---------------------------------------------------------------------------- validation


def test_unknown_task_and_fold_out_of_range_are_refused(tmp_path):
    root = tiny_release(tmp_path / "r")
    with pytest.raises(ValidationError, match="'Suturing', 'Needle_Passing' or 'Knot_Tying'"):
        JIGSAWSDataset.parse_params({"root": str(root), "task": "Suture"})
    with pytest.raises(ValidationError, match="less than or equal to 3"):
        JIGSAWSDataset.parse_params({"root": str(root), "fold": 4})
    with pytest.raises(DataError, match=r"splits\.pkl has no task 'Knot_Tying' .*Suturing"):
        jig(root, task="Knot_Tying")
    write_pickles(root, {"Suturing_B001": [1] * 6}, {"Suturing": [["Suturing_B001"], []]})
    with pytest.raises(
        DataError, match=r"splits\.pkl: Suturing has 2 fold\(s\), so there is no fold 3"
    ):
        jig(root, fold=3)
    with pytest.raises(DataError, match="root folder not found"):
        jig(tmp_path / "nowhere")


def test_bad_labels_name_the_trial_and_the_file(tmp_path):
    root = tiny_release(
        tmp_path / "r", Suturing_B002=[1, 2, 6, 3, 3, 3], Suturing_B003=[1, 2, 2.5, 3, 3, 3]
    )
    labels = pickle.loads((root / "label.pkl").read_bytes())
    del labels["Suturing_B004"]
    (root / "label.pkl").write_bytes(pickle.dumps(labels, protocol=3))
    with pytest.raises(DataError) as exc:
        jig(root, "train", fold=0)
    text = str(exc.value)
    assert "3 bad sample(s)" in text
    assert "Suturing_B002: " in text and "has 6 outside 1-5" in text
    assert "Suturing_B003: " in text and "2.5, not an integer" in text
    assert "Suturing_B004: listed in" in text and "no label in" in text and "label.pkl" in text
    write_index_frames(tmp_path / "frames" / "Suturing_B001_capture1", 8)  # MUSDL's layout
    with pytest.warns(DataSkipWarning, match="skipped 2 bad sample"):
        skipped = jig(root, "train", fold=1, on_error="skip")
    assert skipped.keys == ["Suturing_B001"]
    assert jig(root, "test", fold=0).keys == ["Suturing_B001"]


def test_malformed_files_are_errors_naming_them(tmp_path):
    root = tiny_release(tmp_path / "r")
    write_pickles(
        root, {"Suturing_B001": [1] * 6}, {"Suturing": [["Suturing_B001"], ["Suturing_B001"]]}
    )
    with pytest.raises(DataError, match="listed more than once across the folds: Suturing_B001"):
        jig(root)
    write_pickles(
        root, {"Suturing_B001": [1] * 6}, {"Suturing": [["Knot_Tying_B001"], ["Suturing_B001"]]}
    )
    with pytest.raises(DataError, match="Knot_Tying_B001: listed under Suturing .*another task"):
        jig(root, "test")
    (root / "splits.pkl").write_bytes(pickle.dumps(OrderedDict(Suturing=[]), protocol=3))
    with pytest.raises(DataError, match=r"refusing to load collections\.OrderedDict"):
        jig(root)
    (root / "splits.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"cannot read .*splits\.pkl as a MUSDL JIGSAWS pickle"):
        jig(root)
    (root / "splits.pkl").unlink()
    with pytest.raises(DataError, match=r"annotation file not found: .*splits\.pkl"):
        jig(root)


# ------------------------------------------------------------------------------- videos


def test_frame_folders_in_sorted_name_order_are_sampled_over_the_whole_trial(tmp_path):
    root = tiny_release(tmp_path / "info")
    lengths = {"Suturing_B001": 30, "Suturing_B002": 45, "Suturing_B003": 19, "Suturing_B004": 8}
    for trial, n in lengths.items():
        write_index_frames(tmp_path / "frames" / f"{trial}_capture1", n, pattern="f{index:04d}.jpg")
    ds = jig(root, "train", fold=3, **RAW, **SMALL)  # B001-B003
    for i, key in enumerate(ds.keys):
        n = lengths[key]
        sample = ds[i]
        assert sample["video"].shape == (2, 3, 4, 32, 64)
        expected = np.floor(np.linspace(0, n - 1, 8)).astype(int).reshape(2, 4)
        assert (decode_clips(sample["video"]) == expected).all(), key
        assert float(sample["scores"]["grs"]) == float(sample["arrays"]["grs_items"].sum())
    batch = check_dataset(ds, max_samples=3)
    assert batch["arrays"]["grs_items"].shape == (3, 6)
    short = jig(root, "test", fold=3, **RAW, num_clips=3, clip_length=4)  # B004: 8 frames
    with pytest.raises(DataError, match=r"Suturing_B004_capture1 has 8 frames, fewer than the 12"):
        short.check_samples()
    with pytest.raises(DataError, match="sample Suturing_B004"):
        short[0]
    numbered = jig(root, "test", fold=0, **RAW, **SMALL, frame_pattern="f{index:04d}.jpg")
    assert decode_clips(numbered[0]["video"])[-1, -1] == 29


def test_release_video_files_by_camera(tmp_path):
    root = tiny_release(tmp_path / "JIGSAWS")
    video_dir = root / "Suturing" / "video"
    write_index_video(video_dir / "Suturing_B001_capture1.avi", 40)
    write_index_video(video_dir / "Suturing_B001_capture2.avi", 25)
    for camera, n in (("capture1", 40), ("capture2", 25)):
        ds = jig(root, "test", fold=0, layout="videos", camera=camera, **RAW, **SMALL)
        idx = decode_clips(ds[0]["video"])
        assert (idx == np.floor(np.linspace(0, n - 1, 8)).astype(int).reshape(2, 4)).all()


# ---------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from aqa_framework.synth.jigsaws import generate_jigsaws

    roots = [tmp_path_factory.mktemp("jsynth") / f"s{i}" for i in range(2)]
    for r in roots:
        generate_jigsaws(r, 8, seed=3, size=(64, 32), min_frames=24, max_frames=40)
    return roots


def test_synthetic_generation_is_deterministic_in_musdl_format(synth, tmp_path):
    from aqa_framework.synth.jigsaws import generate_jigsaws, plan_trials, render_trial

    a, b = synth
    for name in ("label.pkl", "splits.pkl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    labels = pickle.loads((a / "label.pkl").read_bytes())
    splits = pickle.loads((a / "splits.pkl").read_bytes())
    assert set(splits) == set(TASKS) and all(len(f) == 4 for f in splits.values())
    assert len(labels) == 24 and all(
        isinstance(v, list) and len(v) == 6 and all(type(x) is int and 1 <= x <= 5 for x in v)
        for v in labels.values()
    )
    for task, folds in splits.items():
        names = [t for f in folds for t in f]
        assert len(names) == len(set(names)) == 8 and all(t.startswith(task) for t in names)
    trials, _ = plan_trials(8, 3, 24, 40)
    lengths = {t.frames for t in trials}
    assert len(lengths) > 3 and min(lengths) >= 24 and max(lengths) <= 40
    assert np.array_equal(render_trial(trials[0], 64, 32, 3), render_trial(trials[0], 64, 32, 3))
    meta = json.loads((a / "synthetic.json").read_text())
    assert meta["synthetic"] is True and meta["trials"][trials[0].name]["items"] == trials[0].items
    other, _ = plan_trials(8, 4, 24, 40)
    assert [t.items for t in other] != [t.items for t in trials]
    with pytest.raises(DataError, match="already exists"):
        generate_jigsaws(a, 8, seed=3, size=(64, 32))
    with pytest.raises(DataError, match="multiple of 32"):
        generate_jigsaws(tmp_path / "x", 8, size=(48, 32))


def test_synthetic_folder_reads_back_through_jigsaws(synth):
    root = synth[0]
    read = {"layout": "videos", "video_pattern": "{task}/video/{trial}_{camera}.mp4"}
    ds = jig(
        root, "train", task="Needle_Passing", fold=1, num_clips=3, clip_length=8, crop=32, **read
    )
    assert (
        len(ds) == 6
        and len(
            jig(
                root,
                "test",
                task="Needle_Passing",
                fold=1,
                crop=32,
                num_clips=3,
                clip_length=8,
                **read,
            )
        )
        == 2
    )
    batch = check_dataset(ds, max_samples=2)
    assert batch["video"].shape == (2, 3, 3, 8, 32, 32)
    assert (batch["scores"]["grs"] == batch["arrays"]["grs_items"].sum(dim=1)).all()
    right = jig(root, "test", camera="capture2", num_clips=3, clip_length=8, crop=32, **read)
    assert right[0]["video"].shape == (3, 3, 8, 32, 32)


def test_synthetic_jigsaws_generates_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {
        "trials_per_task": 8,
        "size": [64, 32],
        "min_frames": 32,
        "max_frames": 40,
        "crop": 32,
        "num_clips": 2,
    }
    params = SyntheticJIGSAWSDataset.parse_params(settings)
    assert (params.window, params.sampling, params.jitter, params.clip_length) == (
        None,
        "uniform",
        0,
        16,
    )
    assert SyntheticJIGSAWSDataset.input_shape(params) == (2, 3, 16, 32, 32)
    train = SyntheticJIGSAWSDataset(params, "train")
    roots = list((tmp_path / ".aqa-cache").glob("synthetic-jigsaws-*"))
    assert len(roots) == 1 and (roots[0] / "label.pkl").is_file()
    stamp = (roots[0] / "label.pkl").stat().st_mtime_ns
    test = SyntheticJIGSAWSDataset(params, "test")
    assert (roots[0] / "label.pkl").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert (len(train), len(test)) == (6, 2) and not set(train.keys) & set(test.keys)
    check_dataset(test, max_samples=2)
    with pytest.raises(ValidationError, match="more than the shortest generated trial"):
        SyntheticJIGSAWSDataset.parse_params({**settings, "num_clips": 3})
    with pytest.raises(ValidationError, match="larger than the 64x32 frames"):
        SyntheticJIGSAWSDataset.parse_params({**settings, "crop": 48})
    other = SyntheticJIGSAWSDataset.parse_params({**settings, "root": str(roots[0]), "seed": 1})
    with pytest.raises(DataError, match="other settings"):
        SyntheticJIGSAWSDataset(other, "train")


def test_cli_data_synth_jigsaws(tmp_path, capsys):
    from aqa_framework.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", str(tmp_path / "out"), "--kind", "jigsaws", "--trials", "8"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "not real" in text and "8 trials (folds 2/2/2/2)" in text
    assert (tmp_path / "out" / "Knot_Tying" / "video" / "Knot_Tying_B001_capture2.mp4").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", str(tmp_path / "o2"), "--kind", "jigsaws", "--dives", "9"])
    assert exc.value.code != 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = jig(
            tmp_path / "out",
            "test",
            layout="videos",
            video_pattern="{task}/video/{trial}_{camera}.mp4",
            crop=48,
            num_clips=6,
            clip_length=8,
        )
    assert len(ds) == 2
