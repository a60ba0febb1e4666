"""The plugin's training callback and its ``aqa gymnastics`` command."""

import json
from pathlib import Path

import pytest

from aqa_framework.cli.main import main

SPEC = Path(__file__).resolve().parents[1] / "vault.yaml"
TINY = [
    "callbacks=[gymnastics.podium]",
    "train.epochs=1",
    "model.backbone.params.width=0.0625",
    "data.params.train_samples=8",
    "data.params.test_samples=4",
    "data.batch_size=4",
]


def test_podium_callback_runs_and_the_command_reads_the_run(run_spec, capsys):
    run = run_spec(SPEC, *TINY)

    # the callback ran at the end of the run
    podium = json.loads((run.folder / "gymnastics" / "podium.json").read_text())
    assert len(podium) == 3
    assert [p["predicted"] for p in podium] == sorted(
        (p["predicted"] for p in podium), reverse=True
    )
    assert {p["key"] for p in podium} <= {row["key"] for row in run.predictions}

    # the command is listed with its plugin, and runs
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "gymnastics" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["gymnastics", "podium", str(run.folder), "--top", "2"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.splitlines()[0].startswith(f"1. {podium[0]['key']} ")
    assert len(out.splitlines()) == 2
