"""Training events: their order and payloads over a run, an interrupt and its resume, and a
plugin callback that raises."""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace

import pytest

from aqa_framework import hookimpl, testing
from aqa_framework.engine import runner
from aqa_framework.engine.checkpoint import load_checkpoint
from aqa_framework.engine.events import EVENTS, Callback, CallbackError
from aqa_framework.engine.signals import TrainingInterrupted
from aqa_framework.errors import SpecError
from aqa_framework.registry import Registry, reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {"score": {"name": "score"}},
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 8, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 3,
        "val_fraction": 0.25,
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}},
    "seed": 1,
}


class Recorder(Callback):
    """Records every event it receives."""

    name = "testing.recorder"
    seen: list[tuple[str, object]] = []

    def __getattribute__(self, attr):
        if attr.startswith("on_") and attr[3:] in EVENTS:
            return lambda event: Recorder.seen.append((attr[3:], event))
        return super().__getattribute__(attr)


class Exploding(Callback):
    """Raises at the end of the second epoch."""

    name = "testing.exploding"

    def on_epoch_end(self, event):
        if event.epoch == 2:
            raise ValueError("the podium is on fire")


def use_registry(*callbacks):
    @hookimpl
    def register_datasets(register):
        register(testing.TinyVideoDataset)

    @hookimpl
    def register_callbacks(register):
        for cls in callbacks:
            register(cls)

    plugin = SimpleNamespace(
        register_datasets=register_datasets, register_callbacks=register_callbacks
    )
    reset_registry(Registry(entry_points=[], extra_plugins=[("testing", plugin)], strict=True))


def resolved(*callbacks: str):
    """The tiny spec, naming plugin callbacks (by default the recorder)."""
    names = list(callbacks) if callbacks else ["testing.recorder"]
    return resolve(parse_spec({**RAW, "callbacks": names}), source="tiny.yaml")


@pytest.fixture(autouse=True)
def _fresh():
    Recorder.seen = []
    yield
    reset_registry(None)


def names(seen):
    return [n for n, _ in seen]


def test_a_run_emits_every_event_in_order_with_its_payload(tmp_path):
    use_registry(Recorder)
    folder = runner.run_training(resolved(), run_dir=tmp_path / "run")
    per_epoch = ["epoch_start", "step_end", "step_end", "evaluate", "checkpoint", "epoch_end"]
    assert names(Recorder.seen) == [
        "run_start",
        *per_epoch,
        *per_epoch,
        "evaluate",
        "run_end",
        "close",
    ]
    events = dict(Recorder.seen)  # the last of each name
    start = Recorder.seen[0][1]
    assert start.run.folder == folder and start.run.epochs == 2 and start.start_epoch == 0
    assert start.run.spec["model"]["backbone"]["name"] == "c3d"
    steps = [e for n, e in Recorder.seen if n == "step_end"]
    assert [(s.epoch, s.step, s.steps) for s in steps] == [
        (1, 1, 2),
        (1, 2, 2),
        (2, 1, 2),
        (2, 2, 2),
    ]
    assert set(steps[0].losses) == {"loss", "score"} and steps[0].updated
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    end = events["epoch_end"]
    assert end.epoch == 2 and list(end.history) == history and end.record == history[-1]
    assert end.summary.startswith("epoch 2/2 loss:")
    evaluations = [e for n, e in Recorder.seen if n == "evaluate"]
    assert [(e.epoch, e.split, e.final) for e in evaluations][:2] == [
        (1, "val", False),
        (2, "val", False),
    ]
    assert evaluations[0].metrics == history[0]["val"]
    final = evaluations[-1]
    results = json.loads((folder / "results.json").read_text())
    assert final.final and final.split == "test" and final.metrics == results["metrics"]
    assert final.epoch == results["epoch"] and len(final.result.keys) == results["samples"]
    assert events["checkpoint"].path == folder / "checkpoints" / "last"
    assert events["run_end"].metrics == results["metrics"]
    assert (folder / "report.md").is_file()  # written by the built-in callback before run_end
    assert events["close"].status == "finished" and events["close"].error is None


