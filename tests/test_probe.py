"""Linear probes and feature baselines: regression, feature extraction, the feature cache."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from aqa_framework.errors import AQAError, DataError
from aqa_framework.experiments.features import (
    FeatureCache,
    FeatureKey,
    FeatureSet,
    Pooling,
    cached_features,
    extract_features,
    fingerprint_data,
    fingerprint_module,
    resolve_layers,
)
from aqa_framework.experiments.probe import (
    ProbeResult,
    RegressorConfig,
    fit_and_score,
    probe_layers,
    spearman,
)
from aqa_framework.interfaces import Backbone


class TinyBackbone(Backbone):
    """Two conv stages and a flattening output (a test backbone)."""

    name = "tiny"
    layers = ("conv1", "conv2")

    def __init__(self, params=None):
        super().__init__(params)
        torch.manual_seed(0)
        self.conv1 = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, clips):
        return self.pool(self.conv2(self.conv1(clips))).flatten(1)


def batches(n=24, batch=5, clips=2, seed=0):
    """Videos whose brightness carries the score (so probes have signal)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=g) * 100
    out = []
    for start in range(0, n, batch):
        y = scores[start : start + batch]
        noise = torch.rand(len(y), clips, 3, 4, 8, 8, generator=g)
        video = noise * 0.2 + (y / 100).view(-1, 1, 1, 1, 1, 1)
        keys = [f"s{seed}-{i}" for i in range(start, start + len(y))]
        out.append({"video": video, "key": keys, "scores": {"final_score": y.double()}})
    return out


# --------------------------------------------------------------------------- regression


def test_ridge_and_svr_recover_a_linear_signal_and_report_the_penalty():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 30))
    y = x @ rng.normal(size=30) + 0.1 * rng.normal(size=120)
    ridge = fit_and_score(x[:80], y[:80], x[80:], y[80:], RegressorConfig("ridge"), "c1")
    assert ridge.spearman > 0.95 and ridge.pearson > 0.95
    assert ridge.alpha in RegressorConfig().alphas and (ridge.n_train, ridge.n_test) == (80, 40)
    svr = fit_and_score(x[:80], y[:80], x[80:], y[80:], RegressorConfig("svr"))
    assert svr.spearman > 0.9 and math.isnan(svr.alpha) and svr.regressor.startswith("svr")
    noise = fit_and_score(
        rng.normal(size=(80, 30)), y[:80], rng.normal(size=(40, 30)), y[80:]
    )
    assert noise.spearman < ridge.spearman - 0.5


def test_regression_rejects_bad_inputs():
    x = np.zeros((10, 3))
    with pytest.raises(DataError, match="same dimension"):
        fit_and_score(x, np.arange(10), np.zeros((4, 2)), np.arange(4), layer="c2")
    with pytest.raises(DataError, match="different lengths"):
        fit_and_score(x, np.arange(9), x, np.arange(10))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit_and_score(bad, np.arange(10), x, np.arange(10))
    with pytest.raises(AQAError, match="unknown regressor"):
        RegressorConfig("lasso")
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


# --------------------------------------------------------------------------- extraction


