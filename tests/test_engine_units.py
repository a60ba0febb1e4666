"""Engine pieces: epoch selection, loaders, shard merging, run folder, report."""

from __future__ import annotations

import json

import pytest
import torch

from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.loaders import EpochLoader, ShardSampler
from aqa_framework.engine.loop import EvalResult, _merge_shards
from aqa_framework.engine.report import ReportInputs, final_metrics, write_report
from aqa_framework.engine.run_folder import RunFolder
from aqa_framework.engine.runner import spec_differences
from aqa_framework.engine.selection import describe_selection, resolve_selection
from aqa_framework.errors import CheckpointError, SpecError
from aqa_framework.spec import parse_spec

BASE = {
    "model": {"backbone": {"name": "c3d"}, "heads": {"score": {"name": "score"}}},
    "data": {"name": "synthetic-diving"},
}


def spec_with(**train):
    return parse_spec({**BASE, "train": train})


def test_default_protocol_selects_on_validation_or_reports_the_last_epoch():
    sel = resolve_selection(spec_with(), has_val=True)
    assert (sel.split, sel.metric, sel.mode) == ("val", "score.spearman", "max")
    assert resolve_selection(spec_with(), has_val=False).split is None
    assert resolve_selection(spec_with(select_on="test"), has_val=True).split == "test"
    assert resolve_selection(spec_with(select_metric="score.rel_l2"), True).mode == "min"
    with pytest.raises(SpecError, match="train.select_on: 'val' needs a validation split"):
        resolve_selection(spec_with(select_on="val"), has_val=False)
    with pytest.raises(SpecError, match="train.select_metric: 'cls.accuracy' must be"):
        resolve_selection(spec_with(select_metric="cls.accuracy"), has_val=True)


def test_selection_compares_and_reports_unknown_metrics():
    sel = resolve_selection(spec_with(), has_val=True)
    assert sel.better(0.5, None) and sel.better(0.6, 0.5) and not sel.better(0.4, 0.5)
    assert not sel.better(float("nan"), 0.1)
    with pytest.raises(SpecError, match="no metric 'score.spearman'; the heads report: a.b"):
        sel.value({"a.b": 1.0})
    low = resolve_selection(spec_with(select_metric="score.rel_l2"), True)
    assert low.better(0.1, 0.2) and not low.better(0.3, 0.2)


def test_report_sentence_names_the_selecting_split():
    sel = resolve_selection(spec_with(), has_val=True)
    text = describe_selection(sel, {"epoch": 3, "value": 0.8}, 10, "test", 12, 5)
    assert "Epoch 3 of 10 was selected on the validation split (12 samples" in text
    assert "subset_seed=5" in text and "test split was used only for this final" in text
    test_sel = resolve_selection(spec_with(select_on="test"), has_val=False)
    assert "optimistic" in describe_selection(test_sel, {"epoch": 1, "value": 0.5}, 2, "test")
    last = resolve_selection(spec_with(), has_val=False)
    assert describe_selection(last, None, 4, "test").startswith("No epoch selection: the last")


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"key": str(i), "x": torch.tensor(i)}


def order(loader):
    return [int(k) for batch in loader for k in batch["key"]]


def test_training_order_depends_only_on_seed_and_epoch():
    a = EpochLoader(Numbers(), 4, 0, seed=1, ctx=DistContext())
    b = EpochLoader(Numbers(), 4, 0, seed=1, ctx=DistContext())
    first = order(a.epoch(0))
    assert sorted(first) == list(range(10))
    assert order(a.epoch(1)) != first
    assert order(b.epoch(1)) == order(a.epoch(1))  # a fresh process (resume) sees the same
    assert order(b.epoch(0)) == first


def test_global_batch_is_split_across_ranks_and_matches_one_process():
    one = EpochLoader(Numbers(), 4, 0, seed=3, ctx=DistContext())
    ranks = [EpochLoader(Numbers(), 4, 0, 3, DistContext(r, 2, r, "gloo")) for r in range(2)]
    single = [sorted(int(k) for k in b["key"]) for b in one.epoch(2)]
    per_rank = [list(r.epoch(2)) for r in ranks]
    assert [len(b["key"]) for b in per_rank[0]] == [2, 2, 1]
    joined = [sorted(int(k) for k in a["key"] + b["key"]) for a, b in zip(*per_rank, strict=True)]
    assert joined[:2] == single[:2]  # same global batches (the last one is padded by DDP)
    with pytest.raises(SpecError, match="data.batch_size: 3 is the global batch size"):
        EpochLoader(Numbers(), 3, 0, 0, DistContext(0, 2, 0, "gloo"))


def test_sharded_evaluation_covers_each_sample_once_in_order():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    results = [
        {
            "keys": [str(i) for i in s],
            "preds": {"t": {"c": [i * 10 for i in s]}},
            "refs": {"t": {"c": s}},
        }
        for s in shards
    ]
    merged = _merge_shards(results)
    assert merged["keys"] == [str(i) for i in range(7)]
    assert merged["preds"]["t"]["c"] == [i * 10 for i in range(7)]
    empty = {"keys": [], "preds": {}, "refs": {}}  # more ranks than samples
    one = {"keys": ["0"], "preds": {"t": {"c": [0]}}, "refs": {"t": {"c": [0]}}}
    merged = _merge_shards([one, empty])
    assert merged["keys"] == ["0"] and merged["preds"] == {"t": {"c": [0]}}


