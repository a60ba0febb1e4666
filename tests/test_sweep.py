"""Sweeps: override deletion, sweep files, expansion, resume and the results table."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from aqa_framework.errors import SpecError
from aqa_framework.experiments.sweep import SweepFolder, expand, load_sweep, run_sweep, tabulate
from aqa_framework.spec import apply_overrides

BASE = {
    "model": {
        "backbone": {"name": "c3d"},
        "heads": {
            "score": {"name": "score"},
            "cls": {"name": "classification"},
            "caption": {"name": "caption", "loss_weight": 0.01},
        },
    },
    "data": {"name": "synthetic-diving", "params": {"num_train": 8}},
    "train": {"epochs": 3},
}

TABLE4 = """
base: base.yaml
description: STL vs MTL
axes:
  tasks:
    aqa: {model.heads.cls: null, model.heads.caption: null}
    aqa+cls: {model.heads.caption: null}
    aqa+caps: {model.heads.cls: null}
    aqa+cls+caps: {}
  seed: [0, 1, 2]
metrics: [score.spearman, cls.accuracy]
set: [train.epochs=1]
"""


def write_sweep(tmp_path: Path, text: str = TABLE4, base: dict | None = None) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or BASE), encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- apply_overrides


def test_tilde_override_removes_a_key_and_null_still_sets_none():
    raw = copy.deepcopy(BASE)
    apply_overrides(raw, ["~model.heads.caption", "data.train_size=null", " ~train.epochs "])
    assert set(raw["model"]["heads"]) == {"score", "cls"}
    assert raw["data"]["train_size"] is None
    assert "epochs" not in raw["train"]


def test_tilde_override_on_a_missing_key_names_what_exists():
    raw = copy.deepcopy(BASE)
    with pytest.raises(SpecError, match=r"no key 'captoin' in model.heads \(has: score, cls"):
        apply_overrides(raw, ["~model.heads.captoin"])
    with pytest.raises(SpecError, match="~ must be followed"):
        apply_overrides(raw, ["~"])


# --------------------------------------------------------------------------- sweep files


def test_sweep_file_errors_carry_their_path(tmp_path):
    bad = TABLE4.replace("metrics: [score.spearman, cls.accuracy]", "metrics: [spearman]")
    bad = bad.replace("description:", "colour: red\ndescription:")
    with pytest.raises(SpecError) as info:
        load_sweep(write_sweep(tmp_path, bad))
    paths = {p for p, _ in info.value.problems}
    assert paths == {"metrics", "colour"}
    with pytest.raises(SpecError, match="repeats values: 1"):
        load_sweep(write_sweep(tmp_path, TABLE4.replace("[0, 1, 2]", "[1, 1]")))


def test_expand_is_the_grid_in_file_order_with_overrides_applied(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    runs = expand(sweep, ["train.optimizer.lr=0.5", "model.heads.caption.params.hidden=8"])
    assert len(runs) == 12
    assert runs[0].id == "tasks-aqa__seed-0" and runs[-1].id == "tasks-aqa+cls+caps__seed-2"
    heads = {r.labels["tasks"]: set(r.raw["model"]["heads"]) for r in runs}
    assert heads == {
        "aqa": {"score"},
        "aqa+cls": {"score", "cls"},
        "aqa+caps": {"score", "caption"},
        "aqa+cls+caps": {"score", "cls", "caption"},
    }
    assert [r.raw["seed"] for r in runs[:3]] == [0, 1, 2]
    assert all(r.raw["train"]["epochs"] == 1 for r in runs)  # the sweep's own `set`
    assert all(r.raw["train"]["optimizer"]["lr"] == 0.5 for r in runs)  # --set
    # --set changes the base: a head removed by an axis stays removed
    assert runs[0].raw["model"]["heads"].keys() == {"score"}
    assert runs[-1].raw["model"]["heads"]["caption"]["params"] == {"hidden": 8}
    assert len({r.spec_hash for r in runs}) == 12


def test_expand_rejects_an_override_that_does_not_apply(tmp_path):
    text = TABLE4.replace("aqa+caps: {model.heads.cls: null}", "aqa+caps: {model.heads.clss: null}")
    with pytest.raises(SpecError, match=r"axes.tasks.aqa\+caps: model.heads.clss"):
        expand(load_sweep(write_sweep(tmp_path, text)))


def test_scalar_axis_named_after_a_spec_path(tmp_path):
    text = "base: base.yaml\naxes:\n  data.train_size: [450, 140]\n  seed: [3]\n"
    runs = expand(load_sweep(write_sweep(tmp_path, text)))
    assert [r.raw["data"]["train_size"] for r in runs] == [450, 140]
    assert [r.id for r in runs] == ["data.train_size-450__seed-3", "data.train_size-140__seed-3"]


# --------------------------------------------------------------------------- running


class FakeEngine:
    """Writes a run folder like the engine; the score depends on heads and seed."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple[str, bool]] = []
        self.fail_on = fail_on

    def __call__(self, raw, run_dir, resume=None):
        run_dir = Path(run_dir)
        self.calls.append((run_dir.name, resume is not None))
        run_dir.mkdir(parents=True, exist_ok=True)
        last = run_dir / "checkpoints" / "last"
        last.mkdir(parents=True, exist_ok=True)
        (last / "checkpoint.json").write_text("{}")
        if run_dir.name == self.fail_on:
            self.fail_on = None
            raise KeyboardInterrupt
        heads = raw["model"]["heads"]
        metrics = {"score.spearman": 0.5 + 0.1 * len(heads) + 0.01 * raw["seed"]}
        if "cls" in heads:
            metrics["cls.accuracy"] = 0.9
        (run_dir / "final.json").write_text(json.dumps(metrics))
        return run_dir


