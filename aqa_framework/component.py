"""Class-level identity shared by every plugin component (torch-free)."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

PATH_PARAM: dict[str, Any] = {"format": "path"}
"""``json_schema_extra`` that marks a parameter as a filesystem path.

Declare a parameter that names a file or folder (a dataset root, a cache folder, a weight file)
as ``root: str = Field(..., json_schema_extra=PATH_PARAM)`` (parameters typed
``pathlib.Path`` count as paths without it). ``aqa run`` stores such a parameter absolute in
the run folder when the spec gives it relative, so the run can be evaluated and resumed from
any directory. Paths documented as relative to another parameter (files inside ``root``) are
not marked.
"""


def path_params(params: type[BaseModel]) -> list[str]:
    """Names of the parameters of a ``Params`` model that are filesystem paths.

    A parameter is a path if its field carries :data:`PATH_PARAM` or its type is
    ``pathlib.Path`` (alone or in an optional).

    Args:
        params: A component's ``Params`` model class.
    """
    import typing
    from pathlib import Path

    out = []
    for name, info in params.model_fields.items():
        extra = info.json_schema_extra
        marked = isinstance(extra, dict) and extra.get("format") == "path"
        ann = info.annotation
        typed = ann is not None and (
            (isinstance(ann, type) and issubclass(ann, Path))
            or any(isinstance(a, type) and issubclass(a, Path) for a in typing.get_args(ann))
        )
        if marked or typed:
            out.append(name)
    return out


class NoParams(BaseModel):
    """Parameters of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


class Component:
    """Identity every registered component carries at class level.

    Attributes:
        kind: ``"backbone"``, ``"aggregator"``, ``"head"`` or ``"dataset"`` (set by the interface).
        name: Registry name, lower case, no kind suffix (``"c3d"``); third-party names carry
            their plugin prefix (``"skating.tcn"``).
        Params: Nested pydantic model of the component's parameters. It must forbid extra
            keys and describe each field (``Field(description=...)``).
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def parse_params(cls, params: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        """Validate raw parameters against :attr:`Params`.

        Args:
            params: A mapping (from a spec), an already validated model, or ``None``.

        Returns:
            The validated parameters.

        Raises:
            pydantic.ValidationError: If a value does not fit.
        """
        if isinstance(params, cls.Params):
            return params
        return cls.Params.model_validate(params or {})
