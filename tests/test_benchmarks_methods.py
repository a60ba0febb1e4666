"""The method benchmarks (MUSDL, CoRe, GDLT, feature extraction) run and print their figures;
the official-structure references compute what our models compute."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
FAST = ["--small", "--device", "cpu", "--steps", "1", "--warmup", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def bench():
    """Import the benchmark modules (they live outside the package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield {name: importlib.import_module(name)
               for name in ("benchlib", "official_methods", "bench_methods", "bench_extract")}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def methods_run(bench, tmp_path_factory):
    """``bench_methods.py --method all --small`` once: its printed text, results and JSON."""
    threads = torch.get_num_threads()
    out_file = tmp_path_factory.mktemp("methods") / "methods.json"
    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            results = bench["bench_methods"].run([*FAST, "--method", "all", "--json",
                                                  str(out_file)])
    finally:
        torch.set_num_threads(threads)
    return text.getvalue(), results, json.loads(out_file.read_text())


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (not stalled by other processes sharing the cores), then restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bench_methods_prints_one_header_and_ratio_per_method(methods_run):
    text, results, stored = methods_run
    assert results["benchmark"] == "methods" and set(results["methods"]) == {"musdl", "core",
                                                                             "gdlt"}
    assert stored["methods"].keys() == results["methods"].keys()
    for title in ("MUSDL (I3D, 7 judges)", "CoRe (I3D, regression tree)", "GDLT (clip features"):
        assert f"== bench_methods: {title}" in text
    assert text.count("environment: device=cpu") == 3
    assert text.count("ratio ours/official:") == 4  # three training steps and CoRe's voting
    for field in ("config: small method=musdl spec=examples/musdl/mtl-aqa-musdl.yaml",
                  "3 segments x 8 frames (starts 0,6,12)", "official 1 x 2 accumulated",
                  "features 32 clips x 1024", "samples/s", "same weights, same batch: loss",
                  "ms/video", "(12 clips encoded per video)", "(18 clips encoded per video)"):
        assert field in text, f"missing {field!r} in:\n{text}"


@pytest.mark.parametrize("method", ["musdl", "core", "gdlt"])
def test_bench_methods_rows_and_the_same_initial_loss(methods_run, method):
    _, results, stored = methods_run
    res = results["methods"][method]
    assert res["method"] == method and res["spec"].startswith("examples/")
    assert set(res["rows"]) == {"ours", "official"}
    for row in res["rows"].values():
        assert row["samples_per_s"] > 0 and row["step_ms"] > 0 and row["timing"]["steps"] == 1
    assert res["rows"]["official"]["batch"] == (2 if method != "gdlt" else 8)
    ratio = res["ratios"]["ours/official"]
    assert ratio == pytest.approx(res["rows"]["ours"]["samples_per_s"]
                                  / res["rows"]["official"]["samples_per_s"])
    loss = res["initial_loss"]
    assert loss["ours"] > 0 and loss["relative_difference"] < 1e-5
    assert stored["methods"][method]["initial_loss"] == pytest.approx(loss)
    assert stored["methods"][method]["settings"]["cfg"]["method"] == method


def test_core_voting_predicts_the_same_scores(methods_run):
    voting = methods_run[1]["methods"]["core"]["voting"]
    assert voting["voters"] == 3 and set(voting["rows"]) == {"ours", "official"}
    # scores of 40-110 points: 1e-5 relative
    assert voting["max_abs_diff"] < 1e-3
    assert voting["rows"]["ours"]["ms_per_video"] > 0 and "ours/official" in voting["ratios"]


def test_bench_methods_one_method_writes_its_own_results(bench, capsys, tmp_path):
    out_file = tmp_path / "gdlt.json"
    results = bench["bench_methods"].run([*FAST, "--method", "gdlt", "--no-reference",
                                          "--json", str(out_file)])
    text = capsys.readouterr().out
    assert "ratio" not in text and "same weights" not in text
    assert set(results["rows"]) == {"ours"} and "initial_loss" not in results
    assert json.loads(out_file.read_text())["method"] == "gdlt"


def test_bench_extract_small_prints_throughput_and_same_features(bench, capsys, tmp_path):
    out_file = tmp_path / "extract.json"
    results = bench["bench_extract"].run(
        [*FAST, "--backbones", "c3d,i3d,r2plus1d_18", "--clips", "3", "--json", str(out_file)]
    )
    text = capsys.readouterr().out
    for field in ("== bench_extract", "environment: device=cpu", "config: small",
                  "ours batch_clips=32", "official 1 clip(s)/call", "clips/s",
                  "ratio ours/official", "features differ by at most"):
        assert field in text, f"missing {field!r} in:\n{text}"
    assert set(results["backbones"]) == {"c3d", "i3d", "r2plus1d_18"}
    for name, res in results["backbones"].items():
        assert res["max_abs_diff"] <= 1e-5 * max(1.0, res["max_abs_feature"]), name
        assert res["max_abs_feature"] > 0
        assert res["rows"]["ours"]["clips_per_s"] > 0 and res["rows"]["official"]["clips_per_s"]
    assert results["backbones"]["i3d"]["feature_dim"] == 1024
    assert results["backbones"]["r2plus1d_18"]["backbone"] == "torchvision-video"
    assert json.loads(out_file.read_text())["benchmark"] == "extract"


# ---------------------------------------------------------------------------------------------
# the references compute the same maths


def _settings(bench, small: bool = True):
    ns = argparse.Namespace(small=small, device="cpu", precision="fp32", batch=None,
                            ref_batch=None, steps=1, warmup=0, compile=False,
                            channels_last="off", no_reference=False, threads=None, seed=0)
    return bench["benchlib"].resolve_settings(ns, (1, 1), (0, 0))


@pytest.fixture(scope="module")
def core_pair(bench):
    """Our CoRe model (small config) with fitted intervals, and its reference."""
    bm, om = bench["bench_methods"], bench["official_methods"]
    cfg = bm.CONFIGS[("core", "small")]
    settings = _settings(bench)
    model, _ = bm.build_ours(cfg, settings)
    deltas = bm.deltas_for(cfg, model, seed=4)
    reference = om.reference_for("core", model, starts=cfg.starts,
                                 clip_length=cfg.clip_length, deltas=deltas)
    om.copy_weights(reference, model)
    return cfg, model, reference.train()


def test_core_reference_builds_the_heads_intervals(core_pair):
    _, model, reference = core_pair
    edges = model.heads["score"].edges
    assert torch.allclose(torch.tensor(reference.group.group, dtype=torch.float32), edges)


def test_core_reference_and_ours_give_the_same_gradients(bench, core_pair):
    cfg, model, reference = core_pair
    ours, theirs = bench["bench_methods"].core_batches(cfg, 2, 1, seed=7, device="cpu")
    model.zero_grad()
    reference.zero_grad()
    out = model(ours["video"], ours, partners=ours["partners"])
    total, _ = model.loss(out, ours)
    micro = bench["bench_methods"]._micro_batches(theirs, 2)[0]
    ref_total = reference.pair_loss(micro)[0]
    assert torch.allclose(total, ref_total, rtol=1e-5)
    total.backward()
    ref_total.backward()
    head = model.heads["score"]
    pairs = {
        "conv1a": (model.backbone.conv1a.conv.weight, reference.backbone.conv1a.conv.weight),
        "first": (head.first[0].weight, reference.regressor.first_layer[0].weight),
        "regressor": (head.regressor.weight, reference.regressor.reg_layer.weight),
    }
    for name, (mine, ref) in pairs.items():
        assert ref.grad.abs().max() > 0, name
        assert (mine.grad - ref.grad).abs().max() / ref.grad.abs().max() < 1e-4, name


def test_core_voting_reencodes_the_query_once_per_voter(bench, core_pair):
    cfg, model, reference = core_pair
    ours, theirs = bench["bench_methods"].core_batches(cfg, 1, 3, seed=8, device="cpu")
    seen: dict[str, list[int]] = {"ours": [], "official": []}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: seen["ours"].append(len(i[0]))),
        reference.backbone.register_forward_hook(
            lambda m, i, o: seen["official"].append(len(i[0]))),
    ]
    model.eval()
    reference.eval()
    try:
        with torch.no_grad():
            out = model(ours["video"], None, partners=ours["partners"])
        mine = model.predict(out, ours)["score"]["final_score"]
        ref = reference.vote(theirs["video_1"], theirs["videos_2"], theirs["labels_2"],
                             theirs["diff"]).tolist()
    finally:
        for h in hooks:
            h.remove()
        model.train()
        reference.train()
    segments = len(cfg.starts)
    assert seen["ours"] == [(1 + 3) * segments]  # query + 3 exemplars in one call
    assert seen["official"] == [2 * segments] * 3  # query and one exemplar, per voter
    assert mine == pytest.approx(ref, rel=1e-5)


