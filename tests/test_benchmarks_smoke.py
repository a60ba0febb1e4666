"""The benchmark scripts run and print their figures; the official-approach reference computes
what our fast path computes (so a speed-up never comes from doing less work)."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """Import the benchmark modules (they live outside the package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield {name: importlib.import_module(name)
               for name in ("benchlib", "official_reference", "bench_train", "bench_infer")}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(autouse=True)
def _restore_threads():
    """The scripts' ``--threads`` changes the process-wide setting: put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# one thread: the figures do not matter here, and a single thread is not stalled by other
# processes sharing the cores
FAST = ["--small", "--device", "cpu", "--steps", "1", "--warmup", "0", "--threads", "1"]


def test_bench_train_small_prints_throughput_flops_and_ratio(bench, capsys, tmp_path):
    out_file = tmp_path / "train.json"
    results = bench["bench_train"].run([*FAST, "--json", str(out_file)])
    text = capsys.readouterr().out
    for field in ("environment: device=cpu", "torch=", "config: small", "settings:",
                  "samples/s", "TFLOP/s", "GFLOP forward per clip", "ratio ours/official"):
        assert field in text, f"missing {field!r} in:\n{text}"
    assert set(results["rows"]) == {"ours", "official"}
    for row in results["rows"].values():
        assert row["samples_per_s"] > 0 and row["backbone_tflops"] > 0
    assert results["initial_loss"]["relative_difference"] < 1e-5
    assert json.loads(out_file.read_text())["benchmark"] == "train"
    # the backbone alone, timed in the same rounds, bounds what the rest can gain
    assert "ours: backbone only" in text
    floor = results["backbone_only"]
    assert floor["step_ms"] > 0 and floor["ceiling_ratio"] == pytest.approx(
        results["rows"]["official"]["step_ms"] / floor["step_ms"])


def test_bench_infer_small_prints_latency_and_ratio(bench, capsys):
    results = bench["bench_infer"].run(FAST)
    text = capsys.readouterr().out
    for field in ("environment: device=cpu", "config: small", "ms/video", "videos/s",
                  "caption tokens decoded", "ratio ours/official"):
        assert field in text, f"missing {field!r} in:\n{text}"
    assert results["rows"]["ours"]["ms_per_video"] > 0
    assert results["rows"]["official"]["mean_caption_tokens"] == results["max_decode_steps"]
    # throughput at an evaluation batch: per-video time of 8 videos decoded together
    assert results["rows"]["ours@batch8"]["batch"] == 8
    assert "ours@batch8/official" in results["ratios"]


def test_bench_data_small_prints_frame_rates_and_ratio(bench, capsys):
    if not (BENCH / "bench_data.py").is_file():
        pytest.skip("benchmarks/bench_data.py is not present")
    importlib.import_module("bench_data").main(["--small"])
    text = capsys.readouterr().out
    for field in ("device", "versions", "frames/s", "decord whole video: decode",
                  "JPEG folder (PIL): decode", "frame cache: pipeline, warm",
                  "ratio decord whole video / JPEG folder (PIL)", "feeding 150 samples/s"):
        assert field in text, f"missing {field!r} in:\n{text}"


def test_bench_data_writes_its_rates_and_ratios_as_json(bench, tmp_path, capsys):
    out_file = tmp_path / "data.json"
    importlib.import_module("bench_data").main(["--small", "--dives", "4", "--json", str(out_file)])
    results = json.loads(out_file.read_text())
    rates = results["frames_per_s"]
    assert rates["decord whole video: pipeline"] > 0 and rates["frame cache: pipeline, warm"] > 0
    ratio = results["ratios"]["decord/JPEG folder (PIL)"]["pipeline"]
    expected = rates["decord whole video: pipeline"] / rates["JPEG folder (PIL): pipeline"]
    assert ratio == pytest.approx(expected)


def test_run_all_reads_goals_off_results_and_says_what_was_not_measured(bench):
    run_all = importlib.import_module("run_all")
    names = [name for name, _ in run_all.plan(small=True, gpu=False, workers=2)]
    assert names == ["train", "infer", "methods", "extract", "data", "data-640x360"]
    # a CPU with native bf16 trains in bf16 by default: fp32 is measured as well
    assert "train-fp32" in [n for n, _ in run_all.plan(small=True, gpu=False, workers=2,
                                                       bf16=True)]
    gpu_names = [name for name, _ in run_all.plan(small=False, gpu=True, workers=8)]
    assert "train-compile" in gpu_names and "train-fp32" not in gpu_names

    def train(sps, ratio, tflops, precision="fp32"):
        return {"rows": {"ours": {"samples_per_s": sps, "backbone_tflops": tflops}},
                "ratios": {"ours/official": ratio}, "settings": {"precision": precision},
                "backbone_only": {"share_of_our_step": 0.6, "ceiling_ratio": 3.4}}

    data = {"ratios": {"decord/JPEG folder (PIL)": {"pipeline": 0.9},
                       "decord/JPEG folder (PIL, full size)": {"pipeline": 1.9}},
            "frames_per_s": {"decord whole video: DataLoader x8": 20000.0}}
    infer = {"ratios": {"ours/official": 3.1, "ours@batch8/official": 4.7}}
    methods = {"methods": {"musdl": {"ratios": {"ours/official": 1.8}},
                           "core": {"ratios": {"ours/official": 1.5},
                                    "voting": {"ratios": {"ours/official": 2.6}}},
                           "gdlt": None}}
    extract = {"backbones": {"c3d": {"ratios": {"ours/official": 2.0}}}}
    cpu = dict(run_all.summarise({"train": train(13, 2.2, 0.1), "infer": infer,
                                  "methods": methods, "extract": extract, "data": data},
                                 small=True))
    line = cpu["CPU training step, ours / official (fp32)"]
    assert line.startswith("2.20 (goal >= 3): MISSED") and "3.40x if all else" in line
    assert cpu["CPU inference per video, ours / official (batch 1)"].endswith(": met")
    assert cpu["CPU inference per video, ours@batch8/official (no goal)"] == "4.70x measured"
    assert cpu["GPU training, ours / official"] == "not measured (no GPU in this run)"
    assert cpu["decord / JPEG folder (PIL), per frame"].endswith("MISSED")
    assert cpu["decord / JPEG folder (PIL, full size), per frame"].endswith(": met")
    assert cpu["CORE test-time voting, ours / official (no goal)"] == "2.60x measured"
    assert cpu["GDLT training step, ours / official (no goal)"] == "not measured"
    assert cpu["feature extraction clips/s, c3d, ours / official (no goal)"] == "2.00x measured"
    gpu = dict(run_all.summarise({"train": train(160, 14.0, 260.0, "bf16"), "data": data},
                                 small=False))
    assert gpu["GPU training, samples/s (best of the training runs)"].startswith("160.00")
    assert gpu["GPU training, ours / official"].endswith("MISSED")
    assert gpu["GPU backbone TFLOP/s"].endswith(": met")
    assert gpu["GPU data pipeline frames/s for that rate (15,360 needed)"].endswith(": met")
    assert gpu["CPU training step, ours / official (default)"] == "not measured"
    assert gpu["feature extraction clips/s (no goal)"] == "not measured"


# ---------------------------------------------------------------------------------------------
# the reference computes the same maths


@pytest.fixture(scope="module")
def tiny(bench):
    """A tiny C3D-AVG-MTL (ours, built by the builder) and the reference with its weights."""
    bl, official = bench["benchlib"], bench["official_reference"]
    cfg = replace(bl.SMALL, width=0.125, size=32, vocab=40, caption_words=9, shared_fc=64,
                  hidden=32, word_dim=24, dropout=0.0)
    model = bl.build_ours(cfg, torch.device("cpu"), seed=3)
    reference = official.reference_for(model, cfg.input_shape[1:])
    official.copy_weights(reference, model)
    batch = bl.make_batch(cfg, 3, torch.device("cpu"), seed=4)
    return cfg, model, reference, batch


def test_reference_and_ours_compute_the_same_loss_and_gradients(tiny):
    cfg, model, reference, batch = tiny
    model.zero_grad()
    reference.zero_grad()
    outputs = model(batch["video"], batch)
    total, parts = model.loss(outputs, batch)
    ref_out = reference(batch["video"], batch["caption"])
    ref_total, ref_parts = reference.loss(ref_out, batch)
    assert torch.allclose(total, ref_total, rtol=1e-5, atol=1e-6)
    assert torch.allclose(parts["score"], ref_parts["score"], rtol=1e-5, atol=1e-6)
    assert torch.allclose(parts["cls"], ref_parts["cls"], rtol=1e-5, atol=1e-6)
    assert torch.allclose(parts["caption"], ref_parts["caption"], rtol=1e-5, atol=1e-5)
    # per-token decoder vs one GRU call per stack: the same log-probabilities
    assert torch.allclose(outputs["caption"]["log_probs"], ref_out["log_probs"], atol=1e-5)
    total.backward()
    ref_total.backward()
    pairs = {
        "conv1": (model.backbone.conv1.weight, reference.cnn.conv1.weight),
        "conv5b": (model.backbone.conv5b.weight, reference.cnn.conv5b.weight),
        "fc6": (model.aggregator.fc.weight, reference.fc6[0].weight),
        "encoder": (model.heads["caption"].encoder.weight_ih_l0,
                    reference.caption.rnn1.weight_ih_l0),
        "embedding": (model.heads["caption"].embedding.weight,
                      reference.caption.embedding.weight),
    }
    for name, (ours, ref) in pairs.items():
        scale = ref.grad.abs().max().clamp(min=1e-12)
        assert ref.grad.abs().max() > 0, name
        assert ((ours.grad - ref.grad).abs().max() / scale) < 1e-4, name


def test_reference_and_ours_decode_the_same_caption(tiny):
    cfg, model, reference, batch = tiny
    model.eval()
    reference.eval()
    try:
        with torch.no_grad():
            ours = model(batch["video"])
        ref = reference.infer(batch["video"], model.heads["caption"].max_steps)
    finally:
        model.train()
        reference.train()
    assert torch.allclose(ours["score"]["scores"][:, 0] * 17, ref["score"], atol=1e-4)
    for field, pred in ref["classes"].items():
        assert ours["cls"]["logits"][field].argmax(1).tolist() == pred.tolist()
    cap = model.targets.captions
    ours_text = model.predict(ours)["caption"]["caption"]
    ref_text = [cap.decode(row) for row in ref["tokens"].tolist()]
    assert ours_text == ref_text


def test_copy_weights_rejects_a_model_of_another_size(bench, tiny):
    official = bench["official_reference"]
    cfg, model, _, _ = tiny
    other = official.reference_for(model, cfg.input_shape[1:])
    other.caption.out = torch.nn.Linear(cfg.hidden, cfg.vocab + 1)
    with pytest.raises(ValueError, match="shape"):
        official.copy_weights(other, model)


def test_channels_last_changes_layout_not_results(tiny):
    import copy

    cfg, model, _, batch = tiny
    fast = copy.deepcopy(model).to_channels_last()
    assert fast.backbone.conv2.weight.is_contiguous(memory_format=torch.channels_last_3d)
    model.eval()
    fast.eval()
    try:
        with torch.no_grad():
            a = model.loss(model(batch["video"], batch), batch)[0]
            b = fast.loss(fast(batch["video"], batch), batch)[0]
    finally:
        model.train()
    assert torch.allclose(a, b, rtol=1e-5)


def test_channels_last_accepts_2d_convolutions():
    from aqa_framework.interfaces import Backbone
    from aqa_framework.model import MultitaskModel
    from aqa_framework.testing import tiny_targets

    class FrameBackbone(Backbone):
        name = "frames"

        def __init__(self) -> None:
            super().__init__(None)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, clips):
            m, c, t, h, w = clips.shape
            frames = clips.transpose(1, 2).reshape(m * t, c, h, w)
            return self.conv(frames).mean(dim=(1, 2, 3)).view(m, t)

    class Mean(torch.nn.Module):
        consumes = "video"
        name = "mean"

        def forward(self, x, batch=None):
            return {"x": x}

    class Avg(torch.nn.Module):
        def forward(self, x):
            return x.mean(1)

    model = MultitaskModel(FrameBackbone(), Avg(), {"t": Mean()}, targets=tiny_targets())
    video = torch.randn(2, 1, 3, 4, 8, 8)
    before = model(video)["t"]["x"]
    model.to_channels_last()
    assert model.backbone.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(video)["t"]["x"], before, atol=1e-6)


def test_caption_grus_run_in_fp32_under_autocast():
    from aqa_builtin.heads.caption import run_gru

    gru = torch.nn.GRU(6, 5, 2, batch_first=True)
    x = torch.randn(2, 4, 6)
    expected, expected_state = gru(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = run_gru(gru, x.bfloat16())
    assert out.dtype == torch.float32 and state.dtype == torch.float32
    assert torch.allclose(out, expected, atol=2e-2)
    out2, _ = run_gru(gru, x[:, :1], expected_state)
    # outside autocast: the GRU's own result (the CPU fast path rounds differently at most)
    torch.testing.assert_close(out2, gru(x[:, :1], expected_state)[0], rtol=1e-5, atol=1e-6)


def test_adam_uses_the_fused_step_and_sgd_the_default():
    from aqa_framework.engine.optim import build_optimizer
    from aqa_framework.spec import TrainSpec

    model = torch.nn.Linear(4, 2)
    adam = build_optimizer(model, TrainSpec())
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["fused"] is True
    sgd = build_optimizer(model, TrainSpec.model_validate({"optimizer": {"name": "sgd"}}))
    assert not sgd.defaults.get("fused")
    model(torch.randn(3, 4)).sum().backward()
    before = model.weight.detach().clone()
    adam.step()
    assert not torch.equal(before, model.weight)


def test_profile_step_lists_the_top_operators_per_step(bench, capsys):
    profile_step = importlib.import_module("profile_step")
    results = profile_step.run([*FAST, "--top", "5"])
    text = capsys.readouterr().out
    assert "top 5 operators by self CPU time, per step (batch 3)" in text
    rows = results["top"]
    assert len(rows) == 5 and all(r["ms_per_step"] > 0 for r in rows)
    assert [r["ms_per_step"] for r in rows] == sorted((r["ms_per_step"] for r in rows),
                                                      reverse=True)
    # a training step of C3D spends its time in convolutions
    assert any("convolution" in r["name"] for r in rows)
