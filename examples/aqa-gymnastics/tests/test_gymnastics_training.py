"""One tiny training run of the example spec, with the test-kit's run_spec fixture."""

from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "vault.yaml"
TINY = [
    "train.epochs=1",
    "model.backbone.params.width=0.0625",
    "data.params.train_samples=8",
    "data.params.test_samples=4",
    "data.batch_size=4",
]


def test_example_spec_trains_for_one_epoch(run_spec):
    run = run_spec(SPEC, *TINY)  # trains on the CPU in a folder under tmp_path

    assert {"vault.spearman", "vault.d_spearman", "vault.e_spearman"} <= set(run.metrics)
    assert [record["epoch"] for record in run.history] == [1]
    assert len(run.predictions) == 4
    assert any("final_score" in column for column in run.predictions[0])
