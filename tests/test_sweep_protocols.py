"""Sweep protocols: folds as the replicate axis, summaries across tasks/actions (Fisher z),
NaN reporting, validation of the sweep file and where each metric comes from."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from aqa_framework import jsonio
from aqa_framework.errors import SpecError
from aqa_framework.experiments.sweep import (
    combine_rows,
    expand,
    load_sweep,
    run_sweep,
    sweep_status,
    tabulate,
)

BASE = {
    "model": {"backbone": {"name": "c3d"}, "heads": {"score": {"name": "score"}}},
    "data": {"name": "synthetic-diving", "params": {}},
    "train": {"epochs": 3},
}

JIGSAWS = """
name: jigsaws-like
base: base.yaml
axes:
  task: [Suturing, Knot_Tying, Needle_Passing]
  fold: [0, 1, 2, 3]
paths: {task: data.params.task, fold: data.params.fold}
replicate: fold
summary: {across: task}
metrics: [score.spearman, score.rel_l2]
"""

# Per task the four fold values; their means are 0.71, 0.69 and 0.71.
SPEARMAN = {
    "Suturing": [0.70, 0.72, 0.69, 0.73],
    "Knot_Tying": [0.66, 0.70, 0.71, 0.69],
    "Needle_Passing": [0.71, 0.71, 0.70, 0.72],
}
REL_L2 = {"Suturing": 4.0, "Knot_Tying": 6.0, "Needle_Passing": 11.0}


def write_sweep(tmp_path: Path, text: str = JIGSAWS) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class ResultsEngine:
    """Writes a run folder's results.json as the engine does, with given metrics."""

    def __init__(self, metrics, selected_on=None):
        self.metrics = metrics  # raw spec -> {task.metric: value}
        self.selected_on = selected_on
        self.calls: list[str] = []

    def __call__(self, raw, run_dir, resume=None):
        run_dir = Path(run_dir)
        self.calls.append(run_dir.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "split": "test",
            "samples": 10,
            "metrics": self.metrics(raw),
            "epoch": 3,
            "selection": {"split": self.selected_on, "metric": "score.spearman", "mode": "max"},
        }
        (run_dir / "results.json").write_text(jsonio.dumps(doc))
        return run_dir


def jigsaws_metrics(raw):
    p = raw["data"]["params"]
    return {
        "score.spearman": SPEARMAN[p["task"]][p["fold"]],
        "score.rel_l2": REL_L2[p["task"]],
    }


def run(sweep, folder, engine):
    return run_sweep(sweep, folder, train=engine, resolve_fn=lambda r, s: r.raw)


def by_label(rows, axis):
    return {r[axis]: r for r in rows}


# --------------------------------------------------------------------------- the protocol


def test_list_axes_with_paths_keep_short_run_ids(tmp_path):
    runs = expand(load_sweep(write_sweep(tmp_path)))
    assert len(runs) == 12
    assert runs[0].id == "task-Suturing__fold-0" and runs[-1].id == "task-Needle_Passing__fold-3"
    assert runs[5].raw["data"]["params"] == {"task": "Knot_Tying", "fold": 1}
    assert "task" not in runs[0].raw and "fold" not in runs[0].raw


