"""Annotation files that load but are wrong: NaN scores, outliers, repeated or shared keys."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.io
from data_helpers import annotation, write_release

from aqa_framework.errors import DataError
from aqa_framework.registry import get_registry
from aqa_framework.targets import plausible_range
from aqa_framework.video.dataset import DataSkipWarning, ScoreRangeWarning

CAPTION = ["<sos>", "a", "clean", "dive", "<eos>"]
SCORES = [55.0, 60.5, 62.0, 64.0, 67.5, 70.0, 72.0, 75.5, 78.0, 80.0, 84.0, 90.0]


def release(tmp_path, anns, train, test, **params):
    caps = {k: list(CAPTION) for k in anns}
    root = write_release(tmp_path / "release", anns, caps, train, test)
    (root / "whole_videos").mkdir()
    (root / "whole_videos" / "01.mp4").touch()  # present (never decoded here)
    cls = get_registry().get("dataset", "mtl-aqa")
    return root, lambda split="train", **more: cls(
        cls.parse_params({"root": str(root), **params, **more}), split, False
    )


def dives(scores):
    return {(1, i + 1): annotation(150 + i, score=s) for i, s in enumerate(scores)}


def test_nan_or_infinite_score_is_a_bad_sample(tmp_path):
    anns = dives(SCORES)
    anns[(1, 3)]["final_score"] = float("nan")
    anns[(1, 4)]["final_score"] = float("inf")
    _, open_ = release(tmp_path, anns, list(anns)[:8], list(anns)[8:])
    with pytest.raises(DataError) as info:
        open_()
    assert "sample 01_03: final_score is nan (not a finite number)" in str(info.value)
    assert "sample 01_04: final_score is inf (not a finite number)" in str(info.value)
    with pytest.warns(DataSkipWarning):
        ds = open_(on_error="skip")
    assert "01_03" not in ds.keys and ds.dropped_keys == ["01_03", "01_04"]
    target = ds.targets.scores["final_score"]  # the range ignores them
    assert (target.low, target.high) == (0.0, 90.0)


def test_absurd_outlier_gets_a_warning_and_does_not_stretch_the_range(tmp_path):
    anns = dives([*SCORES[:-1], 1045.0])  # a typo of 104.5
    _, open_ = release(tmp_path, anns, list(anns)[:6], list(anns)[6:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoreRangeWarning)
        train = open_()  # the outlier is in the test split
    assert train.targets.scores["final_score"].high == 84.0
    with pytest.warns(
        ScoreRangeWarning,
        match=r"\(test split\): 1 sample\(s\) with final_score "
        r"outside the dataset's range 0\.\.84: 01_12 \(1045\)",
    ):
        test = open_("test")
    assert "01_12" in test.keys  # kept: a warning, not an error


def test_declared_score_range_warns_about_samples_outside_it(tmp_path):
    anns = dives(SCORES)
    _, open_ = release(tmp_path, anns, list(anns)[:8], list(anns)[8:])
    with pytest.warns(ScoreRangeWarning, match=r"01_01 \(55\), 01_02 \(60\.5\)"):
        open_(score_range=[62.0, 100.0])


def test_key_listed_twice_in_a_split_is_an_error(tmp_path):
    anns = dives(SCORES)
    train = [*list(anns)[:6], (1, 2)]
    _, open_ = release(tmp_path, anns, train, list(anns)[6:])
    with pytest.raises(
        DataError,
        match=r"train_split_0\.pkl: 1 key\(s\) listed more than once: "
        r"01_02",
    ):
        open_()


def test_key_in_both_splits_is_an_error(tmp_path):
    anns = dives(SCORES)
    _, open_ = release(tmp_path, anns, list(anns)[:7], list(anns)[5:])
    for split in ("train", "test"):
        with pytest.raises(DataError, match=r"share 2 key\(s\): 01_06, 01_07 \(a sample in both"):
            open_(split)


def test_vocab_whose_two_maps_disagree_is_an_error(tmp_path):
    anns = dives(SCORES)
    root, open_ = release(tmp_path, anns, list(anns)[:8], list(anns)[8:])
    vocab = json.loads((root / "vocab.json").read_text())
    vocab["word_to_ix"]["clean"], vocab["word_to_ix"]["dive"] = (
        vocab["word_to_ix"]["dive"],
        vocab["word_to_ix"]["clean"],
    )
    (root / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(
        DataError,
        match=r"ix_to_word and word_to_ix disagree: ix_to_word\[\d\] is "
        r"'clean' but word_to_ix\['clean'\] is \d",
    ):
        open_()


def test_plausible_range_ignores_nonfinite_values_and_outliers():
    assert plausible_range([1.0, float("nan"), 3.0, float("inf")]) == (1.0, 3.0)
    assert plausible_range([*SCORES, -500.0, 1045.0]) == (55.0, 90.0)
    assert plausible_range([70.0] * 11 + [1045.0]) == (70.0, 1045.0)  # no spread: kept
    assert np.isnan(plausible_range([])[0])


# -- aqa-7 -------------------------------------------------------------------------------------


def aqa7(tmp_path, train, test, **params):
    for name, rows in (("consolidated_train_list", train), ("consolidated_test_list", test)):
        scipy.io.savemat(tmp_path / f"{name}.mat", {name: np.array(rows, dtype=float)})
    cls = get_registry().get("dataset", "aqa-7")
    return lambda split="train": cls(
        cls.parse_params({"root": str(tmp_path), "action": 2, **params}), split, False
    )


def vault(first, scores):
    return [[2, first + i, s] for i, s in enumerate(scores)]


def test_aqa7_repeated_and_shared_samples_are_errors(tmp_path):
    open_ = aqa7(tmp_path, [*vault(1, [14.0, 15.0]), [2, 1, 14.0]], vault(10, [15.5]))
    with pytest.raises(DataError, match=r"1 gym_vault sample\(s\) listed more than once: 001"):
        open_()
    open_ = aqa7(tmp_path, vault(1, [14.0, 15.0, 15.2]), vault(3, [15.5, 16.0]))
    with pytest.raises(DataError, match=r"share 1 gym_vault sample\(s\): 003"):
        open_("test")


def test_aqa7_nan_score_and_outlier(tmp_path):
    scores = [14.1, 14.5, 14.8, 15.0, 15.2, 15.4, 15.6, 15.8, 16.0, 16.3]
    open_ = aqa7(tmp_path, [*vault(1, scores), [2, 11, float("nan")]], vault(20, [155.0]))
    with pytest.raises(DataError, match="sample gym_vault_011: bad row"):
        open_()
    open_ = aqa7(tmp_path, vault(1, scores), vault(20, [155.0]), score_divisor=1)
    with pytest.warns(ScoreRangeWarning, match=r"gym_vault_020 \(155\)"):
        test = open_("test")
    assert test.targets.scores["final_score"].high == 16.3


def test_real_release_files_load_without_a_warning(shared_data):
    reg = get_registry()
    mtl, aqa = reg.get("dataset", "mtl-aqa"), reg.get("dataset", "aqa-7")
    root = shared_data / "mtl-aqa" / "MTL-AQA_split_0_data"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for split in ("train", "test"):
            mtl(mtl.parse_params({"root": str(root)}), split)
            for action in range(1, 7):
                aqa(aqa.parse_params({"root": str(shared_data / "aqa-7"), "action": action}), split)
