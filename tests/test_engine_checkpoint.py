"""Checkpoints: no pickle, atomic replacement, verified loading, clear errors."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from aqa_framework.engine.checkpoint import (
    checkpoint_epoch,
    copy_checkpoint,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from aqa_framework.engine.seeding import get_rng_state, set_rng_state
from aqa_framework.engine.state_codec import decode, encode
from aqa_framework.errors import CheckpointError

META = {"epoch": 2, "spec": {"seed": 0}, "targets": {"scores": {}, "classes": {}}}


def trained_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_codec_round_trips_optimizer_and_rng_state_exactly():
    _, opt = trained_optimizer()
    state = {"optimizer": opt.state_dict(), "rng": get_rng_state(), "misc": (1, None, "x")}
    tree, tensors = encode(state)
    text = json.dumps(tree)  # the tree is plain JSON
    back = decode(json.loads(text), tensors)
    assert back["misc"] == (1, None, "x")
    assert set(back["optimizer"]["state"]) == {0, 1, 2, 3}  # int keys survive JSON
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99)
    for k, v in opt.state_dict()["state"][2].items():
        assert torch.equal(back["optimizer"]["state"][2][k], v)
    assert back["rng"]["numpy"][1].dtype == np.uint32


def test_codec_rejects_arbitrary_objects():
    with pytest.raises(TypeError, match="cannot store a object"):
        encode({"bad": object()})


def test_rng_state_restores_every_generator():
    state = get_rng_state()
    tree, tensors = encode(state)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(decode(json.loads(json.dumps(tree)), tensors))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_save_and_load_restore_weights_optimizer_and_metadata(tmp_path):
    model, opt = trained_optimizer()
    folder = save_checkpoint(
        tmp_path / "checkpoints",
        "last",
        model.state_dict(),
        META,
        {"optimizer": opt.state_dict()},
        also_as=("best",),
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "state.safetensors",
    ]
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary leftovers
    ckpt = load_checkpoint(tmp_path)  # a run folder: best is preferred
    assert ckpt.path.name == "best" and ckpt.epoch == 2 and ckpt.spec == {"seed": 0}
    model2, opt2 = trained_optimizer()
    torch.nn.init.zeros_(model2[0].weight)
    load_weights(model2, ckpt.model_state, ckpt.path)
    assert torch.equal(model2[0].weight, model[0].weight)
    opt2.load_state_dict(ckpt.training_state["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_tied_weights_are_saved(tmp_path):
    emb = torch.nn.Embedding(5, 3)
    out = torch.nn.Linear(3, 5, bias=False)
    out.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "out": out})
    save_checkpoint(tmp_path, "last", model.state_dict(), META)
    ckpt = load_checkpoint(tmp_path / "last", training_state=False)
    assert torch.equal(ckpt.model_state["out.weight"], emb.weight)


def test_a_newer_checkpoint_replaces_the_old_one_whole(tmp_path):
    model, _ = trained_optimizer()
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 1})
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 2})
    assert load_checkpoint(tmp_path / "last", training_state=False).epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_crash_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path):
    model, _ = trained_optimizer()
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 1})
    (tmp_path / "last").rename(tmp_path / "last.prev")  # the instant before the new one lands
    (tmp_path / ".last.tmp").mkdir()  # a half-written next checkpoint
    assert find_checkpoint(tmp_path / "last") == tmp_path / "last.prev"
    assert load_checkpoint(tmp_path / "last", training_state=False).epoch == 1
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_corrupt_weights_are_detected(tmp_path):
    model, _ = trained_optimizer()
    folder = save_checkpoint(tmp_path, "last", model.state_dict(), META, {"x": torch.ones(2)})
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors is corrupt \(its SHA-256"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "checkpoint.json").write_text("{not json"), "metadata .* is corrupt"),
        (lambda f: (f / "checkpoint.json").write_text('{"format": "other"}'), "not an aqa"),
        (lambda f: (f / "state.safetensors").unlink(), "incomplete: state.safetensors is missing"),
    ],
)
def test_damaged_checkpoints_give_one_clear_error(tmp_path, damage, message):
    model, _ = trained_optimizer()
    folder = save_checkpoint(tmp_path, "last", model.state_dict(), META, {"x": torch.ones(2)})
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_paths_that_hold_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder or checkpoint"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is not a run folder"):
        find_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="no completed checkpoint yet"):
        find_checkpoint(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="is a file"):
        find_checkpoint(tmp_path / "w.pt")


def test_weights_that_do_not_fit_are_named(tmp_path):
    model, _ = trained_optimizer()
    other = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    with pytest.raises(CheckpointError, match=r"wrong shape: 0.weight \(4, 3\) vs \(8, 3\)"):
        load_weights(other, model.state_dict(), "ckpt")


def test_a_second_name_is_a_copy_and_reports_its_epoch(tmp_path):
    model, _ = trained_optimizer()
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 4})
    assert checkpoint_epoch(tmp_path / "best") is None
    copy_checkpoint(tmp_path, "last", "best")
    assert checkpoint_epoch(tmp_path / "best") == 4
    assert load_checkpoint(tmp_path / "best", training_state=False).epoch == 4
    save_checkpoint(tmp_path, "last", model.state_dict(), {**META, "epoch": 5})
    assert checkpoint_epoch(tmp_path / "best") == 4  # untouched by the newer last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last"]  # no temporaries


def run_with_best_and_last(root, best_epoch=2, last_epoch=3):
    """A run folder's checkpoints: ``best`` of ``best_epoch`` and ``last`` of ``last_epoch``."""
    model, _ = trained_optimizer()
    ck = root / "checkpoints"
    best = {"epoch": best_epoch}
    save_checkpoint(ck, "last", model.state_dict(), {**META, "epoch": best_epoch, "best": best})
    copy_checkpoint(ck, "last", "best")
    save_checkpoint(ck, "last", model.state_dict(), {**META, "epoch": last_epoch, "best": best})
    return ck


def test_damage_to_best_does_not_reach_last(tmp_path):
    ck = run_with_best_and_last(tmp_path, best_epoch=3, last_epoch=3)
    copy_checkpoint(ck, "last", "best")
    weights = ck / "best" / "model.safetensors"
    with open(weights, "r+b") as f:  # damaged in place (a disk error, an edit)
        f.seek(-1, 2)
        last_byte = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last_byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match=r"best/model.safetensors is corrupt"):
        load_checkpoint(tmp_path)
    assert load_checkpoint(ck / "last", training_state=False).epoch == 3


def test_a_damaged_or_lost_best_is_an_error_not_a_silent_fallback(tmp_path):
    ck = run_with_best_and_last(tmp_path)
    (ck / "best" / "checkpoint.json").unlink()
    with pytest.raises(
        CheckpointError,
        match=r"checkpoints/best is damaged \(it has no checkpoint.json\); give .*"
        r"checkpoints/last to use the last checkpoint instead",
    ):
        find_checkpoint(tmp_path)
    assert find_checkpoint(ck / "last") == ck / "last"  # asking for last works
    shutil.rmtree(ck / "best")
    with pytest.raises(CheckpointError, match=r"best \(the selected epoch 2\) is missing"):
        load_checkpoint(tmp_path)
    # a run that stopped between writing last and best: last is the selected epoch
    ck = run_with_best_and_last(tmp_path / "b", best_epoch=3, last_epoch=3)
    shutil.rmtree(ck / "best")
    assert find_checkpoint(tmp_path / "b") == ck / "last"
