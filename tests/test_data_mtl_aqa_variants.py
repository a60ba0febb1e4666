"""mtl-aqa on MUSDL's and CoRe's annotation files: judge scores, difficulty, dive numbers.

Also the restricted unpickler that reads them (numeric numpy arrays, nothing else), and that
the official release keeps exactly the targets it had before (old runs must still resume).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from aqa_builtin.datasets.mtl_aqa import ScoreFormulaWarning, load_release_pickle
from data_helpers import annotation, write_index_video
from pydantic import ValidationError

from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry
from aqa_framework.targets import Targets
from aqa_framework.testing import check_dataset
from aqa_framework.video.dataset import DataSkipWarning

MUSDL_FILE = "augmented_final_annotations_dict.pkl"
CORE_FILE = "final_annotations_dict_with_dive_number.pkl"

# sha256 of the official release's targets (scores, classes, captions as JSON, sorted keys),
# dumped before judge scores were read: a change here breaks resuming the runs made before
OFFICIAL_TARGETS_SHA256 = "fc58b0b207440457d66291f5bdefcd137b56a17da3544b11d7f4d0a0487e7a17"


def open_split(root, split="train", train=False, **params):
    cls = get_registry().get("dataset", "mtl-aqa")
    return cls(cls.parse_params({"root": str(root), **params}), split, train)


def open_variant(root, file, split="train", **params):
    return open_split(root, split, annotations=file, captions=None, **params)


def formula_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ScoreFormulaWarning)]


@pytest.fixture
def musdl(shared_data):
    root = shared_data / "musdl-mtl-aqa"
    if not (root / MUSDL_FILE).is_file():
        pytest.skip(f"MUSDL's annotation files not found at {root}")
    return root


@pytest.fixture
def core(shared_data):
    root = shared_data / "core-mtl-aqa"
    if not (root / CORE_FILE).is_file():
        pytest.skip(f"CoRe's annotation files not found at {root}")
    return root


def empty_event_videos(folder):
    """Files named like the 26 event videos: enough for on_error: skip's existence check."""
    folder.mkdir()
    for event in range(1, 27):
        (folder / f"{event:02d}.mp4").write_bytes(b"")
    return folder


# -- the real files --------------------------------------------------------------------------


@pytest.mark.real_data
def test_core_file_gives_judge_scores_difficulty_and_dive_numbers(core):
    stats = json.loads((core / "STATS.json").read_text())
    assert not (core / "vocab.json").exists()  # captions: null needs no vocabulary
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train, test = open_variant(core, CORE_FILE), open_variant(core, CORE_FILE, "test")
    assert (len(train), len(test)) == (1059, 353)
    t = train.targets
    assert t == test.targets and t.captions is None
    judges, dd = t.arrays["judge_scores"], t.arrays["difficulty"]
    assert (judges.kind, judges.shape, judges.low, judges.high) == ("judge_scores", (7,), 0, 10)
    assert judges.labels == [f"judge_{i}" for i in range(1, 8)] and judges.info == {"step": 0.5}
    assert (dd.kind, dd.shape) == ("difficulty", ())
    assert set(t.arrays) == {"judge_scores", "difficulty"}
    codes = t.classes["dive_number"].labels
    assert codes == stats["dive_number"]["all"] and len(codes) == 58 == len(set(codes))
    assert list(t.classes)[:5] == ["position", "armstand", "rotation_type", "ss_no", "tw_no"]

    ann = load_release_pickle(core / CORE_FILE)
    for rec in train.records[:50]:
        a = ann[tuple(int(k) for k in rec.key.split("_"))]
        assert rec.arrays["judge_scores"].tolist() == a["judge_scores"].tolist()
        assert float(rec.arrays["difficulty"]) == a["difficulty"]
        assert codes[rec.classes["dive_number"]] == a["dive_number"]
    n_407c = sum(codes[r.classes["dive_number"]] == "407C" for r in train.records + test.records)
    assert n_407c == 179

    # final_score != difficulty x middle three marks: one warning per split, 30 in all
    messages = formula_warnings(record)
    assert len(messages) == 2 and "(train split)" in messages[0] and "(test split)" in messages[1]
    counts = [int(re.search(r"(\d+) sample\(s\)", m).group(1)) for m in messages]
    assert sum(counts) == len(stats["final_score_not_equal_DD_x_sum_middle3_judges"]) == 30
    assert "05_23 (60.8, not 62.40)" in messages[0] and CORE_FILE in messages[0]


