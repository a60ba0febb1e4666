"""Evaluation batches of whole sequences of different lengths: padded with a mask, or refused."""

from __future__ import annotations

import csv

import pytest
import torch
from torch.utils.data import default_collate

from aqa_framework.data.padding import SequencePadding, check_eval_lengths, mask_blind_components
from aqa_framework.data.skipping import collate, skipped_sample
from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.loaders import eval_loader
from aqa_framework.engine.loop import evaluate
from aqa_framework.errors import DataError, SpecError

GDLT = {"dim": 8, "in_hidden": 8, "ffn": 8, "heads": 2, "queries": 3}
TRANSFORMER = {"dim": 8, "heads": 2, "ffn": 8, "layers": 1}


def _raw(tmp_path, head="gdlt", aggregator="average", eval_batch_size=4, **data):
    head_params = GDLT if head == "gdlt" else {}
    params = {"root": str(tmp_path / "routines"), "routines": 24, "feature_dim": 12,
              "min_clips": 24, "max_clips": 36, "train_length": 24, **data}
    return {
        "model": {
            "backbone": {"name": "identity"},
            "aggregator": {"name": aggregator, "params": TRANSFORMER}
            if aggregator == "transformer" else {"name": aggregator},
            "heads": {"score": {"name": head, "params": head_params}},
        },
        "data": {"name": "synthetic-routines", "params": params, "batch_size": 4,
                 "eval_batch_size": eval_batch_size, "num_workers": 0},
        "train": {"epochs": 1, "device": "cpu", "precision": "fp32"},
        "eval": {"split": "test"},
    }


def _setup(tmp_path, **kwargs):
    """The resolved spec, its test split and a model in evaluation mode."""
    from aqa_framework.builder import build_model, open_dataset
    from aqa_framework.resolve import load

    resolved = load(_raw(tmp_path, **kwargs))
    test = open_dataset(resolved, "test")
    torch.manual_seed(0)
    model = build_model(resolved, test.targets, device="cpu", input_shape=(24, 12)).eval()
    return resolved, test, model


def _predict(model, dataset, batch_size):
    loader = eval_loader(dataset, batch_size, 0, DistContext(),
                         padding=SequencePadding.for_model(model))
    return evaluate(model=model, loader=loader, device=torch.device("cpu"), precision="fp32",
                    ctx=DistContext())


@pytest.mark.parametrize(
    ("head", "aggregator"), [("gdlt", "average"), ("score", "transformer")]
)
def test_padded_batches_predict_as_one_sample_per_batch(tmp_path, one_intra_op_thread, head,
                                                        aggregator):
    _, test, model = _setup(tmp_path, head=head, aggregator=aggregator)
    lengths = {int(test[i]["video"].shape[0]) for i in range(len(test))}
    assert len(lengths) > 1  # the whole routines differ in length
    assert mask_blind_components(model) == []
    one = _predict(model, test, 1)
    many = _predict(model, test, 4)
    assert many.keys == one.keys == test.keys
    a = torch.tensor(one.predictions["score"]["total"])
    b = torch.tensor(many.predictions["score"]["total"])
    assert torch.allclose(a, b, atol=1e-5), (a, b)
    # without the mask the padding would change the scores: the test can see the difference
    batch = collate([test[i] for i in range(len(test))], SequencePadding())
    assert not bool(batch["video_mask"].all())
    with torch.no_grad():
        masked = model.predict(model(batch["video"], None, mask=batch["video_mask"]))
        unmasked = model.predict(model(batch["video"], None))
    assert masked["score"]["total"] == pytest.approx(b.tolist(), abs=1e-5)
    assert not torch.allclose(b, torch.tensor(unmasked["score"]["total"]), atol=1e-4)


def test_collate_pads_to_the_longest_and_extends_the_masks():
    a = {"key": "a", "video": torch.ones(3, 2), "video_mask": torch.tensor([True, True, False])}
    b = {"key": "b", "video": torch.full((5, 2), 2.0), "video_mask": torch.ones(5, dtype=bool)}
    batch = collate([a, skipped_sample("c", "unreadable"), b], SequencePadding())
    assert batch["video"].shape == (2, 5, 2)
    assert batch["video"][0, 3:].abs().sum() == 0
    assert batch["video_mask"].tolist() == [
        [True, True, False, False, False], [True, True, True, True, True]
    ]
    assert batch["skipped"] == ["c"] and batch["key"] == ["a", "b"]
    # clips of frames without a mask of their own get one
    clips = [{"key": k, "video": torch.ones(n, 3, 2, 4, 4)} for k, n in (("x", 1), ("y", 3))]
    batch = collate(clips, SequencePadding())
    assert batch["video"].shape == (2, 3, 3, 2, 4, 4)
    assert batch["video_mask"].tolist() == [[True, False, False], [True, True, True]]


