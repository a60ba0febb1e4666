"""One tiny training run of the example spec through the engine's Python API."""

import csv
import json
from pathlib import Path

from aqa_framework.engine.runner import run_training
from aqa_framework.resolve import resolve
from aqa_framework.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "vault.yaml"
TINY = [
    "train.epochs=1",
    "train.device=cpu",
    "model.backbone.params.width=0.0625",
    "data.params.train_samples=8",
    "data.params.test_samples=4",
    "data.batch_size=4",
]


def test_example_spec_trains_for_one_epoch(tmp_path):
    resolved = resolve(load_spec(SPEC, TINY), source=str(SPEC))
    folder = run_training(resolved, run_dir=tmp_path / "run")

    results = json.loads((folder / "results.json").read_text())
    assert "vault.spearman" in json.dumps(results)
    with open(folder / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    header = set(rows[0])
    assert any("final_score" in col for col in header)
