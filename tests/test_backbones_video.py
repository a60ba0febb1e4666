"""The I3D and torchvision video backbones, the declared input normalisation and backbone sizes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from aqa_builtin.backbones.c3d import C3DBackbone
from aqa_builtin.backbones.i3d import I3DBackbone, tf_same_padding
from aqa_builtin.backbones.torchvision_video import ARCHS, TorchvisionVideoBackbone
from pydantic import ConfigDict, Field, ValidationError
from safetensors.torch import save_file

from aqa_framework import testing
from aqa_framework.cli.main import main
from aqa_framework.errors import CheckpointError, SpecError
from aqa_framework.testing import check_backbone
from aqa_framework.testing.datasets import TinyVideoDatasetParams

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))


def _meta(cls, **params):
    with torch.device("meta"):
        return cls(cls.parse_params(params)).eval()


def _meta_out(model, *clip):
    return tuple(model(torch.empty(2, *clip, device="meta")).shape[1:])


# ------------------------------------------------------------------------------------- I3D


def test_tf_same_padding_puts_the_odd_pixel_after():
    assert tf_same_padding(224, 7, 2) == (2, 3)
    assert tf_same_padding(16, 7, 2) == (2, 3)
    assert tf_same_padding(15, 7, 2) == (3, 3)  # odd length: kernel - size % stride
    assert tf_same_padding(7, 2, 2) == (0, 1)
    assert tf_same_padding(8, 2, 2) == (0, 0)
    assert tf_same_padding(56, 3, 1) == (1, 1)
    assert tf_same_padding(56, 1, 1) == (0, 0)


def test_i3d_pooled_features_and_mixed_5c_maps_adapt_to_the_input_size():
    pooled, maps = _meta(I3DBackbone), _meta(I3DBackbone, features="map")
    assert _meta_out(pooled, 3, 16, 224, 224) == (1024,)
    assert _meta_out(pooled, 3, 16, 112, 112) == (1024,)  # FineDiving frames: a 2x4x4 map
    assert _meta_out(pooled, 3, 8, 224, 224) == (1024,)  # TPT clips: a 1x7x7 map
    assert _meta_out(maps, 3, 16, 224, 224) == (1024, 2, 7, 7)
    assert _meta_out(maps, 3, 16, 112, 112) == (1024, 2, 4, 4)
    assert _meta_out(maps, 3, 15, 100, 96) == (1024, 2, 4, 3)  # ceil(T/8), ceil(H/32)


def test_i3d_structure_matches_the_inception_v1_i3d():
    model = _meta(I3DBackbone)
    assert sum(p.numel() for p in model.parameters()) == 12_287_264
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(convs) == len(bns) == 57
    assert all(c.bias is None for c in convs)
    assert all(b.eps == pytest.approx(1e-3) for b in bns)
    assert I3DBackbone.input_normalization(model.params) == IMAGENET


def test_i3d_bn_momentum_reaches_every_batchnorm_and_defaults_to_pytorchs():
    default = _meta(I3DBackbone)
    assert default.params.bn_momentum == 0.1
    assert {b.momentum for b in default.modules() if isinstance(b, torch.nn.BatchNorm3d)} == {0.1}
    musdl = _meta(I3DBackbone, bn_momentum=0.01)
    bns = [m for m in musdl.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 57 and all(b.momentum == 0.01 for b in bns)
    with pytest.raises(ValidationError, match="bn_momentum"):
        I3DBackbone.parse_params({"bn_momentum": 0})


def test_i3d_bn_momentum_sets_how_fast_the_running_statistics_move():
    torch.manual_seed(0)
    model = I3DBackbone(I3DBackbone.parse_params({"bn_momentum": 0.01})).train()
    unit = model.conv1a
    clips = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        # the unit pads 'SAME' (2 before, 3 after for a 7-kernel, stride 2) before its conv
        batch_mean = unit.conv(torch.nn.functional.pad(clips, (2, 3, 2, 3, 2, 3))).mean(
            dim=(0, 2, 3, 4)
        )
        unit(clips)
    torch.testing.assert_close(unit.bn.running_mean, 0.01 * batch_mean)


def test_musdl_examples_use_musdls_i3d_momentum_and_core_keeps_pytorchs():
    import yaml

    root = Path(__file__).resolve().parents[1] / "examples"
    momenta, eps = {}, {}
    for path in sorted([*root.glob("musdl/*.yaml"), *root.glob("core/*.yaml")]):
        backbone = yaml.safe_load(path.read_text())["model"]["backbone"]
        if backbone["name"] == "i3d":
            params = I3DBackbone.parse_params(backbone.get("params") or {})
            momenta[f"{path.parent.name}/{path.name}"] = params.bn_momentum
            eps[f"{path.parent.name}/{path.name}"] = params.bn_eps
    assert momenta == {
        "core/aqa7-core.yaml": 0.1, "core/mtl-aqa-core.yaml": 0.1,
        "musdl/jigsaws-musdl.yaml": 0.01, "musdl/jigsaws-usdl.yaml": 0.01,
        "musdl/mtl-aqa-musdl.yaml": 0.01, "musdl/mtl-aqa-usdl.yaml": 0.01,
    }
    # CoRe's copy of the I3D keeps PyTorch's BatchNorm eps; MUSDL's uses TensorFlow's
    assert eps == {name: (1e-5 if name.startswith("core/") else 1e-3) for name in momenta}


def test_i3d_bn_eps_reaches_every_batchnorm_and_defaults_to_tensorflows():
    default = _meta(I3DBackbone)
    assert {b.eps for b in default.modules() if isinstance(b, torch.nn.BatchNorm3d)} == {1e-3}
    core = _meta(I3DBackbone, bn_eps=1e-5)
    bns = [m for m in core.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 57 and all(b.eps == 1e-5 for b in bns)
    with pytest.raises(ValidationError, match="bn_eps"):
        I3DBackbone.parse_params({"bn_eps": 0})


def test_i3d_passes_the_backbone_contract(one_intra_op_thread):
    assert check_backbone(I3DBackbone, input_shape=(3, 8, 32, 32)) == (1024,)
    assert check_backbone(I3DBackbone, {"features": "map"}, input_shape=(3, 8, 32, 32)) == (
        1024, 1, 1, 1,
    )


@pytest.fixture(scope="module")
def source():
    """An I3D with random weights and BatchNorm statistics (not changed by the tests)."""
    torch.manual_seed(0)
    model = I3DBackbone(I3DBackbone.parse_params({}))
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape) + 0.5)
            elif name.endswith(("running_mean", "bn.weight", "bn.bias")):
                t.copy_(torch.randn(t.shape) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model.eval()


_H2_UNITS = {"conv1a": "conv3d_1a_7x7", "conv2b": "conv3d_2b_1x1", "conv2c": "conv3d_2c_3x3"}
_H2_BRANCHES = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
                "b2b": "branch_2.1", "b3": "branch_3.1"}
_PJ_UNITS = {"conv1a": "Conv3d_1a_7x7", "conv2b": "Conv3d_2b_1x1", "conv2c": "Conv3d_2c_3x3"}


def _h2_key(key: str) -> str:
    """This backbone's key -> the layout converted from TensorFlow (hassony2's port)."""
    top, rest = key.split(".", 1)
    m = re.fullmatch(r"mixed(\d)([a-f])", top)
    if m:
        branch, rest = rest.split(".", 1)
        top = f"mixed_{m[1]}{m[2]}.{_H2_BRANCHES[branch]}"
    else:
        top = _H2_UNITS[top]
    return f"{top}.{rest.replace('conv.', 'conv3d.').replace('bn.', 'batch3d.')}"


def _pj_key(key: str) -> str:
    """This backbone's key -> the piergiaj layout (MUSDL's InceptionI3d)."""
    top, rest = key.split(".", 1)
    m = re.fullmatch(r"mixed(\d)([a-f])", top)
    if m:
        branch, rest = rest.split(".", 1)
        top = f"Mixed_{m[1]}{m[2]}.{'b3b' if branch == 'b3' else branch}"
    else:
        top = _PJ_UNITS[top]
    return f"{top}.{rest.replace('conv.', 'conv3d.')}"


def _layout_file(tmp_path, model, rename, classifier, classes, *, counters=True, name="w.pt"):
    state = {
        rename(k): v.clone()
        for k, v in model.state_dict().items()
        if counters or not k.endswith("num_batches_tracked")
    }
    state[f"{classifier}.conv3d.weight"] = torch.randn(classes, 1024, 1, 1, 1)
    state[f"{classifier}.conv3d.bias"] = torch.randn(classes)
    path = tmp_path / name
    torch.save(state, path)
    return path, state


def _loaded(path, **params):
    model = I3DBackbone(I3DBackbone.parse_params({"pretrained": str(path), **params}))
    model.load_pretrained(path)
    return model.eval()


def test_i3d_loads_both_public_layouts_into_the_same_model(tmp_path, source, one_intra_op_thread):
    h2_path, h2 = _layout_file(tmp_path, source, _h2_key, "conv3d_0c_1x1", 400, counters=False,
                               name="model_rgb.pth")
    pj_path, pj = _layout_file(tmp_path, source, _pj_key, "logits", 157,
                               name="rgb_i3d_pretrained.pt")
    # the public key names, as the two ports write them
    assert h2["conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert h2["mixed_4b.branch_1.1.conv3d.weight"].shape == (208, 96, 3, 3, 3)
    assert h2["mixed_5c.branch_3.1.batch3d.running_var"].shape == (128,)
    assert pj["Conv3d_2c_3x3.bn.running_mean"].shape == (192,)
    assert pj["Mixed_4b.b1b.bn.bias"].shape == (208,)
    assert pj["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    assert len(h2) == 57 * 5 + 2 and len(pj) == 57 * 6 + 2

    from_h2, from_pj = _loaded(h2_path), _loaded(pj_path)
    for name, value in source.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(from_h2.state_dict()[name], value), name
            assert torch.equal(from_pj.state_dict()[name], value), name
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        expected = source(x)
        assert torch.equal(from_h2(x), expected)
        assert torch.equal(from_pj(x), expected)


def test_i3d_finds_a_layout_under_a_common_prefix(tmp_path, source):
    state = {f"i3d.{_pj_key(k)}": v for k, v in source.state_dict().items()}
    path = tmp_path / "wrapped.pt"
    torch.save(state, path)
    loaded = _loaded(path)
    assert torch.equal(loaded.mixed5c.b3.conv.weight, source.mixed5c.b3.conv.weight)


def test_i3d_refuses_a_file_of_another_network_with_one_clear_error(tmp_path):
    c3d = C3DBackbone(C3DBackbone.parse_params({"width": 0.0625}))
    path = tmp_path / "c3d.safetensors"
    save_file(c3d.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        _loaded(path)
    msg = str(info.value)
    assert str(path) in msg and "backbone i3d" in msg
    assert "matches no I3D layout" in msg and "converted-from-TensorFlow" in msg
    assert "missing keys: conv3d_1a_7x7.conv3d.weight" in msg
    assert "unexpected keys: conv1.bias" in msg


def test_i3d_names_the_layout_and_the_keys_that_do_not_fit(tmp_path, source):
    path, state = _layout_file(tmp_path, source, _pj_key, "logits", 400)
    state["Mixed_4b.b0.conv3d.weight"] = torch.randn(191, 480, 1, 1, 1)
    del state["Mixed_5c.b2b.bn.running_var"]
    state["Mixed_5c.extra.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        _loaded(path)
    msg = str(info.value)
    assert msg.startswith(f"{path} (backbone i3d): the file looks like the piergiaj-style")
    assert "shape mismatches: Mixed_4b.b0.conv3d.weight (file (191, 480, 1, 1, 1), model " in msg
    assert "1 missing keys: Mixed_5c.b2b.bn.running_var" in msg
    assert "1 unexpected keys: Mixed_5c.extra.weight" in msg


def test_i3d_refuses_non_finite_weights(tmp_path, source):
    path, state = _layout_file(tmp_path, source, _h2_key, "conv3d_0c_1x1", 400)
    state["mixed_3b.branch_0.batch3d.bias"][0] = float("nan")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"non-finite values in mixed_3b\.branch_0\.batch3d"):
        _loaded(path)


# ------------------------------------------------------------------------ torchvision video

FEATURES = {
    "r3d_18": 512, "mc3_18": 512, "r2plus1d_18": 512, "s3d": 1024, "swin3d_t": 768,
    "swin3d_s": 768, "swin3d_b": 1024, "mvit_v1_b": 768, "mvit_v2_s": 768,
}


@pytest.mark.parametrize("arch", sorted(FEATURES))
def test_torchvision_arch_gives_its_pooled_feature_on_its_default_clip(arch):
    model = _meta(TorchvisionVideoBackbone, arch=arch)
    assert set(ARCHS) == set(FEATURES)
    assert _meta_out(model, *model.default_input_shape) == (FEATURES[arch],)
    assert isinstance(getattr(model.model, ARCHS[arch].classifier), torch.nn.Identity)
    for layer in model.layers:
        model.get_submodule(layer)


@pytest.mark.parametrize("arch", sorted(FEATURES))
def test_torchvision_normalisation_is_the_one_of_its_weight_transforms(arch):
    from torchvision.models import get_model_weights

    mean, std = TorchvisionVideoBackbone.input_normalization(
        TorchvisionVideoBackbone.parse_params({"arch": arch})
    )
    for weights in get_model_weights(arch):
        transforms = weights.transforms()
        assert mean == pytest.approx(tuple(transforms.mean), abs=1e-6)
        assert std == pytest.approx(tuple(transforms.std), abs=1e-6)
    expected = {"r3d_18": KINETICS, "s3d": KINETICS, "swin3d_t": IMAGENET,
                "mvit_v2_s": ((0.45,) * 3, (0.225,) * 3)}
    if arch in expected:
        assert mean == pytest.approx(expected[arch][0]) and std == pytest.approx(expected[arch][1])


def test_torchvision_r3d_passes_the_backbone_contract_and_can_be_frozen(one_intra_op_thread):
    assert check_backbone(TorchvisionVideoBackbone, input_shape=(3, 4, 32, 32)) == (512,)
    frozen = TorchvisionVideoBackbone(TorchvisionVideoBackbone.parse_params({"frozen": True}))
    frozen.train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen.model.training


@pytest.mark.parametrize(
    ("arch", "clip", "message"),
    [
        ("mvit_v2_s", (3, 8, 224, 224), "mvit_v2_s takes exactly 16x224x224 clips"),
        ("mvit_v1_b", (3, 16, 112, 112), "got 16x112x112"),
        ("s3d", (3, 8, 224, 224), "s3d needs clips of at least 14 frames of 224x224"),
        ("s3d", (3, 16, 112, 112), r"got 16x112x112 \(map 2x3x3\)"),
    ],
)
def test_torchvision_input_constraints_fail_shape_inference_with_a_spec_error(arch, clip, message):
    import fakedives as fd

    from aqa_framework.builder import infer_shapes

    resolved = fd.resolved({
        "backbone": {"name": "torchvision-video", "params": {"arch": arch}},
        "heads": {"score": {"name": "score"}},
    })
    with pytest.raises(SpecError, match=message) as info:
        infer_shapes(resolved, (1, *clip))
    assert "model.backbone" in str(info.value)


def test_torchvision_loads_its_state_dict_without_the_classifier(tmp_path):
    from torchvision.models import get_model

    torch.manual_seed(0)
    source = get_model("s3d", weights=None)
    state = source.state_dict()
    assert state["classifier.1.weight"].shape == (400, 1024, 1, 1, 1)
    path = tmp_path / "s3d-d76dad2f.pth"
    torch.save(state, path)

    model = TorchvisionVideoBackbone(TorchvisionVideoBackbone.parse_params({"arch": "s3d"}))
    model.load_pretrained(path)
    loaded = model.model.state_dict()
    assert not any(k.startswith("classifier") for k in loaded)
    for name, value in loaded.items():
        assert torch.equal(value, state[name]), name

    r3d = TorchvisionVideoBackbone(TorchvisionVideoBackbone.parse_params({"arch": "r3d_18"}))
    with pytest.raises(CheckpointError, match=r"holds s3d weights, not r3d_18; set arch: s3d"):
        r3d.load_pretrained(path)
    state["features.0.0.0.weight"][0] = float("inf")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"non-finite values in features\.0\.0\.0\.weight"):
        model.load_pretrained(path)


# ------------------------------------------------------------------ input normalisation


class _NormalisedTinyParams(TinyVideoDatasetParams):
    model_config = ConfigDict(extra="forbid")

    normalize: bool = Field(True, description="Normalise with mean/std.")
    mean: tuple[float, float, float] = Field(IMAGENET[0], description="Per-channel mean.")
    std: tuple[float, float, float] = Field(IMAGENET[1], description="Per-channel std.")


class _NormalisedTiny(testing.TinyVideoDataset):
    """Random videos whose params say how frames are normalised (tests only)."""

    name = "testing.normtiny"
    Params = _NormalisedTinyParams


class _ExpectingC3D(C3DBackbone):
    """C3D whose weights expect the Kinetics mean and std (tests only)."""

    name = "testing.c3dkinetics"

    @classmethod
    def input_normalization(cls, params):
        return KINETICS


def _resolved(backbone, pretrained, **data):
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import parse_spec

    reg = testing.registry_with("testing", [_NormalisedTiny, _ExpectingC3D])
    params = dict(backbone[1], pretrained=str(pretrained) if pretrained else None)
    raw = {
        "model": {"backbone": {"name": backbone[0], "params": params},
                  "heads": {"score": {"name": "score"}}},
        "data": {"name": "testing.normtiny", "batch_size": 2, "val_fraction": 0,
                 "params": {"num_samples": 2, "num_clips": 1, "frames": 8, "size": 32, **data}},
        "train": {"epochs": 1, "max_steps_per_epoch": 1, "device": "cpu", "select_on": "last"},
    }
    return resolve(parse_spec(raw), registry=reg)


def test_normalisation_mismatch_is_named_only_when_pretrained_weights_are_loaded(tmp_path):
    from aqa_framework.engine.preflight import input_normalization_mismatch

    i3d = ("i3d", {})
    weights = tmp_path / "model_rgb.pth"
    assert input_normalization_mismatch(_resolved(i3d, weights)) is None  # ImageNet both
    assert input_normalization_mismatch(_resolved(i3d, None, mean=[0.5] * 3)) is None
    assert input_normalization_mismatch(_resolved(("c3d", {"width": 0.0625}), weights,
                                                  mean=[0.5] * 3)) is None  # declares nothing
    msg = input_normalization_mismatch(_resolved(i3d, weights, mean=[0.45] * 3, std=[0.225] * 3))
    assert msg == (
        f"backbone 'i3d' loads {weights}, whose weights expect frames normalised with mean "
        "[0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225], but dataset 'testing.normtiny' "
        "normalises with mean [0.45, 0.45, 0.45] and std [0.225, 0.225, 0.225]; set "
        "data.params.mean: [0.485, 0.456, 0.406] and std: [0.229, 0.224, 0.225]"
    )
    msg = input_normalization_mismatch(_resolved(i3d, weights, normalize=False))
    assert "does not normalise them (data.params.normalize: false); set normalize: true" in msg
    tv = ("torchvision-video", {"arch": "r2plus1d_18"})
    assert "mean [0.43216, 0.394666, 0.37645]" in input_normalization_mismatch(
        _resolved(tv, weights)
    )
    close = input_normalization_mismatch(_resolved(tv, weights, mean=[0.4322, 0.3947, 0.3765],
                                                   std=[0.228, 0.2215, 0.217]))
    assert close is None


def test_validate_preflight_warns_about_the_normalisation(tmp_path):
    from aqa_framework.engine.preflight import InputNormalizationWarning, preflight

    weights = tmp_path / "i3d.safetensors"
    save_file({"x": torch.zeros(1)}, weights)  # preflight reads the header only
    resolved = _resolved(("i3d", {}), weights, mean=[0.5] * 3, std=[0.5] * 3, size=64)
    with pytest.warns(InputNormalizationWarning, match="whose weights expect frames normalised"):
        found = preflight(resolved, samples=False)
    assert found.counts["backbone"] == 12_287_264


def test_run_warns_about_the_normalisation_before_training(tmp_path, one_intra_op_thread):
    from aqa_framework.engine.preflight import InputNormalizationWarning
    from aqa_framework.engine.runner import run_training

    torch.manual_seed(0)
    weights = tmp_path / "c3d.safetensors"
    save_file(C3DBackbone(C3DBackbone.parse_params({"width": 0.0625})).state_dict(), weights)
    resolved = _resolved(("testing.c3dkinetics", {"width": 0.0625}), weights, frames=16)
    with pytest.warns(InputNormalizationWarning, match="expect frames normalised with mean "
                      r"\[0.43216, 0.394666, 0.37645\]"):
        run_training(resolved, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "results.json").is_file()


# --------------------------------------------------------------------- aqa plugins show


def _show(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(["plugins", "show", *args])
    out, err = capsys.readouterr()
    assert (info.value.code or 0) == 0, err
    return out


def test_plugins_show_counts_parameters_and_flops_per_clip(capsys):
    size = json.loads(_show(capsys, "c3d", "--json"))["size"]
    # the eight 3x3x3 convolutions of C3D on a 16x112x112 clip, a multiply-add as 2 FLOPs
    convs = [(3, 64, 16, 112), (64, 128, 16, 56), (128, 256, 8, 28), (256, 256, 8, 28),
             (256, 512, 4, 14), (512, 512, 4, 14), (512, 512, 2, 7), (512, 512, 2, 7)]
    flops = sum(2 * cin * cout * 27 * t * s * s for cin, cout, t, s in convs)
    assert size == {"parameters": 27_655_936, "flops": flops, "clip": [3, 16, 112, 112]}
    assert "size: 27.7M parameters, 77.0 GFLOPs per 16x112x112 clip" in _show(capsys, "c3d")

    size = json.loads(_show(capsys, "i3d", "--json"))["size"]
    assert size["parameters"] == 12_287_264 and size["clip"] == [3, 16, 224, 224]
    assert 50e9 < size["flops"] < 60e9
    assert "size: 12.3M parameters, 55.6 GFLOPs per 16x224x224 clip" in _show(capsys, "i3d")
    assert "size:" not in _show(capsys, "average")


class _NeedsParamsBackbone(C3DBackbone):
    """C3D that cannot be built without a parameter (tests only)."""

    name = "testing.needsparams"

    class Params(C3DBackbone.Params):
        model_config = ConfigDict(extra="forbid")

        depth: int = Field(description="A required parameter.")


def test_plugins_show_says_when_a_backbone_cannot_be_sized(capsys):
    from aqa_framework.registry import reset_registry

    reset_registry(testing.registry_with("testing", [_NeedsParamsBackbone]))
    size = json.loads(_show(capsys, "testing.needsparams", "--json"))["size"]
    assert size["error"].startswith("ValidationError: 1 validation error")
    assert "size: not measured with default params (ValidationError" in _show(
        capsys, "testing.needsparams"
    )
