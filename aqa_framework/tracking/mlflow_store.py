"""The ``mlflow`` tracker: an MLflow run in a local file store (no server, no account)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.engine.events import Close, EpochEnd, Evaluate, RunEnd, RunStart
from aqa_framework.tracking import Tracker, epoch_scalars, flatten

MLFLOW_DIR = "mlruns"
RUN_ID_FILE = "mlflow.json"
_MAX_PARAM = 500
_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "pruned": "KILLED", "failed": "FAILED"}
"""The run's closing status -> MLflow's (a pruned run also gets the tag ``aqa.status: pruned``)."""


class MLflowTracker(Tracker):
    """An MLflow run: the resolved spec as params, metrics per epoch, the report as artifacts."""

    name = "mlflow"
    requires = ("mlflow",)
    extra = "mlflow"

    class Params(BaseModel):
        """Parameters of the mlflow tracker."""

        model_config = ConfigDict(extra="forbid")
        uri: str | None = Field(
            None,
            description="Tracking URI (e.g. sqlite:///mlflow.db); default: a file store in the "
            "run folder (RUN/mlruns).",
        )
        experiment: str = Field("aqa", description="MLflow experiment name.")

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.client: Any = None
        self.run_id: str | None = None

    def tracking_uri(self, folder: Path) -> str:
        """The store's URI: ``params.uri`` or ``file://RUN/mlruns``."""
        return self.params.uri or (folder.resolve() / MLFLOW_DIR).as_uri()

    def on_run_start(self, event: RunStart) -> None:
        """Start the MLflow run (a resumed run continues its own) and log the spec as params."""
        from mlflow.tracking import MlflowClient

        folder = event.run.folder
        uri = self.tracking_uri(folder)
        if uri.startswith("file:"):
            # recent MLflow versions refuse file stores unless asked: this one is asked for
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        stored = folder / RUN_ID_FILE
        if event.start_epoch and stored.is_file():
            self.run_id = json.loads(stored.read_text(encoding="utf-8"))["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(self.params.experiment)
        exp_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(self.params.experiment)
        )
        run = self.client.create_run(exp_id, run_name=event.run.name)
        self.run_id = run.info.run_id
        from aqa_framework.files import write_json_atomic

        write_json_atomic(
            stored, {"run_id": self.run_id, "tracking_uri": self.tracking_uri(folder)}
        )
        self._log_params(flatten(event.run.spec))

    def _log_params(self, flat: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, _param_text(v)) for k, v in flat.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_key(k), _number(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def on_epoch_end(self, event: EpochEnd) -> None:
        """Log the epoch's losses, learning rate and metrics at step = epoch."""
        self._log_metrics(epoch_scalars(event.record), event.epoch)

    def on_evaluate(self, event: Evaluate) -> None:
        """Log the final metrics under ``final/``."""
        if event.final:
            self._log_metrics({f"final/{k}": v for k, v in event.metrics.items()}, event.epoch)

    def on_run_end(self, event: RunEnd) -> None:
        """Log the report, its HTML page, the scatter plot and the results as artifacts."""
        folder = event.run.folder
        for name in ("report.md", "report.html", "results.json", "spec.yaml"):
            if (folder / name).is_file():
                self.client.log_artifact(self.run_id, str(folder / name))
        if (folder / "report").is_dir():
            self.client.log_artifacts(self.run_id, str(folder / "report"), "report")

    def on_close(self, event: Close) -> None:
        """End the MLflow run: FINISHED, KILLED (interrupted, pruned) or FAILED."""
        if self.client is not None and self.run_id is not None:
            if event.status == "pruned":
                self.client.set_tag(self.run_id, "aqa.status", "pruned")
            self.client.set_terminated(self.run_id, status=_STATUS.get(event.status, "FAILED"))
            self.client = None


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def _key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def _number(value: Any) -> float:
    v = float("nan") if value is None else float(value)
    return v if math.isfinite(v) or math.isnan(v) else float("nan")
