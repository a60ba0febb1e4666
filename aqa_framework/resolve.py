"""Pass two of spec validation, and :func:`load`, the one way from a spec to a resolved spec.

:func:`load` takes a spec file, a raw mapping or a run folder, applies ``--set`` overrides,
validates the envelope (pass one, :func:`aqa_framework.spec.parse_spec`) and then
:func:`resolve` (pass two) looks each component up in the registry, validates its ``params``
against the component's own ``Params`` and makes the cross-field checks that need neither data
nor torch (:func:`cross_field_problems`). ``aqa run``, ``aqa validate``, ``aqa evaluate``,
``aqa probe`` and ``aqa sweep`` all come in through :func:`load`, so they accept and refuse the
same specs with the same messages.

:func:`resolved_spec_dict` is the spec as a run folder stores it: every component's params
with their defaults filled in, so that resuming notices a changed default.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from aqa_framework.errors import SpecError, UnknownComponentError
from aqa_framework.registry import Registry, get_registry
from aqa_framework.spec import ComponentSpec, Spec, errors_from_validation, nonfinite_values

__all__ = [
    "ResolvedComponent",
    "ResolvedSpec",
    "check_eval_split",
    "comparable_stored_spec",
    "cross_field_problems",
    "dump_resolved_spec",
    "load",
    "resolve",
    "resolved_spec_dict",
    "run_base_dir",
]


@dataclass
class ResolvedComponent:
    """A spec component bound to its class and validated params.

    Attributes:
        kind: Component kind.
        name: Registry name.
        cls: The component class.
        params: Validated parameters (an instance of ``cls.Params``).
        path: Dotted path of the component in the spec (``model.heads.score``).
        loss_weight: For heads, the weight of the task loss.
    """

    kind: str
    name: str
    cls: type
    params: BaseModel
    path: str
    loss_weight: float = 1.0


@dataclass
class ResolvedSpec:
    """A spec whose components are all known and valid."""

    spec: Spec
    backbone: ResolvedComponent
    aggregator: ResolvedComponent
    heads: dict[str, ResolvedComponent]
    dataset: ResolvedComponent
    source: str | None = field(default=None)

    def components(self) -> list[ResolvedComponent]:
        """Backbone, aggregator, the heads in task order, then the dataset."""
        return [self.backbone, self.aggregator, *self.heads.values(), self.dataset]


def _resolve_one(
    registry: Registry,
    kind: str,
    comp: ComponentSpec,
    path: str,
    problems: list[tuple[str, str]],
) -> ResolvedComponent | None:
    try:
        cls = registry.get(kind, comp.name)
    except UnknownComponentError as exc:
        problems.append((f"{path}.name", str(exc)))
        return None
    try:
        params = cls.parse_params(comp.params)
    except ValidationError as exc:
        problems.extend(errors_from_validation(exc, prefix=f"{path}.params"))
        return None
    nonfinite = nonfinite_values(params.model_dump(), prefix=f"{path}.params")
    if nonfinite:  # e.g. the string "inf", which a float parameter accepts
        problems.extend(nonfinite)
        return None
    weight = getattr(comp, "loss_weight", 1.0)
    return ResolvedComponent(kind, comp.name, cls, params, path, weight)


def resolve(
    spec: Spec, registry: Registry | None = None, source: str | None = None
) -> ResolvedSpec:
    """Bind every component of a spec to its class and validate its params.

    Args:
        spec: A spec that passed envelope validation.
        registry: Registry to look names up in; defaults to the process-wide one.
        source: The spec file, for messages.

    Then the cross-field checks that need neither data nor torch
    (:func:`cross_field_problems`): the epoch selection and ``eval.split``.

    Raises:
        SpecError: Listing every unknown name, invalid parameter and cross-field mistake
            with its path.
    """
    registry = registry or get_registry()
    problems: list[tuple[str, str]] = []
    backbone = _resolve_one(registry, "backbone", spec.model.backbone, "model.backbone", problems)
    aggregator = _resolve_one(
        registry, "aggregator", spec.model.aggregator, "model.aggregator", problems
    )
    heads = {
        task: _resolve_one(registry, "head", head, f"model.heads.{task}", problems)
        for task, head in spec.model.heads.items()
    }
    dataset = _resolve_one(registry, "dataset", spec.data, "data", problems)
    if problems:
        raise SpecError(problems, source=source)
    resolved = ResolvedSpec(spec, backbone, aggregator, heads, dataset, source)  # type: ignore[arg-type]
    problems = cross_field_problems(resolved)
    if problems:
        raise SpecError(problems, source=source)
    return resolved


# ---------------------------------------------------------------------------------------------
# cross-field checks (torch-free, no data)


def check_eval_split(resolved: ResolvedSpec, split: str | None = None) -> None:
    """Check that the dataset class declares ``eval.split`` among its splits.

    Args:
        resolved: A resolved spec.
        split: The split to check (default: the spec's ``eval.split``).

    Raises:
        SpecError: At ``eval.split``, listing the dataset's splits.
    """
    problem = _eval_split_problem(resolved, split)
    if problem:
        raise SpecError([problem])


def _eval_split_problem(resolved: ResolvedSpec, split: str | None = None) -> tuple[str, str] | None:
    cls = resolved.dataset.cls
    split = split or resolved.spec.eval.split
    splits = getattr(cls, "splits", ("train", "test"))
    if split in splits:
        return None
    return (
        "eval.split",
        f"dataset '{resolved.dataset.name}' has no split {split!r} (splits: {', '.join(splits)})",
    )


def _declares_metric(head: type, metric: str) -> bool | None:
    """Whether a head declares ``metric`` in its ``metric_directions``; ``None``: declares none."""
    declared = getattr(head, "metric_directions", None) or {}
    if not declared:
        return None
    return metric in declared or any(metric.endswith("_" + key) for key in declared)


def cross_field_problems(resolved: ResolvedSpec) -> list[tuple[str, str]]:
    """``(path, message)`` for every cross-field mistake found without data or torch.

    The checks of pass two that look at more than one field: the epoch selection
    (``train.select_metric`` names a task of ``model.heads`` and a metric its head declares
    in ``metric_directions``; ``train.select_on: val`` needs ``data.val_fraction > 0``) and
    ``eval.split`` among the dataset class's ``splits``. ``aqa run`` and ``aqa validate`` both
    make them through :func:`load`, so they fail alike; the checks that need the data or the
    model (heads against the dataset's targets, shapes, files) are made by
    :func:`aqa_framework.engine.preflight.preflight`.

    Args:
        resolved: A resolved spec.
    """
    from aqa_framework.engine.selection import resolve_selection

    spec = resolved.spec
    problems: list[tuple[str, str]] = []
    heads = {task: head.cls for task, head in resolved.heads.items()}
    if spec.data.partners is None:
        problems += [
            (
                f"model.heads.{task}.name",
                f"head '{cls.name}' compares each sample with exemplars of known score: add "
                "data.partners to the spec (e.g. {group_by: difficulty, train: 1, test: 10})",
            )
            for task, cls in heads.items()
            if getattr(cls, "uses_partners", False)
        ]
    try:
        resolve_selection(spec, has_val=spec.data.val_fraction > 0, heads=heads)
    except SpecError as exc:
        problems += exc.problems
    else:
        task, metric = spec.train.select_metric.split(".", 1)
        head = resolved.heads[task]
        if _declares_metric(head.cls, metric) is False:
            names = ", ".join(f"{task}.{m}" for m in head.cls.metric_directions)
            problems.append(
                (
                    "train.select_metric",
                    f"head '{head.name}' of task {task!r} reports no metric {metric!r} "
                    f"(it declares: {names})",
                )
            )
    split = _eval_split_problem(resolved)
    if split:
        problems.append(split)
    return problems


# ---------------------------------------------------------------------------------------------
# one way in

SpecSource = str | os.PathLike[str] | Mapping[str, Any]
"""What :func:`load` reads: a spec file, a raw spec mapping, or a run or checkpoint folder."""


def run_base_dir(folder: str | Path) -> Path | None:
    """The directory a run was started from, which its relative spec paths are relative to.

    Runs store their paths absolute; a run made by an older version stored them as given, and
    ``environment.json`` of its run folder records the directory (``cwd``).

    Args:
        folder: A run folder, or a checkpoint folder inside one (``checkpoints/<name>``).

    Returns:
        The recorded directory, or ``None`` when the folder does not say.
    """
    import json

    from aqa_framework.engine.checkpoint import CHECKPOINTS_DIR
    from aqa_framework.engine.run_folder import ENVIRONMENT_FILE

    folder = Path(folder)
    if folder.parent.name == CHECKPOINTS_DIR:
        folder = folder.parent.parent
    try:
        cwd = json.loads((folder / ENVIRONMENT_FILE).read_text(encoding="utf-8"))["cwd"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(cwd) if isinstance(cwd, str) and cwd else None


def _read_folder(folder: Path, label: str | None) -> tuple[dict[str, Any], str]:
    """The raw spec of a run folder (``spec.yaml``) or checkpoint folder (``checkpoint.json``)."""
    import json

    from aqa_framework.engine.checkpoint import META_FILE
    from aqa_framework.engine.run_folder import SPEC_FILE
    from aqa_framework.spec import load_raw

    if (folder / SPEC_FILE).is_file():
        where = label or str(folder / SPEC_FILE)
        raw = load_raw(folder / SPEC_FILE)
        return raw, where
    meta_path = folder / META_FILE
    where = label or str(meta_path)
    if not meta_path.is_file():
        raise SpecError(
            [
                (
                    "",
                    f"{folder} is a folder without {SPEC_FILE} or {META_FILE}: give a spec file, "
                    "a run folder or a checkpoint folder",
                )
            ]
        )
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8")).get("spec")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise SpecError([("", f"cannot read the stored spec: {exc}")], source=where) from None
    if not isinstance(raw, dict):
        raise SpecError([("", "the checkpoint stores no spec")], source=where)
    return raw, where


def _absolute_stored(
    raw: dict[str, Any], base: Path, where: str, registry: Registry | None
) -> dict[str, Any]:
    """``raw`` with its relative path params made absolute against ``base``.

    A spec that does not resolve is returned as it is: :func:`load` then reports its problems.
    """
    from aqa_framework.spec import parse_spec
    from aqa_framework.spec_paths import absolute_raw_paths

    try:
        resolved = resolve(parse_spec(raw, source=where), registry=registry, source=where)
    except SpecError:
        return raw
    return absolute_raw_paths(raw, resolved, base=base)


def load(
    source: SpecSource,
    overrides: Iterable[str] = (),
    *,
    base_dir: str | Path | None = None,
    registry: Registry | None = None,
    label: str | None = None,
) -> ResolvedSpec:
    """Read, override and validate a spec in both passes: the one way to a resolved spec.

    ``source`` is one of:

    * a spec file (YAML): its relative paths stay relative to the current directory, unless
      ``base_dir`` is given;
    * a raw spec mapping (a sweep's run, a checkpoint's stored spec); it is not changed;
    * a run folder (its ``spec.yaml``) or a checkpoint folder (the spec in its
      ``checkpoint.json``): paths are stored absolute by ``aqa run``; a run of an older
      version stored them as given, and they are made absolute against the directory its
      ``environment.json`` records (or ``base_dir``).

    Relative path params are made absolute against ``base_dir`` before the overrides are
    applied, so a path given in an override stays relative to the current directory.

    Args:
        source: A spec file, a raw mapping, or a run or checkpoint folder.
        overrides: ``a.b.c=value`` (or ``~a.b.c``) strings, as ``--set`` takes them.
        base_dir: Directory the spec's relative paths are relative to.
        registry: Registry to look names up in; defaults to the process-wide one.
        label: How messages name the spec (default: the file, or none for a mapping).

    Returns:
        The resolved spec; its ``source`` is ``label`` or the file read.

    Raises:
        SpecError: Listing every problem with its YAML path (``model.heads.score.params.x``):
            a file that cannot be read, an invalid override, envelope, component name,
            parameter or cross-field setting.
    """
    from aqa_framework.spec import apply_overrides, load_raw, parse_spec

    base = Path(base_dir) if base_dir is not None else None
    if isinstance(source, Mapping):
        raw, where = copy.deepcopy(dict(source)), label
    else:
        path = Path(source)
        if path.is_dir():
            raw, where = _read_folder(path, label)
            base = base if base is not None else run_base_dir(path)
        else:
            raw, where = load_raw(path), label or str(path)
    if base is not None:
        raw = _absolute_stored(raw, base, where or "spec", registry)
    raw = apply_overrides(raw, overrides)
    return resolve(parse_spec(raw, source=where), registry=registry, source=where)


# ---------------------------------------------------------------------------------------------
# the stored spec


def _params_node(raw: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def resolved_spec_dict(resolved: ResolvedSpec) -> dict[str, Any]:
    """The spec as a run folder stores it: every component's params with defaults filled in.

    The envelope is ``spec.model_dump(mode="json")``; each component's ``params`` are its
    validated ``Params`` dumped the same way, so a default that changes between versions (of
    the framework or of a plugin) shows as a changed value when the run is resumed.

    Args:
        resolved: A resolved spec.

    Returns:
        A JSON-compatible mapping that :func:`load` reads back to the same resolved spec.
    """
    out = resolved.spec.model_dump(mode="json")
    for comp in resolved.components():
        node = _params_node(out, comp.path)
        if node is not None:
            node["params"] = comp.params.model_dump(mode="json")
    return out


def dump_resolved_spec(resolved: ResolvedSpec) -> str:
    """:func:`resolved_spec_dict` as YAML (a run folder's ``spec.yaml``)."""
    import yaml

    return yaml.safe_dump(resolved_spec_dict(resolved), sort_keys=False)


def comparable_stored_spec(stored: Mapping[str, Any], resolved: ResolvedSpec) -> dict[str, Any]:
    """A run's stored spec, ready to compare with :func:`resolved_spec_dict` of a resumed one.

    Relative path params are made absolute (against the current directory), and a param the
    stored spec does not name takes the value it has now: a run stored before its params were
    stored with their defaults, or before a component gained a param, compares equal on it.
    A param the stored spec names keeps its stored value, so a changed default shows.

    Args:
        stored: The spec stored in the run's checkpoint (or ``spec.yaml``).
        resolved: The resolved spec the run is resumed with.
    """
    from aqa_framework.spec_paths import absolute_raw_paths

    out = absolute_raw_paths(copy.deepcopy(dict(stored)), resolved)
    current = resolved_spec_dict(resolved)
    for comp in resolved.components():
        node, now = _params_node(out, comp.path), _params_node(current, comp.path)
        if node is None or now is None:
            continue
        params = node.get("params")
        if params is None:
            params = node["params"] = {}
        if isinstance(params, dict):
            for key, value in now.get("params", {}).items():
                params.setdefault(key, value)
    return out
