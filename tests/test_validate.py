"""``aqa validate`` finds what ``aqa run`` finds, with the same message, and sizes models right.

A catalogue of spec mistakes runs through both commands (in-process) on a few tiny synthetic
dives; each must make ``aqa validate`` fail with the error line ``aqa run`` prints.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import fakedives as fd
import pytest
import torch
import yaml
from aqa_builtin.datasets.mtl_aqa import load_release_pickle as release_pickle
from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.cli.main import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.yaml"

SMALL = [  # the quickstart on 8 tiny dives, one short epoch, on the CPU
    "data.params.dives=8",
    "data.params.dives_per_event=4",
    "data.params.size=[32,32]",
    "data.params.crop=32",
    "data.params.cache_dir=null",
    "data.val_fraction=0",
    "data.batch_size=2",
    "model.heads.caption.params.metrics=[bleu]",
    "train.epochs=1",
    "train.device=cpu",
    "train.select_on=last",
]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: ``(exit code, stdout, stderr)``."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    """The message after ``Error:`` (one line, or the lines of a listing)."""
    assert "Error: " in err, err
    return err[err.index("Error: ") + len("Error: ") :].strip()


def sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


@pytest.fixture(scope="module")
def dives(tmp_path_factory) -> Path:
    """8 synthetic dives in the MTL-AQA layout (32x32 frames), generated once."""
    from aqa_framework.synth.diving import generate_diving

    root = tmp_path_factory.mktemp("validate") / "dives"
    generate_diving(root, 8, 0, (32, 32), dives_per_event=4, workers=1)
    return root


@pytest.fixture(scope="module")
def one_sample_splits(dives) -> dict[str, str]:
    """Split files holding one training and one test key (run's first sample is that one)."""
    out = {}
    for split in ("train", "test"):
        keys = release_pickle(dives / f"{split}_split_0.pkl")
        path = dives.parent / f"one_{split}.pkl"
        path.write_bytes(pickle.dumps(list(keys[:1])))
        out[split] = str(path)
    return out


def _weights(tmp: Path) -> dict[str, Path]:
    junk = tmp / "junk.pth"
    junk.write_bytes(b"these are not weights")
    objects = tmp / "objects.pth"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, objects)
    bad_safetensors = tmp / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    return {"junk": junk, "objects": objects, "safetensors": bad_safetensors}


def catalogue(dives: Path, splits: dict[str, str], tmp: Path) -> dict[str, list[str]]:
    """Mistake -> the --set overrides that make it (on top of SMALL and the data root)."""
    weights = _weights(tmp)
    annotations = dives / "final_annotations_dict.pkl"
    ann = release_pickle(annotations)
    train_key = release_pickle(Path(splits["train"]))[0]
    ann[train_key] = {**ann[train_key], "end_frame": 100_000}
    late = tmp / "late_end.pkl"
    late.write_bytes(pickle.dumps(ann))
    mtl = [  # the same files read by 'mtl-aqa' (no frame size in the params), one sample a split
        "data.name=mtl-aqa",
        f"data.params.train_split={splits['train']}",
        f"data.params.test_split={splits['test']}",
        "data.batch_size=1",
    ]
    return {
        "missing pretrained file": [
            f"model.backbone.params.pretrained={tmp / 'nowhere.pth'}"
        ],
        "pretrained file that is not a torch file": [
            f"model.backbone.params.pretrained={weights['junk']}"
        ],
        "pretrained file with more than tensors": [
            f"model.backbone.params.pretrained={weights['objects']}"
        ],
        "corrupt safetensors file": [
            f"model.backbone.params.pretrained={weights['safetensors']}"
        ],
        "eval split the dataset lacks": ["eval.split=val"],
        "unknown optimizer": ["train.optimizer.name=adamm"],
        "unknown scheduler": ["train.scheduler.name=cosinee"],
        "unknown device": ["train.device=gpu"],
        "fp16 on a CPU": ["train.precision=fp16"],
        "selection metric of no task": ["train.select_metric=judge.spearman"],
        "unknown select metric": ["train.select_metric=score.spearmn"],
        "select on val without a val split": ["train.select_on=val"],
        "heads the targets cannot feed": [
            "model.heads.caption.params.decoding=beam",
            "model.heads.caption.params.beam_size=100000",
        ],
        "frames too small for the backbone": ["data.params.crop=8"],
        "more training samples than the split has": ["data.train_size=50"],
        "clip too short for the backbone": [
            "data.params.clip_length=2",
            "data.params.sampling=spread",
        ],
        "crop larger than the frames": [*mtl, "data.params.crop=48"],
        "end_frame past the end of the video": [
            *mtl,
            f"data.params.annotations={late}",
        ],
        "missing video": [*mtl, f"data.params.videos_dir={tmp / 'no-videos'}"],
    }


