import pytest
import torch
from aqa_builtin.backbones.c3d import C3DBackbone
from aqa_builtin.backbones.mscadc import MSCADCBackbone
from aqa_builtin.backbones.timm_frames import TimmFramesBackbone
from pydantic import ValidationError
from safetensors.torch import save_file
from torch import nn

from aqa_framework.errors import CheckpointError
from aqa_framework.testing import check_backbone


def _on_meta(cls, **params):
    with torch.device("meta"):
        return cls(cls.parse_params(params))


def test_c3d_pool5_parameter_count_and_feature_size():
    model = _on_meta(C3DBackbone)
    assert sum(p.numel() for p in model.parameters()) == 27_655_936
    assert model(torch.empty(3, 3, 16, 112, 112, device="meta")).shape == (3, 8192)


class ReferenceC3D(nn.Module):
    """C3D as listed by Tran et al. (2015): 8 convs, 5 pools, fc6-fc8 (Sports-1M: 487)."""

    def __init__(self, ch=(64, 128, 256, 256, 512, 512, 512, 512), fc=4096, classes=487):
        super().__init__()
        names = ["conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]
        prev = 3
        for name, c in zip(names, ch, strict=True):
            setattr(self, name, nn.Conv3d(prev, c, kernel_size=3, padding=1))
            prev = c
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool = nn.MaxPool3d(2, 2)
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(ch[-1] * 16, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc8 = nn.Linear(fc, classes)

    def pool5_features(self, x):
        r = torch.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool(r(self.conv2(x)))
        x = self.pool(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        return x.flatten(1)


def test_c3d_full_width_matches_the_sports1m_key_layout():
    with torch.device("meta"):
        ref = ReferenceC3D()
    ours = _on_meta(C3DBackbone).state_dict()
    expected = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc")}
    assert {k: v.shape for k, v in ours.items()} == expected


def test_c3d_loads_a_c3d_pickle_layout_file_and_matches_the_reference(tmp_path):
    torch.manual_seed(0)
    ref = ReferenceC3D(ch=(8, 16, 32, 32, 64, 64, 64, 64), fc=32)
    path = tmp_path / "c3d.pickle"
    torch.save(ref.state_dict(), path, _use_new_zipfile_serialization=False)
    assert {"fc6.weight", "fc8.bias"} <= set(torch.load(path, weights_only=True))

    ours = C3DBackbone(C3DBackbone.parse_params({"width": 0.125, "pretrained": str(path)}))
    ours.load_pretrained(path)
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        got, expected = ours(x), ref.pool5_features(x)
    assert got.shape == (1, 64 * 16)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_c3d_weights_of_another_width_fail_with_the_mismatch(tmp_path):
    path = tmp_path / "c3d.safetensors"
    save_file(ReferenceC3D(ch=(8, 16, 32, 32, 64, 64, 64, 64), fc=8).state_dict(), path)
    small = C3DBackbone(C3DBackbone.parse_params({"width": 0.0625}))
    with pytest.raises(CheckpointError, match=r"shape mismatches: conv1.bias \(file \(8,\), model"):
        small.load_pretrained(path)


def test_c3d_frozen_layers_and_width():
    model = C3DBackbone(C3DBackbone.parse_params({"width": 0.0625, "frozen": ["conv1", "conv2"]}))
    assert not model.conv1.weight.requires_grad and not model.conv2.bias.requires_grad
    assert model.conv3a.weight.requires_grad
    assert model.conv1.out_channels == 4 and model.conv5b.out_channels == 32
    with pytest.raises(ValidationError, match="unknown layers"):
        C3DBackbone.parse_params({"frozen": ["conv6"]})
    assert check_backbone(C3DBackbone, {"width": 0.0625}, input_shape=(3, 16, 32, 32)) == (128,)


OFFICIAL_MSCADC_MODULES = {
    f"{kind}{n}" for n in ("1", "2", "3a", "3b", "4a", "4b", "5a", "5b") for kind in ("conv", "bn")
}


def test_mscadc_matches_paper_table3_shapes_and_official_names():
    model = _on_meta(MSCADCBackbone)
    assert model(torch.empty(2, 3, 16, 180, 180, device="meta")).shape == (2, 256, 2, 20, 20)
    assert {k.split(".")[0] for k in model.state_dict()} == OFFICIAL_MSCADC_MODULES
    assert model.conv5a.dilation == (2, 2, 2) and model.conv5b.dilation == (2, 2, 2)
    assert [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm3d)] == [
        32, 64, 128, 128, 256, 256, 256, 256
    ]


def test_mscadc_frozen_layers_keep_batchnorm_statistics():
    model = MSCADCBackbone(MSCADCBackbone.parse_params({"width": 0.125, "frozen": ["conv1"]}))
    model.train()
    assert not model.bn1.training and model.bn2.training
    assert not model.conv1.weight.requires_grad and not model.bn1.weight.requires_grad
    shape = check_backbone(MSCADCBackbone, {"width": 0.125}, input_shape=(3, 16, 32, 32))
    assert shape == (32, 2, 2, 2)


def test_mscadc_loads_official_layout_ignoring_foreign_layers(tmp_path):
    src = MSCADCBackbone(MSCADCBackbone.parse_params({"width": 0.125}))
    sd = {**src.state_dict(), "fc6.weight": torch.zeros(3, 3)}
    torch.save(sd, tmp_path / "C3D_small.pth")
    dst = MSCADCBackbone(MSCADCBackbone.parse_params({"width": 0.125}))
    dst.load_pretrained(tmp_path / "C3D_small.pth")
    assert torch.equal(dst.conv4b.weight, src.conv4b.weight)
    assert torch.equal(dst.bn5b.running_var, src.bn5b.running_var)


def test_timm_backbone_runs_frames_and_loads_a_local_file(tmp_path):
    import timm

    torch.manual_seed(0)
    src = timm.create_model("test_resnet", pretrained=False, num_classes=7)
    save_file(src.state_dict(), tmp_path / "test_resnet.safetensors")
    bb = TimmFramesBackbone(TimmFramesBackbone.parse_params({"model": "test_resnet"}))
    bb.load_pretrained(tmp_path / "test_resnet.safetensors")
    bb.eval()
    src.eval()
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        got = bb(clips)
        frames = clips.transpose(1, 2).reshape(8, 3, 32, 32)
        per_frame = src.forward_head(src.forward_features(frames), pre_logits=True)
    torch.testing.assert_close(got, per_frame.reshape(2, 4, -1).mean(1), rtol=1e-5, atol=1e-5)
    assert bb.default_input_shape == (3, 16, 160, 160)
    assert check_backbone(
        TimmFramesBackbone, {"model": "test_resnet", "temporal_pool": "max"},
        input_shape=(3, 2, 32, 32),
    ) == (got.shape[1],)


def test_timm_backbone_rejects_unknown_models():
    with pytest.raises(ValidationError, match="timm has no model 'test_resnett'"):
        TimmFramesBackbone.parse_params({"model": "test_resnett"})