def test_spec_changes_allowed_on_resume():
    a = parse_spec(BASE).model_dump(mode="json")
    b = parse_spec({**BASE, "train": {"epochs": 7}, "output": {"name": "x"}}).model_dump(
        mode="json"
    )
    assert spec_differences(a, b) == []
    c = parse_spec({**BASE, "train": {"optimizer": {"lr": 0.5}}, "seed": 2}).model_dump(mode="json")
    assert [p for p, _ in spec_differences(a, c)] == ["seed", "train.optimizer.lr"]


def test_run_folder_refuses_to_overwrite_a_run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create()
    folder.write_spec("seed: 0\n")
    folder.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert [r["epoch"] for r in folder.read_metrics()] == [1, 2]
    (folder.path / "notes.txt").write_text("mine")
    RunFolder(tmp_path / "run").create()  # no checkpoint yet: the run may start again
    assert sorted(p.name for p in folder.path.iterdir()) == ["notes.txt"]
    folder.write_spec("seed: 0\n")
    (folder.checkpoints / "last").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="already holds a run; resume it with --resume"):
        RunFolder(tmp_path / "run").create()
    with pytest.raises(CheckpointError, match="has no final results"):
        final_metrics(folder.path)


def test_report_has_metrics_scatter_and_commentaries(tmp_path):
    result = EvalResult(
        keys=["a", "b", "c"],
        predictions={
            "score": {"final_score": [50.0, 60.0, 70.0]},
            "caption": {"caption": ["a clean dive", "a dive", "splash"]},
        },
        references={
            "score": {"final_score": [52.0, 58.0, 75.0]},
            "caption": {"caption": ["a clean rip", "a dive", "big splash"]},
        },
        metrics={"score.spearman": 1.0, "caption.bleu_1": 0.5},
    )
    sentence = "Epoch 2 of 3 was selected on the validation split"
    path = write_report(
        tmp_path,
        ReportInputs(
            title="run",
            description="tiny",
            spec_source="q.yaml",
            components=["backbone c3d"],
            dataset="synthetic-diving: 3 test",
            selection=sentence,
            final_split="test",
            result=result,
            task_kinds={"score": "scores", "caption": "captions"},
            history=[
                {"epoch": 1, "lr": 0.1, "train": {"loss": 2.0}, "val": {"score.spearman": 0.3}}
            ],
            parameters={"backbone": 10, "total": 10, "trainable": 10},
        ),
    )
    text = path.read_text()
    assert sentence in text
    assert "| score.spearman | 1.0000 |" in text
    assert "![scatter](report/scatter.png)" in text
    assert (tmp_path / "report" / "scatter.png").stat().st_size > 1000
    assert "| a | a clean dive | a clean rip |" in text
    assert "| 1 | 0.1000 | 2.0000 | 0.3000 |" in text
    assert "| parameters | 10 (backbone 10) |" in text
    (tmp_path / "results.json").write_text(json.dumps({"metrics": {"score.spearman": 0.9}}))
    assert final_metrics(tmp_path) == {"score.spearman": 0.9}


def test_restored_optimizer_moments_take_the_layout_of_their_channels_last_weights():
    from aqa_framework.engine.optim import build_optimizer, load_optimizer_state

    def model():
        torch.manual_seed(0)
        conv = torch.nn.Conv3d(3, 4, 3)
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
        return conv

    def step(conv, opt):
        conv(torch.ones(1, 3, 4, 4, 4)).square().sum().backward()
        opt.step()
        opt.zero_grad()

    conv = model()
    opt = build_optimizer(conv, spec_with().train)
    step(conv, opt)
    saved = dict(opt.state_dict())  # as a checkpoint gives it back: contiguous copies
    saved["state"] = {
        i: {k: v.clone(memory_format=torch.contiguous_format) for k, v in s.items()}
        for i, s in saved["state"].items()
    }
    fresh = model()
    fresh.load_state_dict(conv.state_dict())
    restored = build_optimizer(fresh, spec_with().train)
    load_optimizer_state(restored, saved)
    moments = restored.state[fresh.weight]
    assert saved["state"][0]["exp_avg"].stride() != fresh.weight.stride()
    assert moments["exp_avg"].stride() == fresh.weight.stride()
    assert torch.equal(moments["exp_avg"], opt.state[conv.weight]["exp_avg"])
    step(conv, opt)
    step(fresh, restored)
    assert torch.equal(conv.weight, fresh.weight)


def test_auto_workers_are_none_on_cpu_and_one_per_spare_core_on_gpu(monkeypatch):
    from aqa_framework.engine.loaders import MAX_AUTO_WORKERS, resolve_num_workers

    assert spec_with().data.num_workers == "auto"
    assert resolve_num_workers("auto", "cpu") == 0
    assert resolve_num_workers(3, "cpu") == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert resolve_num_workers("auto", "cuda:0") == MAX_AUTO_WORKERS
    assert resolve_num_workers("auto", "cuda", world_size=4) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert resolve_num_workers("auto", "cuda") == 1
    with pytest.raises(SpecError, match="data.num_workers"):
        parse_spec({**BASE, "data": {"name": "synthetic-diving", "num_workers": -1}})


class _SignalsItself(torch.utils.data.Dataset):
    """Every item sends Ctrl-C and SIGTERM to the process that loads it."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        return torch.tensor(i)


def test_loader_workers_leave_ctrl_c_and_sigterm_to_the_training_process():
    from aqa_framework.engine.loaders import eval_loader

    loader = eval_loader(_SignalsItself(), batch_size=2, num_workers=1, ctx=DistContext())
    assert torch.cat(list(loader)).tolist() == [0, 1, 2, 3]  # the worker survived both