@pytest.mark.real_data
@pytest.mark.filterwarnings("ignore::aqa_builtin.datasets.mtl_aqa.ScoreFormulaWarning")
def test_musdl_file_reports_the_corrupt_judge_score(musdl, tmp_path):
    train_keys = load_release_pickle(musdl / "train_split_0.pkl")
    bad_split, good_split = ("train", "test") if (4, 49) in train_keys else ("test", "train")
    with pytest.raises(DataError) as exc:
        open_variant(musdl, MUSDL_FILE, bad_split)
    text = str(exc.value)
    assert f"({bad_split} split): 1 bad sample(s)" in text
    assert "sample 04_49: judge_scores" in text and "45 outside 0..10" in text
    assert str(musdl / MUSDL_FILE) in text
    assert CORE_FILE in text and "on_error: skip" in text

    other = open_variant(musdl, MUSDL_FILE, good_split)
    assert len(other) == {"train": 1059, "test": 353}[good_split]

    videos = empty_event_videos(tmp_path / "videos")
    with pytest.warns(DataSkipWarning, match=r"(?s)skipped 1 bad sample.*04_49: judge_scores.*45"):
        skipped = open_variant(
            musdl, MUSDL_FILE, bad_split, on_error="skip", videos_dir=str(videos)
        )
    assert "04_49" not in skipped.keys
    assert len(skipped) == {"train": 1059, "test": 353}[bad_split] - 1
    assert "dive_number" not in skipped.targets.classes  # MUSDL's file has no dive codes
    assert set(skipped.targets.arrays) == {"judge_scores", "difficulty"}
    assert max(float(r.arrays["judge_scores"].max()) for r in skipped.records) == 10.0


@pytest.mark.real_data
def test_official_release_keeps_its_targets(shared_data, recwarn):
    release = shared_data / "mtl-aqa" / "MTL-AQA_split_0_data"
    train, test = open_split(release), open_split(release, "test")
    for t in (train.targets, test.targets):
        assert t.arrays == {} and "dive_number" not in t.classes
        dump = t.model_dump(mode="json")
        before = {k: dump[k] for k in ("scores", "classes", "captions")}
        digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
        assert digest == OFFICIAL_TARGETS_SHA256
        assert Targets.model_validate(before) == t  # a checkpoint from before open targets
    assert all(not r.arrays for r in train.records)
    assert not formula_warnings(recwarn)  # no judge scores: nothing to check

    # the official file has difficulty, not judge scores or dive numbers
    assert set(open_split(release, extra_targets=["difficulty"]).targets.arrays) == {"difficulty"}
    with pytest.raises(DataError, match="asks for judge_scores, dive_number, but no annotation"):
        open_split(release, extra_targets=["dive_number", "judge_scores"])


@pytest.mark.real_data
def test_core_sample_loads_with_its_arrays_and_dive_class(core, tmp_path):
    # one trimmed video per dive: the test dive (14, 1), checked with the test-kit
    write_index_video(tmp_path / "videos" / "14_01.mp4", 103)
    splits = {}
    for split, key in (("train", (14, 2)), ("test", (14, 1))):
        splits[f"{split}_split"] = str(tmp_path / f"{split}.pkl")
        (tmp_path / f"{split}.pkl").write_bytes(pickle.dumps([key]))
    test = open_variant(
        core,
        CORE_FILE,
        "test",
        layout="sample_videos",
        videos_dir=str(tmp_path / "videos"),
        resize=None,
        crop=None,
        sampling="spread",
        num_clips=1,
        **splits,
    )
    batch = check_dataset(test, max_samples=1)
    ann = load_release_pickle(core / CORE_FILE)[(14, 1)]
    assert batch["arrays"]["judge_scores"].dtype == torch.float32
    assert batch["arrays"]["judge_scores"][0].tolist() == ann["judge_scores"].tolist()
    assert batch["arrays"]["difficulty"][0].item() == pytest.approx(ann["difficulty"])
    code = test.targets.classes["dive_number"].labels[int(batch["classes"]["dive_number"][0])]
    assert code == ann["dive_number"]


# -- small files written here ------------------------------------------------------------------


