"""A training callback: the podium of the run's final predictions, written next to its report.

At the end of each run it writes ``gymnastics/podium.json``: the three samples with the
highest predicted score of the first score task, with their reference scores.
"""

from __future__ import annotations

import json

from aqa_framework.engine.events import Callback, RunEnd


class PodiumCallback(Callback):
    """Writes gymnastics/podium.json (the three best-predicted samples) when a run ends."""

    name = "gymnastics.podium"

    def on_run_end(self, event: RunEnd) -> None:
        """Rank the final predictions and write the podium."""
        result = event.results.result if event.results is not None else None
        if result is None:
            return
        podium = []
        for task, columns in result.predictions.items():
            refs = result.references.get(task, {})
            column = next((c for c in columns if c in refs and _numeric(columns[c])), None)
            if column is None:
                continue
            ranked = sorted(
                zip(result.keys, columns[column], refs[column], strict=True),
                key=lambda row: -float(row[1]),
            )
            podium = [
                {"key": k, "task": task, "predicted": float(p), "reference": float(r)}
                for k, p, r in ranked[:3]
            ]
            break
        out = event.run.folder / "gymnastics" / "podium.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(podium, indent=2), encoding="utf-8")
        if podium:
            event.run.log(
                f"gymnastics: best predicted {podium[0]['key']} ({podium[0]['predicted']:.2f})"
            )


def _numeric(values: list) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) for v in values)
