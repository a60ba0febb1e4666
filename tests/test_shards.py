"""Data work in shards: --shard i/n for aqa data cache and aqa features extract."""

from __future__ import annotations

import json
import multiprocessing

import pytest
import yaml
from typer.testing import CliRunner

from aqa_framework.cli.main import app, main
from aqa_framework.errors import AQAError
from aqa_framework.experiments.shards import Shard, locked_json_update, parse_shard


def test_parse_and_select():
    assert parse_shard(None) == Shard(0, 1)
    assert parse_shard("2/4") == Shard(2, 4)
    assert parse_shard("1/3").select(list(range(8))) == [1, 4, 7]
    parts = [parse_shard(f"{i}/3").select(list(range(8))) for i in range(3)]
    assert sorted(sum(parts, [])) == list(range(8))  # disjoint and covering
    for bad in ("4/4", "-1/2", "1/0", "a/b", "3"):
        with pytest.raises(AQAError, match="--shard|numbered 0 to n-1"):
            parse_shard(bad)


def _add_entries(path: str, name: str, n: int) -> None:
    for i in range(n):
        locked_json_update(path, lambda d, i=i: d.setdefault("items", {}).__setitem__(
            f"{name}-{i}", i))


def test_locked_updates_from_two_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "manifest.json")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_entries, args=(path, n, 40)) for n in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    items = json.loads((tmp_path / "manifest.json").read_text())["items"]
    assert len(items) == 80


def test_data_cache_in_shards(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: {backbone: {name: c3d}, heads: {score: {name: score}}}\n"
        "data: {name: synthetic-diving, params: {dives: 5, size: [64, 48], crop: 48, "
        "cache_dir: frames}}\n",
        encoding="utf-8",
    )
    seen = []
    for i in range(2):
        with pytest.raises(SystemExit) as exc:
            main(["data", "cache", str(spec), "--split", "train", "-j", "0", "--shard", f"{i}/2"])
        assert exc.value.code == 0
        assert f"(shard {i}/2; split complete: {i == 1})" in capsys.readouterr().out
        files = {f.name for f in (tmp_path / "frames").rglob("*.npy")}
        seen.append(files - set().union(*seen))
        manifest = json.loads((tmp_path / "frames" / "manifest.json").read_text())
        (job,) = manifest["jobs"].values()
        assert job["split"] == "train" and job["shard_count"] == 2
        assert job["complete"] is (i == 1)
    assert [len(s) for s in seen] == [2, 2]  # 4 train samples, split without overlap
    assert not seen[0] & seen[1]
    assert job["shards"]["0"]["samples"] == 2 and job["shards"]["1"]["status"] == "done"
    with pytest.raises(SystemExit) as exc:
        main(["data", "cache", str(spec), "--shard", "2/2"])
    assert exc.value.code == 1 and "numbered 0 to n-1" in capsys.readouterr().err


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


def test_features_extract_in_shards(video_data, tmp_path, one_intra_op_thread):
    out = tmp_path / "feats"
    written = []
    for i in range(2):
        result = CliRunner().invoke(app, [
            "features", "extract", str(video_data), "--backbone", "c3d", "--param",
            "width=0.0625", "--out", str(out), "--split", "test", "--device", "cpu",
            "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
        assert f"(shard {i}/2)" in result.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["complete"] is (i == 1)
        assert manifest["shards"][f"{i}/2"]["status"] == "done"
        written.append({k for k, v in manifest["videos"].items() if v["status"] == "done"}
                       - set().union(*written))
    assert written[0] and written[1] and not written[0] & written[1]
    assert manifest["expected_videos"] == len(written[0] | written[1])
    assert abs(len(written[0]) - len(written[1])) <= 1
    # the whole job again finds everything done
    again = CliRunner().invoke(app, [
        "features", "extract", str(video_data), "--backbone", "c3d", "--param",
        "width=0.0625", "--out", str(out), "--split", "test", "--device", "cpu"])
    assert again.exit_code == 0 and "0 written" in again.output
