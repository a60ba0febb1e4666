"""Train a spec end to end from a test, through the same public API as ``aqa run``.

:func:`train_spec` reads a spec (a file, a mapping or YAML text), applies ``--set`` style
overrides, resolves it against the registry and trains it into a run folder; the returned
:class:`TrainedRun` holds what the run wrote. The pytest fixture ``run_spec``
(:mod:`aqa_framework.testing.plugin`) calls it with a fresh folder under ``tmp_path``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aqa_framework.registry import Registry
    from aqa_framework.resolve import ResolvedSpec

__all__ = ["TrainedRun", "train_spec"]

SpecInput = str | Path | Mapping[str, Any]
"""A spec file, YAML text (a string with a line break) or a raw spec mapping."""


@dataclass(frozen=True)
class TrainedRun:
    """What a finished training run wrote, read back from its run folder."""

    folder: Path
    """The run folder."""
    results: dict[str, Any]
    """``results.json``: the split evaluated, its ``metrics``, the selected epoch and more."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """The records of ``metrics.jsonl``, one per epoch (train losses, evaluation metrics)."""

    @property
    def metrics(self) -> dict[str, float | None]:
        """The final metrics, ``<task>.<metric>`` -> value (``None`` where not a number)."""
        return dict(self.results.get("metrics", {}))

    @property
    def predictions(self) -> list[dict[str, str]]:
        """The rows of ``predictions.csv`` (one per sample, values as text)."""
        import csv

        from aqa_framework.engine.run_folder import PREDICTIONS_FILE

        with open(self.folder / PREDICTIONS_FILE, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))


def _load_resolved(
    source: str | Path | Mapping[str, Any],
    overrides: list[str],
    registry: Registry | None,
    label: str | None,
) -> ResolvedSpec:
    """Spec file or mapping + overrides -> resolved spec, the way ``aqa run`` reads it."""
    from aqa_framework import resolve as resolving

    load = getattr(resolving, "load", None)
    if load is not None:
        return load(source, overrides, registry=registry, label=label)
    import copy

    from aqa_framework.spec import apply_overrides, load_raw, parse_spec

    raw = copy.deepcopy(dict(source)) if isinstance(source, Mapping) else load_raw(source)
    raw = apply_overrides(raw, overrides)
    where = label or (None if isinstance(source, Mapping) else str(source))
    return resolving.resolve(parse_spec(raw, source=where), registry=registry, source=where)


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def train_spec(
    spec: SpecInput,
    *overrides: str,
    run_dir: str | Path,
    registry: Registry | None = None,
    device: str | None = "cpu",
) -> TrainedRun:
    """Train and evaluate a spec end to end, as ``aqa run SPEC --set ...`` would.

    Args:
        spec: A spec file (``str`` or ``Path``), the YAML text of a spec (a ``str`` with a
            line break) or a raw spec mapping (not changed).
        *overrides: ``a.b.c=value`` (or ``~a.b.c``) strings, as ``aqa run --set`` takes them,
            applied in order.
        run_dir: The run folder to create (new or empty).
        registry: Registry to look component names up in, e.g. one from
            :func:`~aqa_framework.testing.registry_with` for components not installed;
            defaults to the installed plugins.
        device: ``train.device`` to use (applied before ``overrides``); ``None`` keeps the
            spec's.

    Returns:
        The finished run.

    Raises:
        SpecError: If the spec or an override is invalid.
    """
    from aqa_framework.engine.run_folder import METRICS_FILE, RESULTS_FILE
    from aqa_framework.engine.runner import run_training

    label = None
    if isinstance(spec, str) and "\n" in spec:
        from aqa_framework.yamlio import load_yaml

        spec, label = load_yaml(spec), "<spec text>"
        if not isinstance(spec, Mapping):
            raise ValueError("the spec text must be a YAML mapping")
    forced = [f"train.device={device}"] if device is not None else []
    resolved = _load_resolved(spec, [*forced, *overrides], registry, label)
    folder = Path(run_training(resolved, run_dir=run_dir))
    results = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8"))
    return TrainedRun(folder, results, _read_history(folder / METRICS_FILE))
