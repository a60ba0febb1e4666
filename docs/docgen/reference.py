"""The spec reference (from the pydantic models) and the CLI reference (from the typer app)."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from docgen.markdown import (
    cell,
    code,
    constraints,
    field_default,
    field_description,
    plain,
    type_name,
)


def _submodel(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside an annotation and whether it is a mapping's value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        inner, _ = _submodel(args[1])
        return inner, inner is not None
    if origin in (typing.Union, types.UnionType):
        for a in args:
            inner, mapping = _submodel(a)
            if inner is not None:
                return inner, mapping
    return None, False


def _spec_sections(
    model: type[BaseModel], path: str
) -> Iterator[tuple[str, type[BaseModel], list[tuple[str, FieldInfo, type[BaseModel] | None]]]]:
    rows = []
    children = []
    for name, f in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        sub, mapping = _submodel(f.annotation)
        rows.append((key, f, sub))
        if sub is not None and sub is not model:
            children.append((sub, f"{key}.<task>" if mapping else key))
    yield path, model, rows
    for sub, sub_path in children:
        yield from _spec_sections(sub, sub_path)


def spec_reference() -> str:
    """The spec file reference, generated from :class:`aqa_framework.spec.Spec`."""
    from aqa_framework.spec import Spec

    out = [
        "# Spec reference",
        "",
        "A spec is one YAML file that says which components make the model, which dataset "
        "feeds it and how it is trained. It is validated in two passes: the envelope below "
        "(unknown keys are errors) and then each component's `params` against that "
        "component's own parameters (see the [component catalog](catalog.md)). Every error "
        "names its full path, e.g. `model.heads.caption.params.hidden`.",
        "",
        "Any value can be overridden on the command line with `--set path=value` "
        "(`--set train.epochs=5`). `aqa spec show SPEC` prints a spec with every default "
        "filled in, and `aqa spec schema` prints the JSON Schema for editor completion.",
        "",
        "This page is generated from the pydantic models in `aqa_framework.spec`.",
        "",
    ]
    for path, model, rows in _spec_sections(Spec, ""):
        title = f"`{path}`" if path else "Top level"
        anchor = "top-level" if not path else path.replace(".<task>", "-task").replace(".", "-")
        out += [f"## {title} {{#{anchor}}}", ""]
        doc = inspect.getdoc(model) or ""
        if doc:
            out += [plain(doc.split("\n\n")[0]), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, f, sub in rows:
            type_text = type_name(f.annotation)
            if sub is not None:
                type_text = type_text.replace(sub.__name__, "mapping")
            limits = constraints(f)
            if limits:
                type_text += f" ({limits})"
            out.append(
                f"| `{key}` | {code(type_text)} | {code(field_default(f))} | "
                f"{cell(field_description(f, sub))} |"
            )
        out.append("")
    return "\n".join(out)




def _subcommands(cmd: Any, ctx: Any) -> list[tuple[str, Any]]:
    if not hasattr(cmd, "list_commands"):
        return []
    subs = [(name, cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    return [(n, c) for n, c in subs if c is not None and not getattr(c, "hidden", False)]


def _walk_commands(cmd: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    yield cmd, ctx
    for name, sub in _subcommands(cmd, ctx):
        yield from _walk_commands(sub, sub.context_class(sub, info_name=name, parent=ctx))


def _param_row(param: Any) -> str:
    is_option = any(o.startswith("-") for o in param.opts)
    if is_option:
        name = ", ".join([*param.opts, *param.secondary_opts])
        kind = "flag" if getattr(param, "is_flag", False) else "option"
    else:
        name = (param.metavar or param.name or "").upper()
        kind = "argument"
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    type_text = type_name(annotation) if annotation is not None else ""
    if getattr(param, "multiple", False):
        type_text += ", repeatable"
    if param.required:
        default = "required"
    elif getattr(param, "is_flag", False):
        default = "on" if param.default else "off"
        if param.secondary_opts:
            default = param.opts[0] if param.default else param.secondary_opts[0]
    elif param.default is None or param.default == () or callable(param.default):
        default = ""
    else:
        default = str(param.default)
    help_text = getattr(param, "help", None) or ""
    return (
        f"| {code(name)} | {kind} | {cell(type_text)} | {cell(default)} | "
        f"{cell(help_text)} |"
    )


def cli_reference(app: Any = None) -> str:
    """The command-line reference, generated from the typer app.

    Args:
        app: A typer app; defaults to the ``aqa`` app.

    Returns:
        One section per command (usage, description, arguments and options).
    """
    import typer.main

    if app is None:
        from aqa_framework.cli.main import app
    root = typer.main.get_command(app)
    out = [
        "# Command-line reference",
        "",
        "Every command takes `-h/--help`. Errors print one line and exit with status 1; set "
        "`AQA_DEBUG=1` to see the traceback.",
        "",
        "This page is generated from the `aqa` command itself.",
        "",
    ]
    for cmd, ctx in _walk_commands(root, root.context_class(root, info_name="aqa")):
        path = ctx.command_path
        out += [f"## `{path}` {{#{path.replace(' ', '-')}}}", ""]
        help_text = inspect.cleandoc(cmd.help or "")
        if help_text:
            out += [help_text, ""]
        pieces = " ".join(cmd.collect_usage_pieces(ctx)).replace("{", "").replace("}", "")
        out += ["```text", f"{path} {pieces.upper()}".rstrip(), "```", ""]
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        if params:
            out += [
                "| name | kind | type | default | description |",
                "|---|---|---|---|---|",
                *(_param_row(p) for p in params),
                "",
            ]
        subs = _subcommands(cmd, ctx)
        if subs:
            out += ["| command | description |", "|---|---|"]
            out += [
                f"| [`{path} {n}`](#{(path + ' ' + n).replace(' ', '-')}) | "
                f"{cell(c.get_short_help_str(limit=120))} |"
                for n, c in subs
            ]
            out.append("")
    return "\n".join(out)


