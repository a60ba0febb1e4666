"""Pass two of spec validation: look components up and validate their params."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from aqa_framework.errors import SpecError, UnknownComponentError
from aqa_framework.registry import Registry, get_registry
from aqa_framework.spec import ComponentSpec, Spec, errors_from_validation, nonfinite_values


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

    Raises:
        SpecError: Listing every unknown name and invalid parameter with its path.
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
    return ResolvedSpec(spec, backbone, aggregator, heads, dataset, source)  # type: ignore[arg-type]
