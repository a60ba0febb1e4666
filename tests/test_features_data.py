"""Label tables (bad rows: error with file and line, or skipped) and feature files."""

from __future__ import annotations

import numpy as np
import pytest

from aqa_framework.data.feature_files import crop_or_pad, load_feature_file
from aqa_framework.data.label_table import BadRowWarning, TableLayout, read_label_table
from aqa_framework.errors import DataError

LAYOUT = TableLayout(columns={"total": "total"}, key_column="video", separator=",")


def _write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_reads_crlf_bom_scale_and_filter(tmp_path):
    path = _write(tmp_path, "\ufeffvideo,total\r\nBall_1,10\r\n# note\r\nHoop_2,12.5\r\n")
    table = read_label_table(path, LAYOUT)
    assert table.keys == ["Ball_1", "Hoop_2"] and table.rows[1].line == 4
    scaled = TableLayout(columns={"total": 1}, key_column=0, separator=",", header="skip",
                         scale={"total": 2.0}, key_filter="^Hoop_")
    assert [r.scores["total"] for r in read_label_table(path, scaled).rows] == [25.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("video,total\nA,1\nB,abc\n", "labels.csv:3: total 'abc' (column 1) is not a number"),
        ("video,total\nA,1\nB\n", "labels.csv:3: 1 fields, but the header names 2"),
        ("video,total\nA,1\nA,2\n", "labels.csv:3: key 'A' repeats line 2"),
        ("video,total\nA,1\nB,nan\n", "labels.csv:3: total is nan"),
        ("video,score\nA,1\n", "labels.csv:1: no column 'total'"),
    ],
)
def test_bad_rows_name_file_line_and_fix(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_label_table(path, LAYOUT)
    assert expected in str(info.value)


def test_bad_rows_skipped_with_a_warning(tmp_path):
    path = _write(tmp_path, "video,total\nA,1\nB,x\nC,3\n")
    with pytest.warns(BadRowWarning, match="labels.csv:3"):
        table = read_label_table(path, LAYOUT, on_error="skip")
    assert table.keys == ["A", "C"] and len(table.bad) == 1
    with pytest.raises(DataError, match="not found"):
        read_label_table(tmp_path / "missing.csv", LAYOUT)


def test_feature_files(tmp_path):
    good = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "a.npy", good)
    assert load_feature_file(tmp_path / "a.npy").dtype == np.float32
    np.savez(tmp_path / "b.npz", feats=good, other=good)
    with pytest.raises(DataError, match="npz_key"):
        load_feature_file(tmp_path / "b.npz")
    assert load_feature_file(tmp_path / "b.npz", "feats").shape == (4, 3)
    with pytest.raises(DataError, match="4 features per clip|3 features per clip"):
        load_feature_file(tmp_path / "a.npy", feature_dim=4)
    bad = good.copy()
    bad[2, 1] = np.inf
    np.save(tmp_path / "c.npy", bad)
    with pytest.raises(DataError, match="clip 2"):
        load_feature_file(tmp_path / "c.npy")
    np.save(tmp_path / "d.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"shape \(5,\)"):
        load_feature_file(tmp_path / "d.npy")


def test_crop_or_pad():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    window, mask = crop_or_pad(x, 3, start=1)
    assert window.tolist() == x[1:4].tolist() and mask.all()
    centred, _ = crop_or_pad(x, 3)
    assert centred.tolist() == x[1:4].tolist()
    padded, mask = crop_or_pad(x, 7)
    assert padded.shape == (7, 2) and mask.tolist() == [True] * 5 + [False] * 2
    assert not padded[5:].any()


def test_features_dataset_bad_files_skipped_or_raised(tmp_path):
    from aqa_builtin.datasets.features import FeaturesDataset

    from aqa_framework.video.dataset import DataSkipWarning

    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "A.npy", np.ones((6, 4)))
    _write(tmp_path, "video,total\nA,1\nB,2\n")
    raw = {"root": str(tmp_path), "train_labels": "labels.csv", "test_labels": "labels.csv",
           "separator": ",", "key_column": "video", "score_columns": {"total": "total"},
           "features_dir": "f", "train_length": 4}
    with pytest.warns(DataSkipWarning, match="B"):
        ds = FeaturesDataset(FeaturesDataset.parse_params({**raw, "on_error": "skip"}), "train",
                             train=True)
    assert ds.keys == ["A"] and ds[0]["video"].shape == (4, 4)
    strict = FeaturesDataset(FeaturesDataset.parse_params(raw), "test")
    with pytest.raises(DataError, match="B.npy"):
        strict.check_samples()
