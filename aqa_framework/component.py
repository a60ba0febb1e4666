"""Class-level identity shared by every plugin component (torch-free)."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


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