def test_interrupt_and_resume_events(tmp_path, monkeypatch):
    use_registry(Recorder)
    real = runner.train_one_epoch
    calls = {"n": 0}

    def interrupt_second_epoch(**kw):
        calls["n"] += 1
        if calls["n"] == 2:
            kw["should_stop"] = lambda: signal.raise_signal(signal.SIGTERM) or True
        return real(**kw)

    monkeypatch.setattr(runner, "train_one_epoch", interrupt_second_epoch)
    folder = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        runner.run_training(resolved(), run_dir=folder)
    assert names(Recorder.seen) == [
        "run_start",
        *["epoch_start", "step_end", "step_end", "evaluate", "checkpoint", "epoch_end"],
        "epoch_start",
        "step_end",
        "interrupt",
        "close",
    ]
    interrupt = dict(Recorder.seen)["interrupt"]
    assert (interrupt.signal, interrupt.epoch, interrupt.saved_epoch) == ("SIGTERM", 2, 1)
    assert "--resume" in interrupt.message
    assert dict(Recorder.seen)["close"].status == "interrupted"

    monkeypatch.setattr(runner, "train_one_epoch", real)
    Recorder.seen = []
    runner.run_training(resolved(), resume=folder)
    assert names(Recorder.seen)[:3] == ["run_start", "resume", "epoch_start"]
    start, resume = Recorder.seen[0][1], Recorder.seen[1][1]
    assert start.start_epoch == 1 and [r["epoch"] for r in start.history] == [1]
    assert resume.after_epoch == 1 and resume.checkpoint.name == "last"
    assert [e.epoch for n, e in Recorder.seen if n == "epoch_end"] == [2]
    assert names(Recorder.seen)[-2:] == ["run_end", "close"]


def test_a_callback_that_raises_stops_the_run_naming_the_plugin_and_keeps_the_checkpoint(
    tmp_path,
):
    use_registry(Exploding, Recorder)
    folder = tmp_path / "run"
    with pytest.raises(CallbackError) as info:
        runner.run_training(resolved("testing.exploding", "testing.recorder"), run_dir=folder)
    message = str(info.value)
    assert "callback 'testing.exploding'" in message and "plugin 'testing'" in message
    assert "on_epoch_end: ValueError: the podium is on fire" in message
    assert "the checkpoint of epoch 2 is kept; resume with: aqa run tiny.yaml --resume" in message
    # the callbacks after it were not called for that event, but every one was closed
    assert names(Recorder.seen)[-2:] == ["checkpoint", "close"]
    assert dict(Recorder.seen)["close"].status == "failed"
    assert load_checkpoint(folder / "checkpoints" / "last").epoch == 2
    assert not (folder / "results.json").exists()
    assert not list((folder / "checkpoints").glob(".*"))
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # built-ins ran first

    use_registry(Recorder)  # the run resumes once the plugin is fixed
    runner.run_training(resolved(), resume=folder)
    assert (folder / "results.json").is_file()


def test_a_plugin_that_registers_no_callback_class_is_named(tmp_path):
    use_registry(object)
    with pytest.raises(Exception, match="plugin 'testing'.*register_callbacks got"):
        runner.run_training(resolved(), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder was claimed


def test_a_plugin_callback_runs_only_where_a_spec_names_it(tmp_path):
    """Installing a plugin does not change other runs: its callbacks are opt-in."""

    class Everywhere(Callback):
        """Observes every run (opted in with always)."""

        name = "testing.everywhere"
        always = True
        runs = 0

        def on_run_end(self, event):
            Everywhere.runs += 1

    use_registry(Recorder, Everywhere)
    Recorder.seen.clear()
    spec = resolve(parse_spec({**RAW, "train": {**RAW["train"], "epochs": 1}}), source="t.yaml")
    runner.run_training(spec, run_dir=tmp_path / "quiet")
    assert Recorder.seen == [] and Everywhere.runs == 1
    bad = {**RAW, "callbacks": ["testing.recorder", "testing.nope"]}
    with pytest.raises(SpecError, match=r"callbacks\[1\].*unknown callback 'testing.nope'.*"
                       r"testing.everywhere, testing.recorder"):
        runner.run_training(resolve(parse_spec(bad), source="t.yaml"), run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