def test_fold_means_and_fisher_z_summary_across_tasks(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    statuses = run(sweep, tmp_path / "out", ResultsEngine(jigsaws_metrics))
    table = tabulate(sweep, statuses)
    assert table.axes == ["task"]
    rows = {r.labels["task"]: r for r in table.rows}
    assert rows["Suturing"].values["score.spearman"] == SPEARMAN["Suturing"]  # per fold
    assert rows["Suturing"].mean("score.spearman") == pytest.approx(0.71)
    assert rows["Knot_Tying"].mean("score.spearman") == pytest.approx(0.69)
    assert rows["Knot_Tying"].std("score.spearman") == pytest.approx(
        math.sqrt(sum((v - 0.69) ** 2 for v in SPEARMAN["Knot_Tying"]) / 3)
    )
    (summary,) = table.summary_rows
    by_hand = math.tanh((math.atanh(0.71) + math.atanh(0.69) + math.atanh(0.71)) / 3)
    assert by_hand == pytest.approx(0.703455, abs=1e-6)
    assert summary.values["score.spearman"] == pytest.approx(by_hand, abs=1e-12)
    assert summary.values["score.spearman"] != pytest.approx((0.71 + 0.69 + 0.71) / 3, abs=1e-6)
    assert summary.values["score.rel_l2"] == pytest.approx(7.0)  # arithmetic mean
    assert summary.methods == {"score.spearman": "fisher_z", "score.rel_l2": "mean"}
    assert (summary.n, summary.expected) == (12, 12)
    assert table.notes() == []


def test_csv_markdown_and_runs_csv_carry_rows_summary_and_source(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    folder = tmp_path / "out"
    table = tabulate(sweep, run(sweep, folder, ResultsEngine(jigsaws_metrics)))
    table.write(folder)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [r["task"] for r in rows] == ["Suturing", "Knot_Tying", "Needle_Passing", "summary"]
    summary = rows[-1]
    assert float(summary["score.spearman_mean"]) == pytest.approx(0.703455, abs=1e-6)
    assert summary["score.spearman_std"] == "" and summary["n"] == "12"
    assert summary["score.spearman_method"] == "fisher_z"
    assert summary["score.rel_l2_method"] == "mean" and rows[0]["score.rel_l2_method"] == ""
    assert float(rows[0]["score.spearman_mean"]) == pytest.approx(0.71)
    assert all(r["evaluated_on"] == "test, last epoch" for r in rows)
    md = (folder / "results.md").read_text()
    assert "| task | n | score.spearman | score.rel_l2 | evaluated on |" in md
    assert "| summary | 12/12 | 0.7035 (Fisher z) | 7.0000 (mean) | test, last epoch |" in md
    assert "| Suturing | 4/4 | 0.7100 ± 0.0183 | 4.0000 ± 0.0000 | test, last epoch |" in md
    assert "over the 4 values of `fold`" in md and "Fisher z: tanh of the mean of artanh" in md
    per_run = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(per_run) == 12
    fold2 = [r for r in per_run if r["task"] == "Suturing" and r["fold"] == "2"][0]
    assert fold2["run"] == "task-Suturing__fold-2" and float(fold2["score.spearman"]) == 0.69
    assert fold2["evaluated_on"] == "test, last epoch" and fold2["epoch"] == "3"


def test_perfect_correlations_stay_finite():
    from aqa_framework.experiments.sweep import ResultRow

    def row(value):
        return ResultRow({"task": "x"}, {"m.spearman": [value]}, 1)

    assert combine_rows([row(1.0), row(1.0)], "m.spearman", "fisher_z") == pytest.approx(0.9999)
    assert combine_rows([row(1.0), row(-1.0)], "m.spearman", "fisher_z") == pytest.approx(0.0)
    assert combine_rows([row(1.0), row(0.5)], "m.spearman", "mean") == pytest.approx(0.75)
    assert combine_rows([row(1.0), ResultRow({}, {}, 1)], "m.spearman", "fisher_z") is None


def test_a_nan_fold_makes_row_and_summary_nan_and_is_reported(tmp_path):
    def metrics(raw):
        out = jigsaws_metrics(raw)
        if raw["data"]["params"] == {"task": "Knot_Tying", "fold": 2}:
            out["score.spearman"] = math.nan  # constant predictions
        return out

    sweep = load_sweep(write_sweep(tmp_path))
    folder = tmp_path / "out"
    run(sweep, folder, ResultsEngine(metrics))
    table = tabulate(sweep, sweep_status(sweep, folder))  # read back from results/*.json
    rows = {r.labels["task"]: r for r in table.rows}
    assert math.isnan(rows["Knot_Tying"].mean("score.spearman"))
    assert rows["Knot_Tying"].nan_runs("score.spearman") == ["task-Knot_Tying__fold-2"]
    assert rows["Suturing"].mean("score.spearman") == pytest.approx(0.71)
    (summary,) = table.summary_rows
    assert math.isnan(summary.values["score.spearman"])
    assert summary.values["score.rel_l2"] == pytest.approx(7.0)  # other metrics unaffected
    (note,) = table.notes()
    assert "score.spearman is NaN in task=Knot_Tying" in note
    assert "task-Knot_Tying__fold-2" in note and "the summary are NaN" in note
    csv_rows = by_label(csv.DictReader(io.StringIO(table.to_csv())), "task")
    assert csv_rows["Knot_Tying"]["score.spearman_mean"] == "nan"
    assert csv_rows["summary"]["score.spearman_mean"] == "nan"
    md = table.to_markdown()
    assert "| Knot_Tying | 4/4 | nan |" in md and "nan (Fisher z)" in md
    assert "**Warnings**" in md and "task-Knot_Tying__fold-2" in md
    per_run = by_label(csv.DictReader(io.StringIO(table.runs_csv())), "run")
    assert per_run["task-Knot_Tying__fold-2"]["score.spearman"] == "nan"


def test_unfinished_rows_leave_the_summary_empty_or_flag_it(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    folder = tmp_path / "out"
    run(sweep, folder, ResultsEngine(jigsaws_metrics))
    for fold in range(4):  # Needle_Passing never finished
        (folder / "results" / f"task-Needle_Passing__fold-{fold}.json").unlink()
    (folder / "results" / "task-Suturing__fold-3.json").unlink()
    table = tabulate(sweep, sweep_status(sweep, folder))
    (summary,) = table.summary_rows
    assert summary.values == {} and summary.cell("score.spearman") == "-"
    assert (summary.n, summary.expected) == (7, 12)
    (note,) = table.notes()
    assert "task=Suturing 3/4" in note and "task=Needle_Passing 0/4" in note
    csv_summary = list(csv.DictReader(io.StringIO(table.to_csv())))[-1]
    assert csv_summary["score.spearman_mean"] == "" and csv_summary["task"] == "summary"


def test_finished_sweep_is_not_run_again_and_gives_the_same_table(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    folder = tmp_path / "out"
    first = tabulate(sweep, run(sweep, folder, ResultsEngine(jigsaws_metrics)))
    engine = ResultsEngine(jigsaws_metrics)
    again = tabulate(sweep, run(sweep, folder, engine))
    assert engine.calls == []
    assert again.to_csv() == first.to_csv() and again.to_markdown() == first.to_markdown()
    stored = json.loads((folder / "results" / "task-Suturing__fold-0.json").read_text())
    assert stored["source"] == {"split": "test", "selected_on": None, "epoch": 3}


def test_epoch_chosen_on_test_is_labelled_optimistic(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    table = tabulate(sweep, run(sweep, tmp_path / "out", ResultsEngine(jigsaws_metrics, "test")))
    assert table.rows[0].evaluated_on == "test, epoch chosen on test (optimistic)"
    (note,) = table.notes()
    assert note.startswith("12 run(s) chose their epoch on the split they report")
    assert "optimistic" in table.summary_rows[0].evaluated_on
    val = tabulate(sweep, run(sweep, tmp_path / "val", ResultsEngine(jigsaws_metrics, "val")))
    assert val.rows[0].evaluated_on == "test, epoch chosen on val" and val.notes() == []


def test_summary_per_combination_of_the_other_axes_and_declared_correlations(tmp_path):
    text = """
base: base.yaml
axes:
  model: {small: {train.epochs: 1}, large: {train.epochs: 2}}
  action: [diving, gym_vault]
  seed: [0, 1]
paths: {action: data.params.action}
summary: {across: action, correlation: fisher_z, correlations: [score.tau]}
metrics: [score.tau, score.spearman]
"""
    values = {("diving", 1): 0.8, ("gym_vault", 1): 0.6, ("diving", 2): 0.9, ("gym_vault", 2): 0.5}

    def metrics(raw):
        v = values[raw["data"]["params"]["action"], raw["train"]["epochs"]]
        return {"score.tau": v, "score.spearman": v}

    sweep = load_sweep(write_sweep(tmp_path, text))
    table = tabulate(sweep, run(sweep, tmp_path / "out", ResultsEngine(metrics)))
    assert [r.labels for r in table.rows] == [
        {"model": m, "action": a} for m in ("small", "large") for a in ("diving", "gym_vault")
    ]
    small, large = table.summary_rows
    assert small.labels == {"model": "small", "action": "summary"}
    assert large.labels == {"model": "large", "action": "summary"}
    z = (math.atanh(0.9) + math.atanh(0.5)) / 2
    assert large.values["score.tau"] == pytest.approx(math.tanh(z))  # declared: Fisher z
    assert large.values["score.spearman"] == pytest.approx(0.7)  # not declared: mean
    assert large.cell("score.spearman") == "0.7000 (mean)"


# --------------------------------------------------------------------------- validation


def problems(tmp_path, text):
    with pytest.raises(SpecError) as info:
        load_sweep(write_sweep(tmp_path, text))
    return dict(info.value.problems)


def test_summary_across_an_axis_that_does_not_exist(tmp_path):
    found = problems(tmp_path, JIGSAWS.replace("across: task", "across: tasks"))
    assert list(found) == ["summary"]
    assert "summary.across: 'tasks' is not an axis of this sweep (axes: task, fold)" in (
        found["summary"]
    )


def test_summary_across_the_replicate_axis(tmp_path):
    found = problems(tmp_path, JIGSAWS.replace("across: task", "across: fold"))
    assert "'fold' is the replicate axis" in found["summary"]
    text = "base: base.yaml\naxes: {task: [a, b], seed: [0, 1]}\nsummary: {across: seed}\n"
    assert "'seed' is the replicate axis" in problems(tmp_path, text)["summary"]


def test_other_sweep_file_errors_name_their_path(tmp_path):
    found = problems(tmp_path, JIGSAWS.replace("replicate: fold", "replicate: folds"))
    assert "'folds' is not an axis of this sweep (axes: task, fold)" in found["replicate"]
    found = problems(tmp_path, JIGSAWS.replace("fold: data.params.fold", "fld: data.params.x"))
    assert "'fld' is not an axis" in found["paths"]
    text = JIGSAWS.replace("task: [Suturing, Knot_Tying, Needle_Passing]", "task: {a: {}}")
    assert "paths only applies to an axis given as a list" in problems(tmp_path, text)["paths"]
    found = problems(tmp_path, JIGSAWS.replace("{across: task}", "{across: task, how: z}"))
    assert found == {"summary.how": "unknown key"}
    found = problems(tmp_path, JIGSAWS.replace("{across: task}", "{across: task, correlation: x}"))
    assert list(found) == ["summary.correlation"]
    text = JIGSAWS.replace("{across: task}", "{across: task, correlations: [score.tau]}")
    assert "score.tau not among the metrics" in problems(tmp_path, text)["summary"]


def test_explicit_replicate_seed_without_a_seed_axis_is_an_error_but_the_default_is_not(
    tmp_path,
):
    text = "base: base.yaml\naxes: {task: [a, b]}\n"
    table = tabulate(load_sweep(write_sweep(tmp_path, text)), [])
    assert table.replicate is None and table.legend()[0] == "Each row is one run."
    assert "replicate" in problems(tmp_path, text + "replicate: seed\n")


# --------------------------------------------------------------------------- command line


def test_cli_collect_prints_the_summary_and_warns_about_nan(tmp_path, capsys):
    from aqa_framework.cli.main import main

    def metrics(raw):
        out = jigsaws_metrics(raw)
        if raw["data"]["params"] == {"task": "Suturing", "fold": 0}:
            out["score.spearman"] = math.nan
        return out

    path = write_sweep(tmp_path)
    folder = tmp_path / "out"
    run(load_sweep(path), folder, ResultsEngine(metrics))
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(path), "--output", str(folder), "--collect"])
    out, err = capsys.readouterr()
    assert info.value.code in (0, None), err
    assert "summary" in out and "7.0000 (mean)" in out and "nan (Fisher z)" in out
    assert "evaluated on: test, last epoch" in out and "rows: mean ± std over 4 x fold" in out
    assert "warning" in err and "task-Suturing__fold-0" in err
    rows = by_label(csv.DictReader((folder / "results.csv").open()), "task")
    assert rows["summary"]["score.spearman_mean"] == "nan"
