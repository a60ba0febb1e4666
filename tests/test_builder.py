from pathlib import Path

import fakedives as fd
import pytest
import torch

from aqa_framework.builder import build_model, check_spec, count_parameters, open_dataset
from aqa_framework.errors import SpecError
from aqa_framework.model import MultitaskModel

REPO = Path(__file__).resolve().parents[1]
TABLE4 = sorted((REPO / "examples" / "table4").glob("*.yaml"))


def test_open_dataset_passes_split_and_train_flag():
    res = fd.resolved(fd.C3D_AVG_MTL, {"num_samples": 3})
    ds = open_dataset(res, "test", train=True)
    assert (ds.split, ds.train, len(ds)) == ("test", True, 3)


def test_build_model_wires_shapes_from_the_dataset_and_backbone():
    res = fd.resolved(fd.C3D_AVG_MTL)
    ds = open_dataset(res, "train")
    model = build_model(res, ds.targets, input_shape=ds.input_shape)
    assert isinstance(model, MultitaskModel) and model.training
    assert model.aggregator.in_shape == (128,)  # 32 channels x 1 x 2 x 2 at 1/16 width
    assert model.heads["score"].in_shape == (128,)  # shared_fc output
    assert model.heads["caption"].in_shape == (128,)  # clip features, not the average
    assert model.heads["cls"].classifiers["position"].out_features == 3
    assert model.heads["caption"].out.out_features == len(fd.WORDS)
    assert model.loss_weights == {"score": 1.0, "cls": 1.0, "caption": 1.0}
    assert model.targets == ds.targets


def test_loss_weights_come_from_the_spec():
    spec = {**fd.C3D_AVG_MTL, "heads": {
        "score": {"name": "score"}, "caption": {"name": "caption", "loss_weight": 0.01}}}
    res = fd.resolved(spec)
    model = build_model(res, open_dataset(res).targets, device="meta")
    assert model.loss_weights == {"score": 1.0, "caption": 0.01}


def test_head_without_its_target_fails_before_anything_is_built(tmp_path):
    spec = {**fd.C3D_AVG_MTL}
    spec["backbone"] = {"name": "c3d", "params": {"pretrained": str(tmp_path / "missing.pth")}}
    res = fd.resolved(spec, {"captions": False})
    with pytest.raises(SpecError) as err:
        build_model(res, open_dataset(res).targets)
    assert err.value.problems == [(
        "model.heads.caption",
        "head 'caption' needs captions targets, but the dataset provides scores (final_score), "
        "classes (position:3, armstand:2) (dataset 'fake.dives')",
    )]


def test_every_unfit_head_is_reported():
    res = fd.resolved(fd.C3D_AVG_MTL, {"classes": False, "captions": False})
    with pytest.raises(SpecError) as err:
        check_spec(res)
    assert [p for p, _ in err.value.problems] == ["model.heads.cls", "model.heads.caption"]
    assert "needs classes targets" in str(err.value)


def test_backbone_that_cannot_take_the_input_is_a_spec_error():
    spec = {"backbone": {"name": "mscadc", "params": {"width": 0.125}},
            "aggregator": {"name": "identity"}, "heads": {"score": {"name": "score"}}}
    res = fd.resolved(spec, {"num_clips": 1, "frames": 4})
    with pytest.raises(SpecError, match=r"model.backbone: backbone 'mscadc' cannot process "
                                        r"clips of shape \(3, 4, 32, 32\)"):
        build_model(res, open_dataset(res).targets, input_shape=(1, 3, 4, 32, 32))


def test_identity_aggregator_with_several_clips_is_a_spec_error():
    spec = {**fd.MSCADC_MTL, "heads": {"score": {"name": "score"}}}
    res = fd.resolved(spec, {"num_clips": 2})
    ds = open_dataset(res)
    with pytest.raises(SpecError, match="model.aggregator: aggregator 'identity' cannot pool"):
        build_model(res, ds.targets, input_shape=ds.input_shape)


def test_conv_head_on_vector_features_is_a_spec_error():
    spec = {**fd.C3D_AVG_MTL, "heads": {"score": {"name": "score", "params": {"form": "conv"}}}}
    res = fd.resolved(spec)
    with pytest.raises(SpecError, match="model.heads.score: head 'score' cannot be built: form "
                                        "'conv' needs feature maps"):
        build_model(res, open_dataset(res).targets, device="meta")