def write_variant(root, annotations, train, test):
    root.mkdir(parents=True, exist_ok=True)
    for name, obj in (("ann.pkl", annotations), ("train.pkl", train), ("test.pkl", test)):
        (root / name).write_bytes(pickle.dumps(obj, protocol=4))
    return root


def open_small(root, split="train", **params):
    return open_split(
        root,
        split,
        annotations="ann.pkl",
        captions=None,
        train_split="train.pkl",
        test_split="test.pkl",
        **params,
    )


def judged(end_frame, marks, dd=3.0, **fields):
    marks = np.array(marks, dtype=np.float64)
    score = round(dd * float(np.sort(marks)[2:5].sum()), 2)
    return annotation(end_frame, score, difficulty=dd, judge_scores=marks, **fields)


def test_bad_extra_values_name_the_sample_and_the_fix(tmp_path):
    marks = [8.0, 8.5, 8.0, 7.5, 8.0, 8.5, 9.0]
    anns = {
        (1, 1): judged(200, marks, dive_number="107B"),
        (1, 2): judged(400, marks, dive_number="207C"),
        (1, 3): judged(600, [8.0] * 6 + [np.nan], dive_number="107B"),
        (1, 4): judged(800, marks, dd=32.0, dive_number="107B"),
        (1, 5): judged(900, marks[:5], dive_number="107B"),
        (1, 6): judged(950, marks, dive_number=407),
        (2, 1): {k: v for k, v in judged(200, marks).items() if k != "judge_scores"},
    }
    root = write_variant(tmp_path / "small", anns, list(anns)[1:], [(1, 1)])
    with pytest.raises(DataError) as exc:
        open_small(root)
    text = str(exc.value)
    assert "5 bad sample(s)" in text and "01_02" not in text
    assert re.search(r"sample 01_03: judge_scores .* is not finite in .*ann\.pkl", text)
    assert re.search(r"sample 01_04: difficulty 32.0 has 32 outside 1..5 in .*ann\.pkl", text)
    assert "sample 01_05: judge_scores has shape [5], expected [7]" in text
    assert "sample 01_06: dive_number 407 in ann.pkl is not a dive code" in text
    assert "sample 02_01: annotation in ann.pkl lacks field 'judge_scores'" in text
    test = open_small(root, "test")
    assert test.targets.classes["dive_number"].labels == ["107B", "207C"]
    assert test.records[0].classes["dive_number"] == 0
    # without the extra targets the same file is fine
    assert len(open_small(root, extra_targets=[])) == 6


def test_score_formula_warning_only_with_judge_scores(tmp_path, recwarn):
    marks = [6.0, 6.5, 7.0, 7.0, 7.5, 8.0, 6.0]
    off = judged(300, marks)
    off["final_score"] += 0.5
    near = judged(500, marks)
    near["final_score"] += 0.004  # rounding to two decimals
    anns = {(1, 1): judged(100, marks), (1, 2): off, (1, 3): near, (2, 1): judged(100, marks)}
    root = write_variant(tmp_path / "small", anns, [(1, 1), (1, 2), (1, 3)], [(2, 1)])
    open_small(root)
    (message,) = formula_warnings(recwarn)
    assert "(train split): 1 sample(s) in ann.pkl" in message and "01_02 (62, not 61.50)" in message
    recwarn.clear()
    open_small(root, "test")
    open_small(root, extra_targets=["difficulty"])
    assert not formula_warnings(recwarn)


def test_extra_targets_params_are_checked(tmp_path):
    cls = get_registry().get("dataset", "mtl-aqa")
    with pytest.raises(ValidationError, match="lists a target twice"):
        cls.parse_params({"root": ".", "extra_targets": ["difficulty", "difficulty"]})
    with pytest.raises(ValidationError, match="extra_targets"):
        cls.parse_params({"root": ".", "extra_targets": ["execution"]})
    anns = {(1, 1): judged(100, [7.0] * 7, dive_number="107B"), (1, 2): judged(200, [7.0] * 7)}
    root = write_variant(tmp_path / "one_code", anns, [(1, 1)], [(1, 2)])
    with pytest.raises(DataError, match="dive_number has 1 distinct code.*leave dive_number out"):
        open_small(root)
    assert "dive_number" not in open_small(root, extra_targets=["judge_scores"]).targets.classes


# -- the restricted unpickler ------------------------------------------------------------------