def _spec_for(tmp: Path, overrides: list[str], dives: Path) -> tuple[Path, list[str]]:
    """The quickstart spec; for 'mtl-aqa' cases its data section is rewritten."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    base = [*SMALL, f"data.params.root={dives}"]
    if "data.name=mtl-aqa" in overrides:
        keep = ("sampling", "num_clips", "clip_length", "cache_dir")
        raw["data"]["params"] = {k: v for k, v in raw["data"]["params"].items() if k in keep}
        raw["data"]["params"].update(resize=None, crop=32, jitter=0, flip=False)
        base = [o for o in base if not o.startswith(("data.params.dives", "data.params.size"))]
        base = [o for o in base if o != "data.params.crop=32"]
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec, base + overrides


CASES = [
    "missing pretrained file",
    "pretrained file that is not a torch file",
    "pretrained file with more than tensors",
    "corrupt safetensors file",
    "eval split the dataset lacks",
    "unknown optimizer",
    "unknown scheduler",
    "unknown device",
    "fp16 on a CPU",
    "selection metric of no task",
    "unknown select metric",
    "select on val without a val split",
    "heads the targets cannot feed",
    "frames too small for the backbone",
    "more training samples than the split has",
    "clip too short for the backbone",
    "crop larger than the frames",
    "end_frame past the end of the video",
    "missing video",
]


@pytest.mark.parametrize("case", CASES)
def test_validate_fails_with_the_message_run_gives(
    case, dives, one_sample_splits, tmp_path, capsys, one_intra_op_thread
):
    overrides = catalogue(dives, one_sample_splits, tmp_path)[case]
    spec, overrides = _spec_for(tmp_path, overrides, dives)
    code, _, err = run_cli(capsys, "run", spec, *sets(overrides), "--run-dir", tmp_path / "run")
    assert code == 1, err
    ran = error_line(err)
    code, out, err = run_cli(capsys, "validate", spec, *sets(overrides))
    assert code == 1, out
    assert error_line(err) == ran
    assert "Traceback" not in err


PASS_TWO = [  # found in pass two (aqa_framework.resolve.load): no data, no torch, no model
    "eval split the dataset lacks",
    "selection metric of no task",
    "unknown select metric",
    "select on val without a val split",
]


@pytest.mark.parametrize("case", PASS_TWO)
def test_cross_field_mistakes_fail_in_pass_two(case, dives, one_sample_splits, tmp_path, capsys):
    """``aqa validate --no-build`` (pass two only) refuses them with the message of aqa run."""
    from aqa_framework.errors import SpecError
    from aqa_framework.resolve import load

    overrides = catalogue(dives, one_sample_splits, tmp_path)[case]
    spec, overrides = _spec_for(tmp_path, overrides, dives)
    with pytest.raises(SpecError) as caught:
        load(spec, overrides)
    code, out, err = run_cli(capsys, "validate", spec, *sets(overrides), "--no-build")
    assert code == 1, out
    assert error_line(err) == str(caught.value)


def test_validate_passes_the_small_quickstart(dives, tmp_path, capsys):
    spec, overrides = _spec_for(tmp_path, [], dives)
    code, out, err = run_cli(capsys, "validate", spec, *sets(overrides))
    assert code == 0, err
    assert "samples of 1x3x16x32x32" in out and "every sample's video checked" in out


def test_no_samples_skips_the_videos(dives, one_sample_splits, tmp_path, capsys):
    overrides = catalogue(dives, one_sample_splits, tmp_path)["missing video"]
    spec, overrides = _spec_for(tmp_path, overrides, dives)
    code, out, err = run_cli(capsys, "validate", spec, *sets(overrides), "--no-samples")
    assert code == 0, err
    assert "video checked" not in out


def test_validate_counts_the_parameters_of_the_model_run_builds(tmp_path, capsys):
    """The quickstart as it is (48x48 crops of 64x48 frames), only fewer dives and one step."""
    root = tmp_path / "dives"
    data = [f"data.params.root={root}", "data.params.dives=8", "data.params.dives_per_event=4"]
    short = ["train.epochs=1", "train.max_steps_per_epoch=1", "data.val_fraction=0",
             "train.select_on=last", "model.heads.caption.params.metrics=[bleu]"]
    code, out, err = run_cli(capsys, "validate", QUICKSTART, *sets(data + short))
    assert code == 0, err
    shown = re.search(r"model (\S+) parameters", out).group(1)

    from aqa_framework.builder import _human, build_model, count_parameters, open_dataset
    from aqa_framework.engine.preflight import preflight
    from aqa_framework.resolve import load

    resolved = load(QUICKSTART, data + short)
    found = preflight(resolved, samples=False)
    sample = open_dataset(resolved, "test")[0]["video"]
    assert found.input_shape == tuple(sample.shape) == (1, 3, 16, 48, 48)
    real = count_parameters(build_model(resolved, found.dataset.targets, input_shape=sample.shape))
    assert found.counts == real
    assert shown == _human(real["total"])

    folder = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", QUICKSTART, *sets(data + short), "--run-dir", folder)
    assert code == 0, err
    env = json.loads((folder / "environment.json").read_text())
    assert env["parameters"] == real


# ------------------------------------------------------------------------ input_shape


class _Legacy(fd.FakeDivesDataset):
    """0.1-style: an ``input_shape`` property (tests only)."""

    name = "fake.legacy"


class _VideoLike(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_samples: int = Field(2, description="Samples.")
    num_clips: int = Field(3, description="Clips.")
    clip_length: int = Field(8, description="Frames per clip.")
    crop: int = Field(24, description="Crop side.")


class _Undeclared(fd.FakeDivesDataset):
    """No ``input_shape`` at all (tests only)."""

    name = "fake.undeclared"
    input_shape = fd.VideoDataset.input_shape  # undo the fake dataset's property


def test_declared_input_shape_from_a_class_method_or_a_legacy_property():
    from aqa_framework.builder import dataset_input_shape
    from aqa_framework.engine.preflight import sizing_input_shape
    from aqa_framework.registry import Registry

    reg = Registry(entry_points=[])
    synthetic = reg.get("dataset", "synthetic-diving")
    params = synthetic.parse_params({"size": [64, 48], "crop": None, "num_clips": 2})
    assert dataset_input_shape(synthetic, params) == (2, 3, 16, 48, 64)
    mtl = reg.get("dataset", "mtl-aqa")
    assert dataset_input_shape(mtl, mtl.parse_params({"root": "x"})) == (6, 3, 16, 112, 112)
    assert dataset_input_shape(mtl, mtl.parse_params({"root": "x", "crop": None})) == (
        6, 3, 16, 128, 171
    )
    assert dataset_input_shape(
        mtl, mtl.parse_params({"root": "x", "crop": None, "resize": None})
    ) is None

    legacy = _Legacy(_Legacy.Params(num_clips=2, frames=4, size=8))
    assert dataset_input_shape(legacy) == (2, 3, 4, 8, 8)
    assert dataset_input_shape(_Legacy, legacy.params) is None  # a property needs a split

    undeclared = _Undeclared(_Undeclared.Params(num_clips=1, frames=4, size=8))
    assert dataset_input_shape(undeclared) is None
    assert sizing_input_shape(undeclared) == (1, 3, 4, 8, 8)  # read from the first sample


def test_validate_sizes_an_undeclared_dataset_from_its_video_params():
    from aqa_framework.engine.preflight import sizing_input_shape

    class VideoLike(_Undeclared):
        Params = _VideoLike

        def __len__(self):
            raise AssertionError("sized from the params, not from the data")

    ds = VideoLike.__new__(VideoLike)
    ds.params = _VideoLike()
    assert sizing_input_shape(ds) == (3, 3, 8, 24, 24)


def test_example_plugin_written_for_0_1_is_sized_from_its_first_sample():
    # The example plugin is left as it was written for 0.1: it declares no input_shape, and
    # validate sizes its models from one sample, as aqa run does.
    pytest.importorskip("aqa_gymnastics")
    from aqa_gymnastics.vault_dataset import VaultSyntheticDataset

    from aqa_framework.builder import dataset_input_shape
    from aqa_framework.engine.preflight import sizing_input_shape

    params = VaultSyntheticDataset.Params(num_clips=2, frames=8, size=16, train_samples=2)
    ds = VaultSyntheticDataset(params, "train")
    assert dataset_input_shape(ds) is None
    assert sizing_input_shape(ds) == tuple(ds[0]["video"].shape) == (2, 3, 8, 16, 16)


def test_check_weight_file_accepts_what_loading_accepts(tmp_path):
    from safetensors.torch import save_file

    from aqa_framework.weights import check_weight_file, load_state_dict

    weights = {"conv1.weight": torch.ones(2, 3), "conv1.bias": torch.zeros(2)}
    save_file(weights, tmp_path / "w.safetensors")
    torch.save(weights, tmp_path / "zip.pth")
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("w.safetensors", "zip.pth", "legacy.pth"):
        check_weight_file(tmp_path / name)
        assert set(load_state_dict(tmp_path / name)) == set(weights)