def test_gdlt_reference_and_ours_give_the_same_gradients(bench):
    bm, om = bench["bench_methods"], bench["official_methods"]
    cfg = bm.CONFIGS[("gdlt", "small")]
    model, _ = bm.build_ours(cfg, _settings(bench))
    reference = om.reference_for("gdlt", model)
    om.copy_weights(reference, model)
    ours, theirs = bm.gdlt_batches(cfg, 4, seed=5, device="cpu")
    model.eval()  # dropout off; BatchNorm on running statistics in both
    reference.eval()
    total, _ = model.loss(model(ours["video"], ours), ours)
    ref_total = reference.loss(reference(theirs["features"]), theirs["label"])
    assert torch.allclose(total, ref_total, rtol=1e-5)
    total.backward()
    ref_total.backward()
    head = model.heads["score"]
    pairs = {
        "in_proj": (head.in_proj[0].weight, reference.in_proj[0].weight),
        "cross-attention": (head.decoder.layers[1].multihead_attn.in_proj_weight,
                            reference.decoder_layers[1].multihead_attn.in_proj_weight),
        "prototype": (head.prototype.weight, reference.prototype.weight),
    }
    for name, (mine, ref) in pairs.items():
        assert ref.grad.abs().max() > 0, name
        assert (mine.grad - ref.grad).abs().max() / ref.grad.abs().max() < 1e-4, name


def test_musdl_soft_labels_match_our_heads(bench):
    from aqa_builtin.heads.distribution import Bins

    marks = torch.tensor([[0.0, 4.5, 10.0], [7.5, 8.0, 9.5]])
    ours = Bins(0.0, 10.0, 21).soft_labels(marks, 5.0)
    theirs = bench["official_methods"].gaussian_soft_labels(marks.numpy(), 5.0, 21, 10.0)
    assert torch.allclose(ours, torch.from_numpy(theirs), atol=1e-6)


def test_copy_weights_rejects_a_reference_of_another_size(bench):
    bm, om = bench["bench_methods"], bench["official_methods"]
    cfg = bm.CONFIGS[("gdlt", "small")]
    model, _ = bm.build_ours(cfg, _settings(bench))
    other = om.OfficialGDLT(cfg.feature_dim, 512, 256, 1, 1, 2, 768, 5)
    with pytest.raises(ValueError, match="shape"):
        om.copy_weights(other, model)
