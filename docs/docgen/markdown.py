"""Markdown building blocks: table cells, docstring prose, type names, params tables."""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

_SECTION_RE = re.compile(
    r"^(Args|Arguments|Attributes|Returns|Yields|Raises|Example|Examples|Note|Notes|"
    r"Params|Parameters|See Also|Warning|Warnings)\s*:\s*$"
)
_ROLE_RE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (one line, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: Any) -> str:
    """Text as an inline code span for a table cell (pipes inside code spans are safe)."""
    text = " ".join(str(text).split())
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(doc: str) -> str:
    """Docstring prose for Markdown: Sphinx roles become code spans."""
    return _ROLE_RE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", doc)


def docstring_body(obj: Any) -> str:
    """The prose of a docstring after its summary line, up to the first Google section.

    Args:
        obj: Anything with a docstring.

    Returns:
        Markdown text (may be empty).
    """
    lines = (inspect.getdoc(obj) or "").splitlines()[1:]
    body: list[str] = []
    for line in lines:
        if _SECTION_RE.match(line.strip()):
            break
        body.append(line)
    return plain("\n".join(body).strip())


def type_name(annotation: Any) -> str:
    """A readable name for a type annotation (``int``, ``float | None``, ``list[str]``).

    Args:
        annotation: A type or typing construct.

    Returns:
        The name.
    """
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def constraints(field: FieldInfo) -> str:
    """The bounds of a pydantic field as text, e.g. ``>= 1, < 1.0``."""
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = []
    for meta in field.metadata:
        for attr, sym in symbols.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
        min_length = getattr(meta, "min_length", None)
        if min_length:
            parts.append(f"at least {min_length} item{'s' if min_length > 1 else ''}")
    return ", ".join(parts)


def _yaml_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def field_default(field: FieldInfo) -> str:
    """The default of a pydantic field as YAML-ish text, or ``required``."""
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return "(see below)"
    return _yaml_value(default)


def field_description(field: FieldInfo, sub: type[BaseModel] | None = None) -> str:
    """A field's description, else the summary of its nested model ``sub``."""
    if field.description:
        return field.description
    if sub is not None:
        doc = inspect.getdoc(sub) or ""
        return doc.splitlines()[0] if doc else ""
    return ""


def params_table(params: type[BaseModel]) -> str:
    """A Markdown table of a ``Params`` model: name, type, default, description.

    Args:
        params: A pydantic model.

    Returns:
        The table, or a sentence saying there are no parameters.
    """
    fields = params.model_fields
    if not fields:
        return "*No parameters.*\n"
    rows = ["| param | type | default | description |", "|---|---|---|---|"]
    for name, f in fields.items():
        type_text = type_name(f.annotation)
        limits = constraints(f)
        if limits:
            type_text += f" ({limits})"
        rows.append(
            f"| `{name}` | {code(type_text)} | {code(field_default(f))} | "
            f"{cell(field_description(f))} |"
        )
    return "\n".join(rows) + "\n"
