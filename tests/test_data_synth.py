"""The synthetic diving generator, read back through mtl-aqa, and the synthetic-diving dataset."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from aqa_framework.cli.main import main
from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry
from aqa_framework.synth.dives import Dive, caption_words, difficulty, judge, sample_dive
from aqa_framework.synth.diving import generate_diving, plan_dataset, render_event
from aqa_framework.video.readers import DecordVideoReader

SIZE = (64, 48)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "dives"
    summary = generate_diving(root, dives=10, seed=3, size=SIZE, dives_per_event=6)
    return root, summary


def mtl(root, split="train", train=False, **params):
    cls = get_registry().get("dataset", "mtl-aqa")
    return cls(
        cls.parse_params({"root": str(root), "resize": None, "crop": None, **params}), split, train
    )


def test_generator_writes_the_release_structures(synth):
    root, summary = synth
    assert (summary.dives, summary.events, summary.train, summary.test) == (10, 2, 7, 3)
    ann = pickle.loads((root / "final_annotations_dict.pkl").read_bytes())
    caps = pickle.loads((root / "final_captions_dict.pkl").read_bytes())
    train = pickle.loads((root / "train_split_0.pkl").read_bytes())
    test = pickle.loads((root / "test_split_0.pkl").read_bytes())
    vocab = json.loads((root / "vocab.json").read_text())
    assert sorted(ann) == sorted(train + test) and not set(train) & set(test)
    assert all(isinstance(k, tuple) and len(k) == 2 for k in ann)
    assert set(next(iter(ann.values()))) == {
        "primary_view",
        "start_frame",
        "end_frame",
        "position",
        "difficulty",
        "armstand",
        "rotation_type",
        "ss_no",
        "tw_no",
        "final_score",
        "judge_scores",
    }
    assert {(int(e), d) for e, d in caps} == set(ann)
    assert all(c[0] == "<sos>" and c[-1] == "<eos>" for c in caps.values())
    assert vocab["ix_to_word"]["0"] == "<eos>" and vocab["word_to_ix"]["<sos>"] == 1
    assert sorted((root / "whole_videos").iterdir())[0].name == "01.mp4"
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["synthetic"] is True and "NOT real" in (root / "README.md").read_text()
    for key, a in ann.items():
        d = meta["details"][f"{key[0]:02d}_{key[1]:02d}"]
        marks = a["judge_scores"]  # as in MUSDL's and CoRe's files: float64 (7,) arrays
        assert type(marks) is np.ndarray and marks.dtype == np.float64 and marks.shape == (7,)
        assert marks.tolist() == d["judges"]
        assert ((marks >= 0) & (marks <= 10) & (marks * 2 == np.round(marks * 2))).all()
        # the real formula, exactly: difficulty x the middle three of the seven marks, 2 decimals
        assert a["final_score"] == round(a["difficulty"] * float(np.sort(marks)[2:5].sum()), 2)
    assert not list(root.parent.glob(".dives.tmp-*"))


def test_mtl_aqa_reads_the_synthetic_folder(synth):
    root, _ = synth
    train = mtl(root, crop=48)
    assert len(train) == 7 and len(mtl(root, "test")) == 3
    sample = train[0]
    assert sample["video"].shape == (6, 3, 16, 48, 48)
    assert sample["caption"][: sample["caption_length"]].tolist()[-1] == 0
    text = train.targets.captions.decode(sample["caption"].tolist())
    assert "position" in text and "judges" in text


def test_synthetic_dives_carry_judge_scores_and_difficulty(synth, recwarn):
    from aqa_builtin.datasets.mtl_aqa import ScoreFormulaWarning, load_release_pickle

    root, _ = synth
    train = mtl(root, crop=48)
    arrays = train.targets.arrays
    assert set(arrays) == {"judge_scores", "difficulty"}
    judges = arrays["judge_scores"]
    assert (judges.kind, judges.shape, judges.low, judges.high) == ("judge_scores", (7,), 0, 10)
    assert judges.labels == [f"judge_{i}" for i in range(1, 8)] and judges.info == {"step": 0.5}
    assert (arrays["difficulty"].kind, arrays["difficulty"].shape) == ("difficulty", ())
    ann = load_release_pickle(root / "final_annotations_dict.pkl")  # the restricted reader
    sample = train[0]
    key = tuple(int(k) for k in sample["key"].split("_"))
    assert sample["arrays"]["judge_scores"].dtype == torch.float32
    assert sample["arrays"]["judge_scores"].tolist() == ann[key]["judge_scores"].tolist()
    assert sample["arrays"]["difficulty"].shape == ()
    assert sample["arrays"]["difficulty"].item() == pytest.approx(ann[key]["difficulty"])
    # every synthetic score follows from its marks: nothing to warn about
    assert not [w for w in recwarn if issubclass(w.category, ScoreFormulaWarning)]
    assert mtl(root, extra_targets=[]).targets.arrays == {}
    assert set(mtl(root, extra_targets=["difficulty"]).targets.arrays) == {"difficulty"}


def test_a_frame_decodes_to_the_pixels_that_were_rendered(synth):
    root, _ = synth
    events, _ = plan_dataset(10, 3, 6)
    expected = render_event(events[1], *SIZE, seed=3)
    reader = DecordVideoReader(root / "whole_videos" / "02.mp4")
    assert reader.num_frames == len(expected) == events[1].num_frames
    ann = pickle.loads((root / "final_annotations_dict.pkl").read_bytes())
    end = ann[(2, 2)]["end_frame"]
    picks = [0, end - 30, end - 103 + 40, len(expected) - 1]  # splash, flight, edges
    got = reader.read(picks).astype(np.int16)
    err = np.abs(got - expected[picks].astype(np.int16)).mean(axis=(1, 2, 3))
    assert (err < 4).all(), err
    # and the rendered frames really differ from each other (the diver moves)
    assert np.abs(expected[end - 60].astype(int) - expected[end - 50]).mean() > 0.2


def test_generation_is_deterministic_and_refuses_to_clobber(synth, tmp_path):
    a, _ = plan_dataset(8, 5, 4)
    b, _ = plan_dataset(8, 5, 4)
    assert [d.final_score for e in a for d in e.dives] == [
        d.final_score for e in b for d in e.dives
    ]
    assert np.array_equal(render_event(a[0], 64, 48, 5), render_event(b[0], 64, 48, 5))
    root, _ = synth
    with pytest.raises(DataError, match="already exists"):
        generate_diving(root, dives=10, seed=3, size=SIZE)
    with pytest.raises(DataError, match="even and >= 32"):
        generate_diving(tmp_path / "x", dives=10, size=(63, 48))
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="not a synthetic dataset"):
        generate_diving(tmp_path / "mine", dives=10, overwrite=True)


def test_overwrite_replaces_only_the_generated_files(tmp_path):
    root = tmp_path / "dives"
    generate_diving(root, dives=8, seed=1, size=(32, 32), dives_per_event=2)
    listed = json.loads((root / "synthetic.json").read_text())["files"]
    assert "whole_videos/04.mp4" in listed and "synthetic.json" in listed
    (root / "notes.txt").write_text("mine")
    (root / "whole_videos" / "extra.mp4").write_bytes(b"mine too")
    generate_diving(root, dives=4, seed=2, size=(32, 32), dives_per_event=2, overwrite=True)
    assert (root / "notes.txt").read_text() == "mine"
    assert (root / "whole_videos" / "extra.mp4").read_bytes() == b"mine too"
    videos = sorted(p.name for p in (root / "whole_videos").iterdir())
    assert videos == ["01.mp4", "02.mp4", "extra.mp4"]  # events 3 and 4 were the generator's
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 2
    assert len(mtl(root, "train")) + len(mtl(root, "test")) == 4
    assert not [p for p in tmp_path.iterdir() if p.name != "dives"]  # no temporaries left


def test_dive_model_scores_and_captions():
    assert difficulty(position=2, armstand=0, rotation_type=1, ss_no=9, tw_no=0) == 3.2
    assert difficulty(0, 1, 3, 9, 7) == 4.1  # clipped
    marks, score = judge(8.0, 3.0, np.random.default_rng(0))
    assert len(marks) == 7 and all(m * 2 == int(m * 2) for m in marks)
    assert score == pytest.approx(3.0 * sum(sorted(marks)[2:5]))
    rng = np.random.default_rng(0)
    dives = [sample_dive(rng) for _ in range(400)]
    execution = np.array([d.execution for d in dives])
    scores = np.array([d.final_score for d in dives])
    splash = np.array([d.splash for d in dives])
    assert np.corrcoef(execution, scores)[0, 1] > 0.7  # the visible faults drive the score
    assert np.corrcoef(splash, scores)[0, 1] < -0.5
    d = Dive(
        position=1,
        armstand=1,
        rotation_type=2,
        ss_no=7,
        tw_no=3,
        difficulty=3.6,
        rotation_error=-25.0,
        splash=0.8,
        judges=(4.0,) * 7,
    )
    words = " ".join(caption_words(d))
    assert words.startswith("an inward three and a half somersaults with one and a half twists")
    assert "from an armstand in the pike position" in words
    assert "well short on the entry with a huge splash" in words
    assert "difficulty three point six" in words and words.endswith("mostly fours .")


def test_synthetic_diving_dataset_generates_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cls = get_registry().get("dataset", "synthetic-diving")
    params = cls.parse_params({"dives": 6, "seed": 1, "size": [64, 48], "crop": 48})
    train = cls(params, "train", True)
    roots = list((tmp_path / ".aqa-cache").iterdir())
    assert len(roots) == 1 and roots[0].name.startswith("synthetic-diving-")
    stamp = (roots[0] / "synthetic.json").stat().st_mtime_ns
    test = cls(params, "test")
    assert (roots[0] / "synthetic.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert len(train) + len(test) == 6
    assert train.targets.classes["position"].num_classes == 3
    torch.manual_seed(0)
    assert train[0]["video"].shape == (6, 3, 16, 48, 48)

    other = cls.parse_params(
        {"root": str(roots[0]), "dives": 7, "seed": 1, "size": [64, 48], "crop": 48}
    )
    with pytest.raises(DataError, match="other settings"):
        cls(other, "train")
    with pytest.raises(ValidationError, match="larger than the 64x48 frames"):
        cls.parse_params({"size": [64, 48]})  # the default crop of 64 does not fit


def test_cli_data_synth_prints_a_summary(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "data",
                "synth",
                str(tmp_path / "out"),
                "--dives",
                "5",
                "--size",
                "64x48",
                "--workers",
                "1",
            ]
        )
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "5 (4 train / 1 test)" in text and "not real" in text
    assert (tmp_path / "out" / "whole_videos" / "01.mp4").is_file()


def test_dataloader_workers_after_the_parent_opened_the_videos(synth):
    from torch.utils.data import DataLoader

    root, _ = synth
    ds = mtl(root, crop=48)
    first = ds[0]["video"]  # the parent now holds an open decord reader
    loader = DataLoader(
        ds, batch_size=4, num_workers=2, multiprocessing_context="fork", timeout=120
    )
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == len(ds)
    assert batches[0]["video"].shape == (4, 6, 3, 16, 48, 48)
    assert torch.equal(batches[0]["video"][0], first)
    assert batches[0]["classes"]["position"].shape == (4,)
    assert batches[0]["caption"].shape == (4, 100)
    assert batches[0]["arrays"]["judge_scores"].shape == (4, 7)
    assert batches[0]["arrays"]["difficulty"].shape == (4,)


def test_cli_data_cache_fills_the_frame_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: {backbone: {name: c3d}, heads: {score: {name: score}}}\n"
        "data: {name: synthetic-diving, params: {dives: 5, size: [64, 48], crop: 48}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as exc:
        main(["data", "cache", str(spec)])
    assert exc.value.code == 1 and "no cache_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["data", "cache", str(spec), "--set", "data.params.cache_dir=frames", "-j", "2"])
    assert exc.value.code == 0
    assert "train: 4 samples cached" in capsys.readouterr().out
    files = sorted((tmp_path / "frames").rglob("*.npy"))
    assert len(files) == 5 and not list((tmp_path / "frames").rglob("*.tmp"))
    written = {f: f.stat().st_mtime_ns for f in files}
    with pytest.raises(SystemExit) as exc:  # a second fill finds everything cached
        main(["data", "cache", str(spec), "--set", "data.params.cache_dir=frames", "-j", "0"])
    assert exc.value.code == 0
    assert {f: f.stat().st_mtime_ns for f in files} == written
    capsys.readouterr()

    # a corrupt video met in a worker process: still one clear message, not its traceback
    (video,) = (tmp_path / ".aqa-cache").glob("synthetic-diving-*/whole_videos/01.mp4")
    video.write_bytes(b"not a video" * 100)
    with pytest.raises(SystemExit) as exc:
        main(["data", "cache", str(spec), "--set", "data.params.cache_dir=fresh", "-j", "2"])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert "Error: sample 01_" in err and "cannot open video" in err
    assert "Traceback" not in err and "DataLoader worker" not in err