def read_final(run_dir: Path) -> dict:
    return json.loads((run_dir / "final.json").read_text())


def resolve_raw(run, source):
    return run.raw


def test_sweep_runs_every_point_and_averages_over_seeds(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    engine = FakeEngine()
    folder = tmp_path / "out"
    statuses = run_sweep(
        sweep, folder, train=engine, read_metrics=read_final, resolve_fn=resolve_raw
    )
    assert [s.state for s in statuses] == ["done"] * 12
    assert len(engine.calls) == 12 and not any(resumed for _, resumed in engine.calls)
    table = tabulate(sweep, statuses)
    assert [r.labels["tasks"] for r in table.rows] == ["aqa", "aqa+cls", "aqa+caps", "aqa+cls+caps"]
    row = table.rows[3]
    assert row.n == 3 and row.mean("score.spearman") == pytest.approx(0.81)
    assert row.std("score.spearman") == pytest.approx(0.01)
    assert math.isnan(table.rows[0].mean("cls.accuracy"))  # no cls head, no value
    md = table.to_markdown()
    assert "| tasks | n | score.spearman | cls.accuracy |" in md
    assert "| aqa+cls+caps | 3/3 | 0.8100 ± 0.0100 | 0.9000 ± 0.0000 |" in md
    assert "| aqa | 3/3 | 0.6100 ± 0.0100 | - |" in md
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert float(rows[1]["score.spearman_mean"]) == pytest.approx(0.71)
    assert rows[0]["cls.accuracy_mean"] == ""
    written = table.write(folder)
    assert all(p.is_file() for p in written)
    assert len((folder / "runs.csv").read_text().splitlines()) == 13
    plan = json.loads((folder / "plan.json").read_text())
    assert set(plan["runs"]["tasks-aqa__seed-0"]["spec"]["model"]["heads"]) == {"score"}


def test_interrupted_sweep_skips_finished_runs_and_resumes_the_broken_one(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    folder = tmp_path / "out"
    engine = FakeEngine(fail_on="tasks-aqa+cls__seed-1")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, folder, train=engine, read_metrics=read_final, resolve_fn=resolve_raw)
    assert len(engine.calls) == 5
    done = [s.state for s in (SweepFolder(folder).status(r) for r in expand(sweep))]
    assert done == ["done"] * 4 + ["partial"] + ["pending"] * 7
    engine.calls.clear()
    statuses = run_sweep(
        sweep, folder, train=engine, read_metrics=read_final, resolve_fn=resolve_raw
    )
    assert engine.calls[0] == ("tasks-aqa+cls__seed-1", True)  # resumed from its checkpoint
    assert len(engine.calls) == 8 and not any(r for _, r in engine.calls[1:])
    assert all(s.state == "done" for s in statuses)


def test_partial_run_without_checkpoint_starts_afresh(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, TABLE4.replace("[0, 1, 2]", "[0]")))
    folder = tmp_path / "out"
    stale = folder / "runs" / "tasks-aqa__seed-0"
    stale.mkdir(parents=True)
    (stale / "spec.yaml").write_text("half written")
    (stale / "notes.txt").write_text("mine")
    engine = FakeEngine()
    run_sweep(sweep, folder, train=engine, read_metrics=read_final, resolve_fn=resolve_raw)
    # Started (not resumed) in its own folder; clearing what the stopped run wrote is the
    # runner's job, under the folder's lock (tests/test_run_safety.py): the sweep deletes nothing.
    assert engine.calls[0] == ("tasks-aqa__seed-0", False)
    assert (stale / "notes.txt").read_text() == "mine"