def round_trip(obj, protocol, tmp_path):
    path = tmp_path / f"obj{protocol}.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return load_release_pickle(path)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numeric_arrays_and_scalars_are_rebuilt(protocol, tmp_path):
    arrays = {
        "f8": np.array([9.5, 9.0, 45.0, 0.0, 8.5, 9.5, 8.5]),
        "f4 2-D": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "big-endian": np.arange(4, dtype=">i4"),
        "bool": np.array([True, False]),
        "uint8": np.arange(3, dtype=np.uint8),
        "complex": np.array([1 + 2j]),
        "empty": np.zeros((0, 7)),
        "0-d": np.array(3.2),
    }
    data = {(1, 1): {"judge_scores": arrays["f8"], "n": np.int64(7)}, "all": arrays}
    got = round_trip(data, protocol, tmp_path)
    assert type(got[(1, 1)]["n"]) is np.int64 and got[(1, 1)]["n"] == 7
    for name, arr in arrays.items():
        back = got["all"][name]
        assert type(back) is np.ndarray, name
        assert back.dtype == arr.dtype and back.shape == arr.shape, name
        assert np.array_equal(back, arr), name
        assert back.flags.writeable, name
    shared = np.ones(3)
    twice = round_trip([shared, shared], protocol, tmp_path)
    assert np.array_equal(twice[0], shared) and twice[0] is twice[1]


REFUSED = {
    "object array": lambda: np.array([1, "a"], dtype=object),
    "structured": lambda: np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]),
    "strings": lambda: np.array(["x", "y"]),
    "datetime": lambda: np.array(["2020-01-01"], dtype="datetime64[D]"),
    "masked": lambda: np.ma.masked_array([1.0, 2.0]),
    "matrix": lambda: np.matrix([[1.0]]),
    "bare dtype": lambda: np.dtype("f8"),
    "type": lambda: np.float64,
}


@pytest.mark.parametrize("name", list(REFUSED))
@pytest.mark.parametrize("protocol", [3, 5])
def test_other_numpy_objects_are_refused(name, protocol, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix
        obj = REFUSED[name]()
    with pytest.raises(DataError, match="as an MTL-AQA release pickle"):
        round_trip({"judge_scores": obj}, protocol, tmp_path)


def test_other_globals_and_forged_arrays_are_refused(tmp_path):
    def load(data: bytes):
        path = tmp_path / "forged.pkl"
        path.write_bytes(data)
        return load_release_pickle(path)

    with pytest.raises(DataError, match="refusing to load os.system"):
        load(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(DataError, match="refusing to load builtins.eval"):
        load(pickle.dumps(eval))
    with pytest.raises(DataError, match="refusing to load numpy.load"):
        load(b"cnumpy\nload\n(S'x.npy'\ntR.")
    with pytest.raises(DataError, match="refusing to load _codecs.encode"):
        load(pickle.dumps(np.ones(2), protocol=2))  # Python 2 style bytes: not accepted

    good = pickle.dumps(np.ones(2), protocol=3)
    assert load(good).tolist() == [1.0, 1.0]
    data_at = good.index(b"\x00\x00\x00\x00\x00\x00\xf0?")
    short = good[: data_at - 2] + b"C\x08" + good[data_at : data_at + 8] + good[data_at + 16 :]
    with pytest.raises(DataError, match="8 bytes do not fill shape"):
        load(short)
    # an array whose type is not ndarray
    with pytest.raises(DataError, match="refusing to rebuild an array of type"):
        load(good.replace(b"cnumpy\nndarray\n", b"cnumpy\ndtype\n"))
    with pytest.raises(DataError, match=r"refusing to load numpy\._?core\.multiarray\.fromstring"):
        load(good.replace(b"_reconstruct", b"fromstring"))


def test_real_files_load_like_numpy_does(musdl, core):
    for path in (musdl / MUSDL_FILE, core / CORE_FILE):
        mine = load_release_pickle(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core under numpy 2
            theirs = pickle.load(io.BytesIO(path.read_bytes()))
        assert mine.keys() == theirs.keys()
        for key, ann in theirs.items():
            assert mine[key].keys() == ann.keys()
            assert np.array_equal(mine[key]["judge_scores"], ann["judge_scores"])
            assert mine[key]["judge_scores"].dtype == np.float64
            assert all(mine[key][k] == v for k, v in ann.items() if k != "judge_scores")