def test_pretrained_weights_are_loaded_after_construction(tmp_path):
    torch.manual_seed(0)
    spec = {**fd.C3D_AVG_MTL, "heads": {"score": {"name": "score"}}}
    res = fd.resolved(spec)
    donor = build_model(res, open_dataset(res).targets, input_shape=(2, 3, 16, 32, 32))
    path = tmp_path / "c3d_small.pth"
    torch.save({**donor.backbone.state_dict(), "fc6.weight": torch.zeros(2, 2)}, path)
    spec["backbone"] = {"name": "c3d", "params": {"width": 0.0625, "pretrained": str(path)}}
    res = fd.resolved(spec)
    model = build_model(res, open_dataset(res).targets, input_shape=(2, 3, 16, 32, 32))
    assert torch.equal(model.backbone.conv3b.weight, donor.backbone.conv3b.weight)


def test_meta_build_and_parameter_counts():
    spec = {**fd.C3D_AVG_MTL, "backbone": {"name": "c3d"},
            "aggregator": {"name": "average", "params": {"shared_fc": 4096}}}
    res = fd.resolved(spec)
    model = build_model(res, open_dataset(res).targets, device="meta")
    counts = count_parameters(model)
    assert counts["backbone"] == 27_655_936
    assert counts["aggregator"] == 8192 * 4096 + 4096
    assert counts["heads.score"] == 4096 + 1
    assert counts["heads.cls"] == 4096 * 5 + 5
    assert counts["total"] == counts["trainable"] == sum(
        v for k, v in counts.items() if k not in ("total", "trainable")
    )
    assert next(model.parameters()).device.type == "meta"


def test_check_spec_summarises_dataset_and_model():
    res = fd.resolved(fd.MSCADC_MTL, {"num_clips": 1})
    line = check_spec(res)
    assert "\n" not in line
    assert line.startswith(
        "dataset 'fake.dives' train split: 4 samples of 1x3x16x32x32 with scores (final_score)"
    )
    assert "backbone mscadc" in line and "aggregator identity" in line
    assert "heads: score" in line and "caption" in line


# -- the paper's Table 4 specs -------------------------------------------------------------


def test_table4_has_one_spec_per_row():
    names = {p.stem for p in TABLE4}
    assert names == {f"{a}-{r}" for a in ("c3d-avg", "mscadc")
                     for r in ("aqa", "cls", "caps", "cls-caps")}


def _resolve_or_skip(path, overrides=()):
    from aqa_framework.registry import Registry
    from aqa_framework.resolve import resolve
    from aqa_framework.spec import load_spec

    registry = Registry(entry_points=[])
    if "mtl-aqa" not in registry.names("dataset"):
        pytest.skip("the built-in 'mtl-aqa' dataset is not registered yet")
    return resolve(load_spec(path, overrides), registry=registry, source=str(path))


@pytest.mark.parametrize("path", TABLE4, ids=[p.stem for p in TABLE4])
def test_table4_specs_validate(path):
    res = _resolve_or_skip(path)
    spec = res.spec
    assert spec.train.epochs == 100 and spec.data.batch_size == 3
    assert spec.train.optimizer.name == "adam" and spec.train.optimizer.lr == 1e-4
    weights = {t: h.loss_weight for t, h in spec.model.heads.items()}
    assert weights.get("score") == 1.0
    assert weights.get("cls", 1.0) == 1.0 and weights.get("caption", 0.01) == 0.01


@pytest.mark.real_data
@pytest.mark.parametrize("path", [p for p in TABLE4 if "cls-caps" in p.stem],
                         ids=lambda p: p.stem)
def test_table4_full_mtl_specs_build_on_the_release_annotations(path, shared_data):
    root = shared_data / "mtl-aqa" / "MTL-AQA_split_0_data"
    # annotations only: no video to check samples with, no Sports-1M weights
    res = _resolve_or_skip(
        path, [f"data.params.root={root}", "model.backbone.params.pretrained=null"]
    )
    line = check_spec(res, samples=False)
    assert "1059 samples" in line and "captions (vocabulary 5781)" in line