def test_run_finished_but_not_recorded_is_not_trained_again(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, TABLE4.replace("[0, 1, 2]", "[0]")))
    folder = tmp_path / "out"
    kw = {"train": FakeEngine(), "read_metrics": read_final, "resolve_fn": resolve_raw}
    run_sweep(sweep, folder, **kw)
    (folder / "results" / "tasks-aqa__seed-0.json").unlink()  # stopped right after training
    engine = FakeEngine()
    statuses = run_sweep(sweep, folder, **{**kw, "train": engine})
    assert engine.calls == [] and statuses[0].metrics == {"score.spearman": 0.6}


def test_resuming_an_edited_sweep_is_refused(tmp_path):
    path = write_sweep(tmp_path, TABLE4.replace("[0, 1, 2]", "[0]"))
    folder = tmp_path / "out"
    run_sweep(
        load_sweep(path), folder, train=FakeEngine(), read_metrics=read_final,
        resolve_fn=resolve_raw,
    )
    path.write_text(TABLE4.replace("[0, 1, 2]", "[0]").replace("epochs=1", "epochs=2"))
    with pytest.raises(SpecError, match="made from a different spec"):
        run_sweep(
            load_sweep(path), folder, train=FakeEngine(), read_metrics=read_final,
            resolve_fn=resolve_raw,
        )


# --------------------------------------------------------------------------- end to end

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
TINY = [  # shrink the quickstart-based sweep to seconds: few small dives, tiny heads
    "data.params.dives=24", "data.params.dives_per_event=12", "data.params.crop=32",
    "data.params.max_caption_length=8", "data.params.cache_dir=null", "data.batch_size=4",
    "data.val_fraction=0", "data.train_size=null", "train.epochs=1",
    "train.max_steps_per_epoch=2", "model.aggregator.params.shared_fc=16",
    "model.heads.caption.params.hidden=16", "model.heads.caption.params.word_dim=8",
    "model.heads.caption.params.metrics=[bleu]",
]


def run_cli(capsys, *args):
    from aqa_framework.cli.main import main

    with pytest.raises(SystemExit) as info:
        main([*args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_table4_sweep_on_synthetic_dives_from_one_command(tmp_path, capsys):
    path = EXAMPLES / "table4-synthetic-small.yaml"
    sets = [x for o in [*TINY, f"data.params.root={tmp_path / 'dives'}"] for x in ("--set", o)]
    out_dir = tmp_path / "sweep"
    code, out, err = run_cli(capsys, "sweep", str(path), "--output", str(out_dir), *sets)
    assert code in (0, None), err
    rows = list(csv.DictReader((out_dir / "results.csv").open()))
    assert [r["tasks"] for r in rows] == ["aqa", "aqa+cls", "aqa+caps", "aqa+cls+caps"]
    assert all(-1 <= float(r["score.spearman_mean"]) <= 1 and r["n"] == "1" for r in rows)
    assert [bool(r["cls.accuracy_mean"]) for r in rows] == [False, True, False, True]
    # read from each run's results.json: no validation split, so the last epoch on test
    assert all(r["evaluated_on"] == "test, last epoch" for r in rows)
    for task in ("aqa+cls+caps", "aqa+caps"):
        assert task in out
    assert "score.spearman" in out and "Sweep folder" in out
    for run in ("tasks-aqa__seed-0", "tasks-aqa+cls+caps__seed-0"):
        assert (out_dir / "runs" / run / "results.json").is_file()
    # the spec of each run: STL has the score head only
    plan = json.loads((out_dir / "plan.json").read_text())
    assert list(plan["runs"]["tasks-aqa__seed-0"]["spec"]["model"]["heads"]) == ["score"]
    # a second call finds everything done and trains nothing
    table = (out_dir / "results.csv").read_text()
    code, _, err2 = run_cli(capsys, "sweep", str(path), "--output", str(out_dir), *sets)
    assert code in (0, None) and err2.count("finished before") == 4
    assert "starting" not in err2 and (out_dir / "results.csv").read_text() == table
