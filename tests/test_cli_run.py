"""``aqa run`` / ``evaluate`` / ``predict`` on a tiny variant of the quickstart (synthetic dives).

One reference run (in-process) is shared: a run killed mid-epoch and resumed, and a 2-process
DDP run (torchrun, gloo) must both end with its metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aqa_framework.cli.main import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.yaml"
LABELS = {"position", "armstand", "rotation_type", "ss_no", "tw_no"}

# A much smaller quickstart: few tiny dives, one clip, a narrow C3D, 2 epochs. Augmentation
# and dropout are off so that one process and two DDP processes compute the same thing.
TINY = [
    "data.params.dives=16",
    "data.params.size=[32,32]",
    "data.params.dives_per_event=8",
    "data.params.crop=32",
    "data.params.num_clips=1",
    "data.params.cache_dir=null",
    "data.params.jitter=0",
    "data.params.flip=false",
    "data.batch_size=4",
    "data.val_fraction=0.3",  # 12 training dives: 4 for validation, 8 (two batches) to train
    "model.backbone.params.width=0.0625",
    "model.heads.caption.params.hidden=16",
    "model.heads.caption.params.word_dim=8",
    "model.heads.caption.params.dropout=0.0",
    "model.heads.caption.params.metrics=[bleu]",
    "train.epochs=2",
    "eval.report_samples=3",
]


def run_cli(args, capsys):
    """Run the CLI in-process: ``(exit code, stdout, stderr)``."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def records(folder):
    out = []
    for line in (Path(folder) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time_s"), rec.pop("samples_per_s")
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny spec (data generated under a temporary folder) and its set of overrides."""
    base = tmp_path_factory.mktemp("cli")
    spec = base / "tiny.yaml"
    raw = yaml.safe_load(QUICKSTART.read_text())
    spec.write_text(yaml.safe_dump(raw))
    overrides = [*TINY, f"data.params.root={base / 'dives'}"]
    return spec, [x for o in overrides for x in ("--set", o)], base


@pytest.fixture(scope="module")
def reference(tiny):
    spec, sets, base = tiny
    folder = base / "reference"
    try:
        main(["run", str(spec), *sets, "--run-dir", str(folder)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return folder


def test_quickstart_spec_validates():
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import load_spec

    resolved = resolve(load_spec(QUICKSTART))
    assert resolved.backbone.name == "c3d" and resolved.aggregator.name == "average"
    assert set(resolved.heads) == {"score", "cls", "caption"}
    assert resolved.dataset.name == "synthetic-diving"


def test_run_leaves_a_complete_run_folder(reference):
    names = {p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file()}
    assert {"spec.yaml", "environment.json", "metrics.jsonl", "predictions.csv",
            "results.json", "report.md", "report/scatter.png",
            "checkpoints/last/model.safetensors", "checkpoints/last/checkpoint.json",
            "checkpoints/best/model.safetensors"} <= names
    report = (reference / "report.md").read_text()
    assert "selected on the validation split" in report
    assert "## Sample commentaries" in report and "## Predicted vs judged scores" in report
    metrics = json.loads((reference / "results.json").read_text())["metrics"]
    assert {"score.spearman", "cls.position_acc", "caption.bleu_1"} <= set(metrics)


def test_evaluate_prints_the_final_metrics_again(reference, capsys):
    code, out, _ = run_cli(["evaluate", reference, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    final = json.loads((reference / "results.json").read_text())
    assert doc["split"] == "test" and doc["samples"] == final["samples"]
    assert doc["metrics"] == pytest.approx(final["metrics"], rel=1e-6, abs=1e-9)
    code, out, _ = run_cli(["evaluate", reference / "checkpoints" / "last"], capsys)
    assert code == 0 and "score.spearman" in out and "cls.accuracy" in out


def test_predict_gives_points_class_words_and_commentary(reference, tiny, capsys):
    video = tiny[2] / "dives" / "whole_videos" / "01.mp4"
    code, out, err = run_cli(["predict", video, "--checkpoint", reference, "--json"], capsys)
    assert code == 0, err
    preds = json.loads(out)["predictions"]
    ckpt = json.loads((reference / "checkpoints" / "best" / "checkpoint.json").read_text())
    classes = ckpt["targets"]["classes"]
    assert set(preds["cls"]) == LABELS
    for field, label in preds["cls"].items():
        assert label in classes[field]["labels"]  # words, not indices
    assert isinstance(preds["score"]["final_score"], float)
    assert isinstance(preds["caption"]["caption"], str) and preds["caption"]["caption"]
    code, out, _ = run_cli(["predict", video, "-c", reference], capsys)
    assert code == 0
    assert "points" in out and "rotation_type" in out and preds["cls"]["position"] in out
    assert preds["caption"]["caption"].split()[0] in out


def _upscaled(src: Path, dst: Path, factor: int) -> Path:
    """The same video with every frame ``factor`` times larger (pixels repeated, lossless)."""
    import av
    import numpy as np

    lossless = "libx264" in av.codecs_available
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        stream = None
        for frame in inp.decode(video=0):
            img = np.kron(frame.to_ndarray(format="rgb24"), np.ones((factor, factor, 1), "uint8"))
            if stream is None:
                stream = out.add_stream("libx264" if lossless else "mpeg4", rate=25)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
                stream.options = {"crf": "0"} if lossless else {"qscale": "1"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


def test_predict_gives_a_larger_video_the_field_of_view_of_training(reference, tiny, tmp_path,
                                                                    capsys):
    import warnings

    from aqa_framework.engine.inference import load_trained_model, load_video
    from aqa_framework.video.loader import FieldOfViewWarning

    trained = load_trained_model(reference)
    assert trained.checkpoint.meta["frame_size"] == [32, 32]  # the training videos' size
    video = tiny[2] / "dives" / "whole_videos" / "01.mp4"
    big = _upscaled(video, tmp_path / "big.mp4", 2)  # 64x64: a 32 crop would see a quarter
    with warnings.catch_warnings():
        warnings.simplefilter("error", FieldOfViewWarning)
        expected, got = load_video(trained, video), load_video(trained, big)
        code, _, err = run_cli(["predict", big, "-c", reference, "--json"], capsys)
        assert code == 0, err
    # the frames fed to the model are those of the training-size video, up to decoding noise
    assert (got - expected).abs().mean() < 0.15
    del trained.checkpoint.meta["frame_size"]  # a checkpoint without it: cropped as it is
    with pytest.warns(FieldOfViewWarning, match="not recorded"):
        as_is = load_video(trained, big)
    assert (as_is - expected).abs().mean() > 2 * (got - expected).abs().mean()


def test_bad_input_gives_one_clear_message(reference, tiny, tmp_path, capsys):
    spec, sets, _ = tiny
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = run_cli(["run", spec, *sets, "--resume", tmp_path], capsys)
    assert code == 1
    assert err.strip().startswith("Error:") and "is not a run folder" in err
    assert "Traceback" not in err

    code, _, err = run_cli(["predict", tmp_path / "missing.mp4", "-c", reference], capsys)
    assert code == 1 and "video not found" in err and "missing.mp4" in err

    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(reference / "checkpoints" / "best", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    code, _, err = run_cli(["evaluate", broken], capsys)
    assert code == 1 and "model.safetensors is corrupt" in err
    code, _, err = run_cli(["predict", tiny[2] / "dives" / "whole_videos" / "01.mp4",
                            "-c", tmp_path], capsys)
    assert code == 1 and "is not a run folder" in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_fails_on_a_damaged_best_unless_last_is_asked_for(reference, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "checkpoints" / "best" / "checkpoint.json").unlink()
    code, _, err = run_cli(["evaluate", run], capsys)
    assert code == 1 and "Traceback" not in err
    assert "checkpoints/best is damaged" in err and "checkpoints/last" in err
    code, out, err = run_cli(["evaluate", run / "checkpoints" / "last", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["checkpoint"].endswith("last")


def test_killed_run_resumes_to_the_same_metrics(reference, tiny, tmp_path, capsys):
    spec, sets, _ = tiny
    folder = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aqa_framework.cli.main", "run", str(spec), *sets,
         "--run-dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    marker = folder / "checkpoints" / "last" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # a crash in the second (last) epoch
    proc.wait()
    assert json.loads(marker.read_text())["epoch"] == 1
    assert not (folder / "results.json").exists()

    code, out, err = run_cli(["run", spec, *sets, "--resume", folder], capsys)
    assert code == 0, err
    assert "Resuming" in err and "after epoch 1" in err
    assert records(folder) == records(reference)
    got = json.loads((folder / "results.json").read_text())
    ref = json.loads((reference / "results.json").read_text())
    assert got["metrics"] == ref["metrics"]


def test_two_process_ddp_matches_one_process(reference, tiny, tmp_path):
    spec, sets, _ = tiny
    folder = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "aqa_framework.cli.main", "run", str(spec), *sets,
         "--run-dir", str(folder)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    env_doc = json.loads((folder / "environment.json").read_text())
    assert env_doc["world_size"] == 2
    # Same global batches, gradients averaged by DDP: only float summation order differs.
    for one, two in zip(records(reference), records(folder), strict=True):
        assert two["train"] == pytest.approx(one["train"], rel=1e-4)
        assert two["val"] == pytest.approx(one["val"], rel=1e-3, abs=1e-3)
    got = json.loads((folder / "results.json").read_text())["metrics"]
    ref = json.loads((reference / "results.json").read_text())["metrics"]
    assert got == pytest.approx(ref, rel=1e-3, abs=1e-3)
