import argparse

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from aqa_framework.errors import CheckpointError
from aqa_framework.weights import c3d_sports1m, load_into, load_state_dict, strip_prefix


def test_safetensors_and_torch_files_load(tmp_path):
    sd = {"a.weight": torch.randn(2, 3), "a.bias": torch.randn(2)}
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pth")
    torch.save(sd, tmp_path / "legacy.pickle", _use_new_zipfile_serialization=False)
    for name in ("w.safetensors", "w.pth", "legacy.pickle"):
        got = load_state_dict(tmp_path / name)
        assert set(got) == set(sd)
        assert torch.equal(got["a.weight"], sd["a.weight"])


def test_wrapped_and_data_parallel_state_dicts_are_unwrapped(tmp_path):
    sd = {"module.fc.weight": torch.ones(1, 1)}
    torch.save({"state_dict": sd}, tmp_path / "ckpt.pth")
    assert set(load_state_dict(tmp_path / "ckpt.pth")) == {"fc.weight"}


def test_files_needing_arbitrary_objects_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "args": argparse.Namespace(lr=1)}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="cannot be loaded safely") as err:
        load_state_dict(tmp_path / "unsafe.pth")
    assert "weights_only=True" in str(err.value)
    assert "safetensors" in str(err.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state_dict(tmp_path / "junk.safetensors")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a mapping"):
        load_state_dict(tmp_path / "list.pth")


def test_load_into_lists_missing_unexpected_and_mismatched_keys():
    module = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    sd = {
        "0.weight": torch.zeros(2, 3),
        "0.bias": torch.zeros(5),
        "extra.weight": torch.zeros(1),
    }
    with pytest.raises(CheckpointError) as err:
        load_into(module, sd, source="w.pth")
    msg = str(err.value)
    assert "w.pth does not fit Sequential" in msg
    assert "shape mismatches: 0.bias (file (5,), model (2,))" in msg
    assert "missing keys: 2.bias, 2.weight" in msg
    assert "unexpected keys: extra.weight" in msg


def test_load_into_copies_and_can_ignore_foreign_modules():
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    sd = {**src.state_dict(), "classifier.weight": torch.zeros(4, 2)}
    load_into(dst, sd, source="x", ignore_foreign=True)
    assert torch.equal(dst.weight, src.weight)


def test_c3d_sports1m_drops_fc_layers_and_strip_prefix():
    sd = {k: torch.zeros(1) for k in ("conv1.weight", "conv5b.bias", "fc6.weight", "fc8.bias")}
    assert set(c3d_sports1m(sd)) == {"conv1.weight", "conv5b.bias"}
    assert set(strip_prefix({"backbone.conv1.weight": 1, "heads.x": 2}, "backbone.")) == {
        "conv1.weight"
    }


def test_official_mtl_aqa_checkpoints_load_into_a_c3d_avg_model(tmp_path):
    import fakedives as fd

    from aqa_framework.builder import build_model, open_dataset
    from aqa_framework.weights import load_official_mtl_aqa

    res = fd.resolved(fd.C3D_AVG_MTL)
    model = build_model(res, open_dataset(res).targets, input_shape=(2, 3, 16, 32, 32))
    ours = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    official = {
        "model_CNN": strip_prefix(ours, "backbone."),
        "model_my_fc6": {"fc.weight": ours["aggregator.fc.weight"],
                         "fc.bias": ours["aggregator.fc.bias"]},
        "model_score_regressor": {"fc_final_score.weight": ours["heads.score.out.weight"],
                                  "fc_final_score.bias": ours["heads.score.out.bias"]},
        "model_position_classifier": {
            f"fc_{f}.{p}": ours[f"heads.cls.classifiers.{f}.{p}"]
            for f in ("position", "armstand") for p in ("weight", "bias")
        },
        "model_caption": {
            k.replace("heads.caption.encoder.", "rnn1.").replace("heads.caption.decoder.", "rnn2.")
            .replace("heads.caption.", ""): v
            for k, v in ours.items() if k.startswith("heads.caption.")
        },
    }
    files = {}
    for name, sd in official.items():
        files[name] = tmp_path / f"{name}_99.pth"
        torch.save(sd, files[name])
    loaded = load_official_mtl_aqa(model, files)
    assert loaded == ["backbone", "aggregator", "heads.score", "heads.cls", "heads.caption"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, ours[k]), k

    with pytest.raises(CheckpointError, match="unknown official module 'model_fc7'"):
        load_official_mtl_aqa(model, {"model_fc7": files["model_CNN"]})
    with pytest.raises(CheckpointError, match=r"model_caption_99.pth \(model_CNN -> backbone\) "
                                              r"does not fit C3DBackbone: missing keys"):
        load_official_mtl_aqa(model, {"model_CNN": files["model_caption"]})


def _official_files(model, tmp_path, *, caption_words=None):
    """The per-module files of the official code holding ``model``'s (random) weights."""
    from aqa_framework.weights import strip_prefix

    ours = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    caption = {
        k.replace("encoder.", "rnn1.").replace("decoder.", "rnn2."): v
        for k, v in strip_prefix(ours, "heads.caption.").items()
    }
    if caption_words is not None:  # the official model is built for fewer words
        for k in ("embedding.weight", "out.weight", "out.bias"):
            caption[k] = caption[k][:caption_words]
    official = {
        "model_CNN": strip_prefix(ours, "backbone."),
        "model_my_fc6": strip_prefix(ours, "aggregator."),
        "model_score_regressor": {
            f"fc_final_score.{p}": ours[f"heads.score.out.{p}"] for p in ("weight", "bias")
        },
        "model_dive_classifier": {
            f"fc_{f}.{p}": ours[f"heads.cls.classifiers.{f}.{p}"]
            for f in ("position", "armstand") for p in ("weight", "bias")
        },
        "model_caption": caption,
    }
    files = {}
    for name, sd in official.items():
        files[name] = tmp_path / f"{name}_100.pth"
        torch.save(sd, files[name])
    return ours, files


def test_a_5779_word_official_caption_model_loads_into_the_5781_word_head(tmp_path):
    import fakedives as fd
    import torch.nn.functional as F

    from aqa_framework.builder import build_model, open_dataset

    res = fd.resolved(fd.C3D_AVG_MTL)
    model = build_model(res, open_dataset(res).targets, input_shape=(2, 3, 16, 32, 32))
    head = model.heads["caption"]
    v = head.vocab_size  # 10 words; the official file has 2 fewer, as 5779 vs 5781
    _, files = _official_files(model, tmp_path, caption_words=v - 2)
    own_embedding = head.embedding.weight.detach().clone()
    head.load_pretrained(files["model_caption"])
    official = torch.load(files["model_caption"], weights_only=True)
    assert torch.equal(head.embedding.weight[: v - 2], official["embedding.weight"])
    assert torch.equal(head.embedding.weight[v - 2 :], own_embedding[v - 2 :])
    assert torch.equal(head.out.weight[v - 2 :], torch.zeros(2, head.out.in_features))
    assert (head.out.bias[v - 2 :] == -1.0e4).all()
    # the head now generates what the official model generates: same log-probabilities
    # over the official words, probability 0 for the two it lacks
    h = torch.randn(3, head.out.in_features)
    ours = head.out(h).float().log_softmax(-1)
    theirs = F.linear(h, official["out.weight"], official["out.bias"]).log_softmax(-1)
    torch.testing.assert_close(ours[:, : v - 2], theirs)
    assert (ours[:, v - 2 :].exp() == 0).all()


def test_specs_initialise_every_part_from_the_official_checkpoints(tmp_path):
    import copy

    import fakedives as fd

    from aqa_framework.builder import build_model, open_dataset
    from aqa_framework.engine.preflight import check_pretrained

    res = fd.resolved(fd.C3D_AVG_MTL)
    targets = open_dataset(res).targets
    donor = build_model(res, targets, input_shape=(2, 3, 16, 32, 32))
    ours, files = _official_files(donor, tmp_path)
    spec = copy.deepcopy(fd.C3D_AVG_MTL)
    spec["backbone"]["params"]["pretrained"] = str(files["model_CNN"])
    spec["aggregator"]["params"]["pretrained"] = str(files["model_my_fc6"])
    spec["heads"]["score"]["params"]["pretrained"] = str(files["model_score_regressor"])
    spec["heads"]["cls"]["params"] = {"pretrained": str(files["model_dive_classifier"])}
    spec["heads"]["caption"]["params"]["pretrained"] = str(files["model_caption"])
    model = build_model(fd.resolved(spec), targets, input_shape=(2, 3, 16, 32, 32))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ours[k]), k

    spec["heads"]["score"]["params"]["pretrained"] = str(tmp_path / "missing.pth")
    meta = build_model(fd.resolved(spec), targets, device="meta", input_shape=(2, 3, 16, 32, 32))
    with pytest.raises(CheckpointError, match="missing.pth"):
        check_pretrained(meta)  # aqa validate checks the heads' files too
    spec["heads"]["score"]["params"]["pretrained"] = str(files["model_caption"])
    with pytest.raises(CheckpointError, match=r"model_caption_100.pth \(head score\) does not fit"):
        build_model(fd.resolved(spec), targets, input_shape=(2, 3, 16, 32, 32))
