"""Judging rules: how a panel's marks become a final score.

A rule is either a :class:`JudgeRule` (sort the marks, drop the highest and lowest, sum or
average the rest, optionally multiply by a scalar target such as the diving degree of
difficulty), one of the :data:`RULE_PRESETS` by name, or the import path of a function
``"package.module:function"`` with the signature of :class:`RuleFunction`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``package.module:function`` (the attribute may be dotted: ``module:Class.method``)."""


class RuleFunction(Protocol):
    """A judging rule given by import path.

    Called as ``rule(marks, inputs)`` with the decoded marks ``(B, J)`` (float32, one column
    per judge in the order of the marks target) and the prediction inputs: ``{"arrays":
    {...}, "scores": {...}}`` holding exactly the targets the head's ``rule_inputs`` name (known
    before the performance is judged), or ``None`` for a bare video. It returns the final
    scores ``(B,)`` in points; they must be finite.
    """

    def __call__(self, marks: Tensor, batch: Mapping[str, Any] | None) -> Tensor:
        """Final scores ``(B,)`` of marks ``(B, J)``."""


class JudgeRule(BaseModel):
    """A trimmed panel rule: sort, drop extremes, sum or average, optionally multiply.

    Diving: drop the 2 highest and 2 lowest of 7 marks, sum the middle 3, multiply by the
    degree of difficulty. JIGSAWS: the sum of the 6 GRS items. Gymnastics-like panels: drop
    the highest and the lowest, average the rest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    drop_highest: int = Field(0, ge=0, description="Number of highest marks left out.")
    drop_lowest: int = Field(0, ge=0, description="Number of lowest marks left out.")
    combine: Literal["sum", "mean"] = Field(
        "sum", description="How the kept marks are combined: 'sum' or 'mean'."
    )
    multiply_by: str | None = Field(
        None,
        description="Name of a scalar array target of kind 'difficulty' that multiplies the "
        "combined marks (the diving degree of difficulty), or None.",
    )

    def kept(self, judges: int) -> int:
        """How many of ``judges`` marks the rule keeps (may be 0 or less: a bad rule)."""
        return judges - self.drop_highest - self.drop_lowest

    def apply(self, marks: Tensor, multiplier: Tensor | None = None) -> Tensor:
        """The final scores of a batch of marks.

        Args:
            marks: ``(B, J)`` marks, one column per judge.
            multiplier: ``(B,)`` values of the :attr:`multiply_by` target; required exactly
                when :attr:`multiply_by` is set.

        Returns:
            ``(B,)`` final scores.

        Raises:
            ValueError: If the rule keeps no mark, or the multiplier is missing.
        """
        judges = marks.shape[1]
        if self.kept(judges) < 1:
            raise ValueError(
                f"the rule drops {self.drop_highest} highest and {self.drop_lowest} lowest of "
                f"{judges} marks, which keeps none"
            )
        ordered = marks.sort(dim=1).values[:, self.drop_lowest : judges - self.drop_highest]
        total = ordered.sum(dim=1) if self.combine == "sum" else ordered.mean(dim=1)
        if self.multiply_by is None:
            return total
        if multiplier is None:
            raise ValueError(f"the rule multiplies by '{self.multiply_by}', which was not given")
        return total * multiplier.to(total.dtype).reshape(-1)

    def describe(self) -> str:
        """``drop 2 highest and 2 lowest, sum, x difficulty``."""
        parts = []
        if self.drop_highest or self.drop_lowest:
            parts.append(f"drop {self.drop_highest} highest and {self.drop_lowest} lowest")
        parts.append(self.combine)
        if self.multiply_by:
            parts.append(f"x {self.multiply_by}")
        return ", ".join(parts)


RULE_PRESETS: dict[str, JudgeRule] = {
    "sum": JudgeRule(),
    "mean": JudgeRule(combine="mean"),
    "diving": JudgeRule(drop_highest=2, drop_lowest=2, combine="sum", multiply_by="difficulty"),
    "trimmed_mean": JudgeRule(drop_highest=1, drop_lowest=1, combine="mean"),
}
"""Rules by name: ``sum`` (JIGSAWS GRS), ``mean``, ``diving`` (middle 3 of 7 x the target
``difficulty``) and ``trimmed_mean`` (drop the highest and the lowest, average the rest)."""


def parse_rule(value: Any) -> Any:
    """Turn a preset name into its :class:`JudgeRule`; check the form of an import path.

    Args:
        value: A rule as written in a spec: a mapping, a :class:`JudgeRule`, a preset name or
            ``"package.module:function"``.

    Returns:
        A :class:`JudgeRule` for a preset, else ``value`` unchanged.

    Raises:
        ValueError: For a string that is neither a preset nor an import path.
    """
    if not isinstance(value, str):
        return value
    if value in RULE_PRESETS:
        return RULE_PRESETS[value]
    if not IMPORT_PATH.match(value):
        raise ValueError(
            f"rule {value!r} is neither a preset ({', '.join(RULE_PRESETS)}) nor an import "
            "path 'package.module:function'; a trimmed rule is a mapping such as "
            "{drop_highest: 2, drop_lowest: 2, combine: sum, multiply_by: difficulty}"
        )
    return value


def load_rule(path: str) -> RuleFunction:
    """Import the function an import-path rule names.

    Args:
        path: ``"package.module:function"`` (the attribute may be dotted).

    Returns:
        The callable.

    Raises:
        ValueError: Naming the path when the module cannot be imported, the attribute does
            not exist or is not callable.
    """
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported
        raise ValueError(
            f"rule '{path}': cannot import module '{module_name}' ({exc}); install the package "
            "or put it on PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"rule '{path}': module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(
            f"rule '{path}' is a {type(obj).__name__}, not a function (marks, batch) -> scores"
        )
    return obj
