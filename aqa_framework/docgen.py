"""Reference pages generated from the code: spec, CLI, component catalog, hooks, API.

The documentation site calls :func:`generated_pages` at build time (``docs/hooks.py``), so these
pages can never drift from the pydantic models, the typer app and the registry. Every function
returns Markdown (mkdocs-material flavour: tables, admonitions, ``attr_list`` anchors).
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from aqa_framework.hookspecs import HOOKS

KIND_TITLES: dict[str, str] = {
    "backbone": "Backbones",
    "aggregator": "Aggregators",
    "head": "Task heads",
    "dataset": "Datasets",
}

_INTERFACE: dict[str, str] = {
    "backbone": "aqa_framework.interfaces.Backbone",
    "aggregator": "aqa_framework.interfaces.Aggregator",
    "head": "aqa_framework.interfaces.TaskHead",
    "dataset": "aqa_framework.interfaces.VideoDataset",
}

_SECTION_RE = re.compile(
    r"^(Args|Arguments|Attributes|Returns|Yields|Raises|Example|Examples|Note|Notes|"
    r"Params|Parameters|See Also|Warning|Warnings)\s*:\s*$"
)
_ROLE_RE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")

# Modules of the API reference, in order; ones that do not exist (yet) are skipped.
API_MODULES: tuple[tuple[str, str], ...] = (
    ("aqa_framework", "Package"),
    ("aqa_framework.interfaces", "Interfaces"),
    ("aqa_framework.component", "Component identity"),
    ("aqa_framework.targets", "Targets"),
    ("aqa_framework.hookspecs", "Hook specifications"),
    ("aqa_framework.registry", "Registry"),
    ("aqa_framework.plugins", "Plugin loading"),
    ("aqa_framework.spec", "Spec"),
    ("aqa_framework.resolve", "Spec resolution"),
    ("aqa_framework.builder", "Builder"),
    ("aqa_framework.model", "Multitask model"),
    ("aqa_framework.metrics", "Metrics"),
    ("aqa_framework.engine.runner", "Engine: runner"),
    ("aqa_framework.engine.checkpoint", "Engine: checkpoints"),
    ("aqa_framework.predict", "Prediction"),
    ("aqa_framework.testing", "Test-kit"),
    ("aqa_framework.scaffold", "Plugin scaffold"),
    ("aqa_framework.errors", "Errors"),
    ("aqa_framework.docgen", "Documentation generator"),
)


# ---------------------------------------------------------------------------------------------
# small helpers


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _plain(doc: str) -> str:
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
    return _plain("\n".join(body).strip())


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


def _constraints(field: FieldInfo) -> str:
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


def _field_description(field: FieldInfo, sub: type[BaseModel] | None = None) -> str:
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
        limits = _constraints(f)
        if limits:
            type_text += f" ({limits})"
        rows.append(
            f"| `{name}` | `{_cell(type_text)}` | `{_cell(field_default(f))}` | "
            f"{_cell(_field_description(f))} |"
        )
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------
# spec reference


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
            out += [_plain(doc.split("\n\n")[0]), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, f, sub in rows:
            type_text = type_name(f.annotation)
            if sub is not None:
                type_text = type_text.replace(sub.__name__, "mapping")
            limits = _constraints(f)
            if limits:
                type_text += f" ({limits})"
            out.append(
                f"| `{key}` | `{_cell(type_text)}` | `{_cell(field_default(f))}` | "
                f"{_cell(_field_description(f, sub))} |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# CLI reference


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
        f"| `{_cell(name)}` | {kind} | {_cell(type_text)} | {_cell(default)} | "
        f"{_cell(help_text)} |"
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
                f"{_cell(c.get_short_help_str(limit=120))} |"
                for n, c in subs
            ]
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# component catalog


def builtin_registry():
    """A registry holding only the built-in components (installed plugins are ignored)."""
    from aqa_framework.registry import Registry

    return Registry(entry_points=[], builtins=True, strict=True)


def component_anchor(kind: str, name: str) -> str:
    """The catalog anchor of a component, e.g. ``backbone-c3d``."""
    return f"{kind}-{name}".replace(".", "-")


def _example_yaml(kind: str, entry: Any) -> str:
    defaults = {}
    for fname, f in entry.cls.Params.model_fields.items():
        defaults[fname] = "<required>" if f.is_required() else field_default(f)
    params = "".join(f"\n{' ' * 6}{k}: {v}" for k, v in defaults.items())
    params_block = f"\n{' ' * 4}params:{params}" if defaults else ""
    if kind == "dataset":
        params_block = params_block.replace("\n" + " " * 6, "\n" + " " * 4).replace(
            "\n" + " " * 4 + "params:", "\n  params:"
        )
        return f"data:\n  name: {entry.name}{params_block}"
    if kind == "head":
        params_block = params_block.replace("\n" + " " * 6, "\n" + " " * 8).replace(
            "\n" + " " * 4 + "params:", "\n" + " " * 6 + "params:"
        )
        return f"model:\n  heads:\n    my_task:\n      name: {entry.name}{params_block}"
    return f"model:\n  {kind}:\n    name: {entry.name}{params_block}"


def component_section(entry: Any) -> str:
    """The catalog section of one registered component.

    Args:
        entry: A :class:`~aqa_framework.registry.RegistryEntry`.

    Returns:
        Markdown: heading with anchor, summary, description, facts, params table, YAML.
    """
    cls = entry.cls
    out = [f"### `{entry.name}` {{#{component_anchor(entry.kind, entry.name)}}}", ""]
    out += [f"**{_plain(entry.summary)}**", ""]
    body = docstring_body(cls)
    if body:
        out += [body, ""]
    facts = [
        f"- class: `{cls.__module__}.{cls.__qualname__}`",
        f"- provided by: `{entry.plugin.distribution}` (plugin `{entry.plugin.name}`)",
    ]
    if entry.kind == "head":
        facts.append(f"- consumes: `{cls.consumes}` features; learns from `{cls.target_kind}`")
    if entry.kind == "backbone" and getattr(cls, "layers", ()):
        facts.append("- probe layers: " + ", ".join(f"`{x}`" for x in cls.layers))
    if entry.kind == "dataset":
        facts.append("- splits: " + ", ".join(f"`{s}`" for s in cls.splits))
    out += [*facts, "", params_table(cls.Params)]
    out += ["```yaml", _example_yaml(entry.kind, entry), "```", ""]
    return "\n".join(out)


def catalog(registry: Any = None) -> str:
    """The catalog of components, generated from the registry.

    Args:
        registry: Registry to document; defaults to the built-in components only.

    Returns:
        Markdown: one section per kind, one subsection per component.
    """
    registry = registry or builtin_registry()
    out = [
        "# Component catalog",
        "",
        "Every component that ships with aqa-framework, by kind. A spec names a component by "
        "its name and sets its `params`; unknown params are errors. The same information is "
        "available at the command line: `aqa plugins list` and `aqa plugins show NAME` (which "
        "also covers installed third-party plugins).",
        "",
        "This page is generated from the registry at documentation build time.",
        "",
    ]
    for kind, title in KIND_TITLES.items():
        entries = registry.list_components(kind)
        out += [f"## {title}", ""]
        if not entries:
            out += ["*None registered.*", ""]
            continue
        out += ["| name | summary |", "|---|---|"]
        out += [
            f"| [`{e.name}`](#{component_anchor(kind, e.name)}) | {_cell(_plain(e.summary))} |"
            for e in entries
        ]
        out.append("")
        out += [component_section(e) for e in entries]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# hook reference


def hook_reference(registry: Any = None) -> str:
    """The hook reference, generated from :mod:`aqa_framework.hookspecs`.

    Args:
        registry: Registry whose built-in components are listed per hook; defaults to the
            built-in registry.

    Returns:
        Markdown: the marker, then one section per hook.
    """
    from aqa_framework import hookspecs

    registry = registry or builtin_registry()
    out = [
        "# Hook reference",
        "",
        "A plugin is a module (named by an entry point in the `aqa` group) with functions "
        "marked by `aqa_framework.hookimpl`. There are four hooks, one per component kind. "
        "Each receives a `register` callable; call it once per component class. A plugin "
        "implements only the hooks it needs. The built-in components register through these "
        "same hooks.",
        "",
        "```python",
        "from aqa_framework import hookimpl",
        "```",
        "",
        "Rules checked when a plugin registers a component:",
        "",
        "- the class is a subclass of its kind's interface;",
        "- its `name` is lower case and starts with the plugin's entry-point name and a dot "
        "(`gymnastics.d-plus-e`), so it never clashes with a built-in;",
        "- its `Params` is a pydantic model with `extra='forbid'`;",
        "- no other plugin registered the same name.",
        "",
        "A plugin that breaks a rule or fails to import is skipped with a warning (fatal with "
        "`AQA_PLUGINS_STRICT=1`); `AQA_PLUGINS_ALLOW` and `AQA_PLUGINS_BLOCK` (comma-separated "
        "patterns) choose which plugins load.",
        "",
        "This page is generated from `aqa_framework.hookspecs`.",
        "",
    ]
    for kind, hook_name in HOOKS.items():
        fn = getattr(hookspecs, hook_name)
        sig = str(inspect.signature(fn)).replace("'", "")
        out += [f"## `{hook_name}` {{#{hook_name.replace('_', '-')}}}", ""]
        doc = _plain(inspect.getdoc(fn) or "")
        summary = doc.splitlines()[0] if doc else ""
        out += [summary, ""]
        out += ["```python", f"@hookimpl\ndef {hook_name}{sig}:", "    ...", "```", ""]
        out += [
            f"- registers: subclasses of [`{_INTERFACE[kind].rsplit('.', 1)[1]}`]"
            f"[{_INTERFACE[kind]}] (see [interface contracts](contracts.md))",
            "- arguments: `register`, call it with each component class",
        ]
        names = [e.name for e in registry.list_components(kind)]
        if names:
            links = ", ".join(
                f"[`{n}`](../user-guide/catalog.md#{component_anchor(kind, n)})" for n in names
            )
            out.append(f"- built-in implementations: {links}")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# API reference and checks


def available_api_modules() -> list[tuple[str, str]]:
    """The modules of :data:`API_MODULES` that exist in this installation."""
    import importlib.util

    found = []
    for module, title in API_MODULES:
        try:
            if importlib.util.find_spec(module) is not None:
                found.append((module, title))
        except ModuleNotFoundError:
            continue
    return found


def api_page(module: str, title: str) -> str:
    """An mkdocstrings page for one module."""
    return f"# {title}\n\n::: {module}\n"


def api_index(modules: list[tuple[str, str]]) -> str:
    """The API reference landing page."""
    out = [
        "# API reference",
        "",
        "The Python API, generated from the docstrings. Plugin authors mostly need the "
        "[interfaces](aqa_framework.interfaces.md), [targets](aqa_framework.targets.md) and "
        "the [test-kit](aqa_framework.testing.md).",
        "",
        "| module | |",
        "|---|---|",
    ]
    out += [f"| [`{module}`]({module}.md) | {title} |" for module, title in modules]
    return "\n".join(out) + "\n"


def _api_file(module: str) -> str:
    return f"api/{module}.md"


def documentation_problems(registry: Any = None) -> list[str]:
    """Components whose generated documentation would be incomplete.

    Args:
        registry: Registry to check; defaults to the built-in registry.

    Returns:
        One message per missing summary or undescribed parameter (empty when all is well).
    """
    registry = registry or builtin_registry()
    problems = []
    for entry in registry.list_components():
        label = f"{entry.kind} '{entry.name}' ({entry.qualname})"
        if not entry.summary.strip():
            problems.append(f"{label}: no summary (first docstring line)")
        for fname, f in entry.cls.Params.model_fields.items():
            if not (f.description or "").strip():
                problems.append(f"{label}: param '{fname}' has no description")
    return problems


def generated_pages(registry: Any = None) -> dict[str, str]:
    """Every generated page, keyed by its path under ``docs/``.

    Args:
        registry: Registry for the catalog and hook pages; defaults to the built-ins.

    Returns:
        Path (e.g. ``user-guide/catalog.md``) -> Markdown.
    """
    registry = registry or builtin_registry()
    modules = available_api_modules()
    pages = {
        "user-guide/spec-reference.md": spec_reference(),
        "user-guide/cli-reference.md": cli_reference(),
        "user-guide/catalog.md": catalog(registry),
        "plugin-guide/hooks.md": hook_reference(registry),
        "api/index.md": api_index(modules),
    }
    for module, title in modules:
        pages[_api_file(module)] = api_page(module, title)
    return pages


def api_nav() -> list[dict[str, str]]:
    """Navigation entries of the API pages (used by the docs hook)."""
    return [{title: _api_file(module)} for module, title in available_api_modules()]
