"""aqa features extract: sliding clips, one file per video, manifest, resume, read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from aqa_framework.cli.main import app


def test_clip_starts():
    from aqa_framework.experiments.extract import _clip_indices, clip_starts

    assert clip_starts(64, 16, 16).tolist() == [0, 16, 32, 48]
    assert clip_starts(70, 16, 8).tolist() == [0, 8, 16, 24, 32, 40, 48]
    assert clip_starts(10, 16, 16).tolist() == [0]
    short = _clip_indices(10, clip_starts(10, 16, 16), 16)
    assert short.shape == (1, 16) and short.min() == 0 and short.max() == 9


@pytest.fixture
def video_data(tmp_path):
    data = {
        "name": "synthetic-jigsaws",
        "params": {"root": str(tmp_path / "sj"), "trials_per_task": 8, "task": "Suturing",
                   "fold": 0, "crop": 48, "window": None, "sampling": "uniform",
                   "num_clips": 3, "clip_length": 16},
    }
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"data": data}), encoding="utf-8")
    return path


def _extract(source, out, *extra):
    return CliRunner().invoke(
        app,
        ["features", "extract", str(source), "--backbone", "c3d", "--param", "width=0.0625",
         "--out", str(out), "--clip-length", "16", "--stride", "16", "--device", "cpu", *extra],
    )


def test_extract_resume_and_read_back(video_data, tmp_path, one_intra_op_thread):
    out = tmp_path / "feats"
    result = _extract(video_data, out, "--split", "test")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backbone"] == "c3d" and manifest["clip_length"] == 16
    assert manifest["stride"] == 16 and manifest["weights_sha256"] is None
    assert manifest["backbone_params"]["width"] == 0.0625
    meta = json.loads((tmp_path / "sj" / "synthetic.json").read_text())
    videos = manifest["videos"]
    assert videos and all(v["status"] == "done" for v in videos.values())
    for key, entry in videos.items():
        arr = np.load(out / entry["file"])
        trial = key.rsplit("_", 1)[0] if key not in meta["trials"] else key
        frames = meta["trials"][trial]["frames"]
        assert arr.shape == ((frames - 16) // 16 + 1, manifest["feature_dim"])
        assert arr.dtype == np.float32 and np.isfinite(arr).all()

    # resumable: a second run skips what the manifest verifies; a changed file is redone
    first = next(iter(videos))
    np.save(out / f"{first}.npy", np.zeros((2, manifest["feature_dim"]), np.float32))
    again = _extract(video_data, out, "--split", "test")
    assert again.exit_code == 0, again.output
    assert f"1 written, {len(videos) - 1} already done" in again.output
    assert np.load(out / f"{first}.npy").shape[0] == videos[first]["clips"]

    # other settings are refused, not mixed into the folder
    other = _extract(video_data, out, "--split", "test", "--stride", "8")
    assert other.exit_code != 0 and "other settings (stride: 16 (now 8))" in str(other.exception)

    # the 'features' dataset reads the folder (D from the manifest) with a label table
    rows = "\n".join(f"{k},{i + 10.5}" for i, k in enumerate(videos))
    (tmp_path / "labels.csv").write_text(f"video,grs\n{rows}\n", encoding="utf-8")
    from aqa_builtin.datasets.features import FeaturesDataset

    params = FeaturesDataset.parse_params({
        "root": str(tmp_path), "train_labels": "labels.csv", "test_labels": "labels.csv",
        "separator": ",", "key_column": "video", "score_columns": {"grs": "grs"},
        "features_dir": "feats", "train_length": 4,
    })
    assert FeaturesDataset.input_shape(params) == (4, manifest["feature_dim"])
    ds = FeaturesDataset(params, split="test")
    assert ds.keys == list(videos)
    sample = ds[0]
    assert sample["video"].shape == (videos[first]["clips"], manifest["feature_dim"])
    assert sample["scores"]["grs"] == 10.5