def test_equal_lengths_collate_as_before():
    samples = [{"key": str(i), "video": torch.randn(4, 3), "scores": {"s": float(i)}}
               for i in range(3)]
    for padding in (None, SequencePadding(), SequencePadding(("aggregator 'average'",))):
        batch = collate(samples, padding)
        expected = default_collate(samples)
        assert set(batch) == set(expected) == {"key", "video", "scores"}  # no mask added
        assert torch.equal(batch["video"], expected["video"])


def test_blind_components_refuse_padding_with_one_clear_error(tmp_path, one_intra_op_thread):
    _, test, model = _setup(tmp_path, head="score", aggregator="average")
    assert mask_blind_components(model) == ["aggregator 'average' (model.aggregator)"]
    samples = [test[i] for i in range(3)]
    with pytest.raises(DataError) as info:
        collate(samples, SequencePadding.for_model(model))
    message = str(info.value)
    for s in samples:
        assert f"{s['key']}: {s['video'].shape[0]}" in message
    assert "aggregator 'average'" in message and "data.eval_batch_size: 1" in message
    with pytest.raises(DataError, match="does not pad"):  # a loader that was told nothing
        collate(samples)
    with pytest.raises(DataError, match="beyond their length"):
        collate([{"key": "a", "video": torch.ones(3, 2)}, {"key": "b", "video": torch.ones(4, 5)}],
                SequencePadding())


def test_the_spec_is_refused_before_any_batch(tmp_path, one_intra_op_thread):
    from aqa_framework.engine.preflight import preflight
    from aqa_framework.resolve import load

    with pytest.raises(SpecError) as info:
        preflight(load(_raw(tmp_path, head="score", aggregator="average")), samples=False)
    assert info.value.problems[0][0] == "data.eval_batch_size"
    message = info.value.problems[0][1]
    assert "test_length: null" in message and "aggregator 'average'" in message
    assert "data.eval_batch_size: 1" in message

    # gdlt attending to the padding (mask_padding: false) is blind to it too
    raw = _raw(tmp_path)
    raw["model"]["heads"]["score"]["params"] = {**GDLT, "mask_padding": False}
    with pytest.raises(SpecError, match="head 'gdlt' of task 'score'"):
        preflight(load(raw), samples=False)

    # accepted: one sample per batch, a fixed test_length, or a model that masks padding out
    for raw in (
        _raw(tmp_path, head="score", aggregator="average", eval_batch_size=1),
        _raw(tmp_path, head="score", aggregator="average", test_length=30),
        _raw(tmp_path, head="gdlt", aggregator="average"),
        _raw(tmp_path, head="score", aggregator="transformer"),
    ):
        preflight(load(raw), samples=False)


def test_check_eval_lengths_ignores_datasets_of_fixed_shape(tmp_path, one_intra_op_thread):
    resolved, _, model = _setup(tmp_path, head="score", aggregator="average", test_length=30)
    check_eval_lengths(model, resolved.dataset, 8)  # no error: every sample has 30 clips


def test_a_run_evaluates_padded_batches_as_one_at_a_time(tmp_path, one_intra_op_thread):
    from aqa_framework.engine import runner
    from aqa_framework.engine.inference import evaluate_split, load_trained_model
    from aqa_framework.resolve import load

    folder = runner.run_training(load(_raw(tmp_path)), run_dir=tmp_path / "run")
    with open(folder / "predictions.csv", newline="") as f:
        rows = {r["key"]: float(r["score.total"]) for r in csv.DictReader(f)}
    single = evaluate_split(load_trained_model(folder, device="cpu"), batch_size=1)
    assert sorted(single.keys) == sorted(rows)
    for key, value in zip(single.keys, single.predictions["score"]["total"], strict=True):
        assert value == pytest.approx(rows[key], abs=1e-4)

    blind = load(_raw(tmp_path, head="score", aggregator="average", eval_batch_size=3))
    with pytest.raises(SpecError, match="eval_batch_size"):
        runner.run_training(blind, run_dir=tmp_path / "blind")
    # a run evaluated one at a time cannot be evaluated later in blind batches either
    one = load(_raw(tmp_path, head="score", aggregator="average", eval_batch_size=1))
    folder = runner.run_training(one, run_dir=tmp_path / "one")
    trained = load_trained_model(folder, device="cpu")
    assert len(evaluate_split(trained).keys) == 6
    with pytest.raises(SpecError, match="aggregator 'average'"):
        evaluate_split(trained, batch_size=3)