def test_extract_features_pools_each_layer_and_averages_clips():
    bb = TinyBackbone()
    data = batches(n=7, batch=3)
    feats = extract_features(bb, data, ["conv1", "conv2", "output"])
    assert feats.keys == [f"s0-{i}" for i in range(7)]
    assert {k: v.shape for k, v in feats.layers.items()} == {
        "conv1": (7, 4), "conv2": (7, 6), "output": (7, 6)
    }
    # by hand for the first video: conv1 activation, global average, mean over its 2 clips
    with torch.no_grad():
        act = bb.conv1(data[0]["video"][0])
    expected = act.mean(dim=(2, 3, 4)).mean(dim=0).numpy()
    np.testing.assert_allclose(feats.layers["conv1"][0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats.layers["conv2"], feats.layers["output"], rtol=1e-5)
    np.testing.assert_allclose(
        feats.scores["final_score"], torch.cat([b["scores"]["final_score"] for b in data])
    )
    assert not bb.conv1._forward_hooks  # hooks are removed afterwards
    adaptive = extract_features(bb, data, ["conv2"], Pooling.parse("1,2,2"))
    assert adaptive.layers["conv2"].shape == (7, 6 * 4)


def test_layer_names_are_checked_against_the_backbone():
    bb = TinyBackbone()
    assert resolve_layers(bb, None) == ["conv1", "conv2"]
    assert resolve_layers(bb, ["conv2.0", "output"]) == ["conv2.0", "output"]
    with pytest.raises(AQAError, match=r"no layer 'conv9'; try: conv1, conv2, output"):
        resolve_layers(bb, ["conv9"])
    with pytest.raises(AQAError, match="not 'avg'"):
        Pooling.parse("big")


def test_probe_finds_the_signal_in_every_layer():
    bb = TinyBackbone()
    train = extract_features(bb, batches(n=40, seed=1), ["conv1", "conv2", "output"])
    test = extract_features(bb, batches(n=20, seed=2), ["conv1", "conv2", "output"])
    rows = probe_layers(train, test, ["conv1", "conv2", "output"])
    assert [r.layer for r in rows] == ["conv1", "conv2", "output"]
    assert all(r.spearman > 0.8 for r in rows), [r.spearman for r in rows]
    result = ProbeResult(rows, "Tiny", {"model": "tiny"})
    parsed = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [p["layer"] for p in parsed] == ["conv1", "conv2", "output"]
    assert float(parsed[0]["spearman"]) == pytest.approx(rows[0].spearman, abs=1e-6)
    md = result.to_markdown()
    assert md.startswith("# Tiny") and "- model: tiny" in md and "| conv2 | 6 | 40 | 20 |" in md
    with pytest.raises(DataError, match="no score 'difficulty'"):
        probe_layers(train, test, ["conv1"], score="difficulty")


# --------------------------------------------------------------------------- cache


def test_feature_cache_computes_each_layer_once(tmp_path):
    bb = TinyBackbone()
    data = batches(n=6)
    cache = FeatureCache(tmp_path / "cache")
    key = FeatureKey(fingerprint_module(bb), fingerprint_data("tiny", {"n": 6}), "train")
    passes: list[list[str]] = []

    def compute(layers):
        passes.append(list(layers))
        return extract_features(bb, data, layers)

    first, computed = cached_features(cache, key, ["conv1"], compute)
    assert computed == ["conv1"]
    again, computed = cached_features(cache, key, ["conv1"], compute)
    assert computed == [] and len(passes) == 1
    np.testing.assert_array_equal(first.layers["conv1"], again.layers["conv1"])
    assert again.keys == first.keys
    both, computed = cached_features(cache, key, ["conv1", "conv2"], compute)
    assert computed == ["conv2"] and passes[-1] == ["conv2"]
    assert list(both.layers) == ["conv1", "conv2"]
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # other weights, other data or another split: another entry
    with torch.no_grad():
        bb.conv1[0].weight.add_(1.0)
    assert fingerprint_module(bb) != key.model
    assert fingerprint_data("tiny", {"n": 7}) != key.data
    assert FeatureKey(key.model, key.data, "test").folder(tmp_path) != key.folder(tmp_path)
    assert FeatureCache(None).load(key, ["conv1"]) is None


def test_feature_set_score_defaults_to_the_first():
    fs = FeatureSet(["a", "b"], {"final_score": np.array([1.0, 2.0])})
    assert fs.score()[0] == "final_score"
    with pytest.raises(DataError, match="no scores"):
        FeatureSet(["a"], {}).score()


# --------------------------------------------------------------------------- end to end


def tiny_synthetic_spec(root, heads=("score",)):
    """A tiny C3D-AVG on a few synthetic dives (CPU, seconds)."""
    all_heads = {
        "score": {"name": "score"},
        "cls": {"name": "classification"},
        "caption": {
            "name": "caption",
            "loss_weight": 0.01,
            "params": {"hidden": 16, "word_dim": 8, "metrics": ["bleu"]},
        },
    }
    return {
        "model": {
            "backbone": {"name": "c3d", "params": {"width": 0.0625}},
            "aggregator": {"name": "average", "params": {"shared_fc": 16}},
            "heads": {h: all_heads[h] for h in heads},
        },
        "data": {
            "name": "synthetic-diving",
            "batch_size": 4,
            "params": {
                "root": str(root),
                "dives": 24,
                "size": [64, 48],
                "dives_per_event": 12,
                "crop": 32,
                "num_clips": 2,
                "clip_length": 16,
                "max_caption_length": 8,
            },
        },
        "train": {"epochs": 1, "optimizer": {"lr": 0.003}, "max_steps_per_epoch": 2},
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    import yaml

    from aqa_framework.engine.runner import run_training
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    base = tmp_path_factory.mktemp("probe")
    raw = tiny_synthetic_spec(base / "dives")
    spec_path = base / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    folder = run_training(resolve(parse_spec(raw)), run_dir=base / "run")
    return folder, spec_path


def run_cli(capsys, *args):
    from aqa_framework.cli.main import main

    with pytest.raises(SystemExit) as info:
        main([*args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_probe_command_on_a_trained_run_reports_every_declared_layer(
    trained_run, tmp_path, capsys, monkeypatch
):
    from aqa_framework.experiments import features

    run, spec_path = trained_run
    passes = []
    real = features.extract_features
    monkeypatch.setattr(
        features, "extract_features", lambda *a, **k: passes.append(a[2]) or real(*a, **k)
    )
    cache = tmp_path / "cache"
    code, out, err = run_cli(capsys, "probe", str(run), "--cache-dir", str(cache))
    assert code in (0, None), err
    rows = list(csv.DictReader((run / "probe.csv").open()))
    assert [r["layer"] for r in rows] == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert [int(r["dim"]) for r in rows] == [4, 8, 16, 32, 32]  # c3d channels at width 1/16
    assert all(r["n_train"] == "18" and r["n_test"] == "6" for r in rows)
    assert all(-1.0 <= float(r["spearman"]) <= 1.0 for r in rows)
    for layer in ("pool1", "pool5"):
        assert layer in out
    assert "epoch 1" in (run / "probe.md").read_text()
    assert passes == [["pool1", "pool2", "pool3", "pool4", "pool5"]] * 2  # train + test

    # the SVR baseline on another layer reuses nothing it has not computed ...
    code, out, err = run_cli(
        capsys, "baseline", "svr", str(spec_path), "--checkpoint", str(run),
        "--layer", "pool5", "--cache-dir", str(cache), "--output", str(tmp_path / "svr"),
    )
    assert code in (0, None), err
    assert len(passes) == 2  # pool5 features of this model came from the cache
    svr = list(csv.DictReader((tmp_path / "svr" / "svr.csv").open()))
    assert svr[0]["layer"] == "pool5" and svr[0]["regressor"].startswith("svr-linear")
    assert float(svr[0]["spearman"]) == pytest.approx(float(svr[0]["spearman"]))

    # ... and a fresh (untrained) backbone is another model: new features
    code, _, err = run_cli(
        capsys, "probe", str(spec_path), "--layers", "pool2,output", "--cache-dir",
        str(cache), "--output", str(tmp_path / "fresh"),
    )
    assert code in (0, None), err
    assert passes[-1] == ["pool2", "output"]
    fresh = list(csv.DictReader((tmp_path / "fresh" / "probe.csv").open()))
    assert [r["layer"] for r in fresh] == ["pool2", "output"] and fresh[1]["dim"] == "128"


def test_probe_errors_are_one_clear_line(trained_run, capsys, tmp_path):
    run, spec_path = trained_run
    code, _, err = run_cli(capsys, "probe", str(run), "--layers", "conv9", "--no-cache")
    assert code == 1 and "no layer 'conv9'" in err and "pool1" in err
    code, _, err = run_cli(
        capsys, "probe", str(spec_path), "--test-split", "train", "--no-cache",
        "--output", str(tmp_path),
    )
    assert code == 1 and "same split" in err
    code, _, err = run_cli(capsys, "probe", str(tmp_path / "nothing"), "--no-cache")
    assert code == 1 and "nothing" in err
