"""The component catalog (from the registry) and the hook reference (from the hookspecs)."""

from __future__ import annotations

import inspect
from typing import Any

from aqa_framework.kinds import KINDS
from docgen.markdown import (
    cell,
    docstring_body,
    field_default,
    params_table,
    plain,
)

KIND_TITLES: dict[str, str] = {kind.name: kind.title for kind in KINDS.values()}
"""Component kind -> section title, in catalog order (from :data:`aqa_framework.kinds.KINDS`)."""


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
    out += [f"**{plain(entry.summary)}**", ""]
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
    for kind in KINDS:
        entries = registry.list_components(kind)
        out += [f"## {KINDS[kind].title}", ""]
        if not entries:
            out += ["*None registered.*", ""]
            continue
        out += ["| name | summary |", "|---|---|"]
        out += [
            f"| [`{e.name}`](#{component_anchor(kind, e.name)}) | {cell(plain(e.summary))} |"
            for e in entries
        ]
        out.append("")
        out += [component_section(e) for e in entries]
    return "\n".join(out)




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
        "marked by `aqa_framework.hookimpl`. There are four hooks, one per component kind, "
        "and three that add training callbacks, experiment trackers and `aqa` sub-commands "
        "([below](#register-callbacks)). "
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
        "The plugin module of the [tutorial](tutorial.md) implements two of the hooks:",
        "",
        "```python",
        '--8<-- "examples/aqa-gymnastics/src/aqa_gymnastics/plugin.py"',
        "```",
        "",
        "This page is generated from `aqa_framework.hookspecs`.",
        "",
    ]
    for kind in KINDS.values():
        hook_name = kind.hook
        fn = getattr(hookspecs, hook_name)
        sig = str(inspect.signature(fn)).replace("'", "")
        out += [f"## `{hook_name}` {{#{hook_name.replace('_', '-')}}}", ""]
        doc = plain(inspect.getdoc(fn) or "")
        summary = doc.splitlines()[0] if doc else ""
        out += [summary, ""]
        out += ["```python", f"@hookimpl\ndef {hook_name}{sig}:", "    ...", "```", ""]
        out += [
            f"- registers: subclasses of [`{kind.interface_name}`][{kind.interface_path}] "
            "(see [interface contracts](contracts.md))",
            "- arguments: `register`, call it with each component class",
        ]
        names = [e.name for e in registry.list_components(kind.name)]
        if names:
            links = ", ".join(
                f"[`{n}`](../user-guide/catalog.md#{component_anchor(kind.name, n)})"
                for n in names
            )
            out.append(f"- built-in implementations: {links}")
        out.append("")
    out += _extension_hooks()
    out += training_events()
    return "\n".join(out)


def _extension_hooks() -> list[str]:
    """Sections of the hooks that add callbacks, trackers and commands."""
    from aqa_framework import hookspecs

    out: list[str] = []
    for hook_name in hookspecs.EXTENSION_HOOKS.values():
        fn = getattr(hookspecs, hook_name)
        sig = str(inspect.signature(fn)).replace("'", "")
        doc = plain(inspect.getdoc(fn) or "")
        body = doc.split("\n\nArgs:")[0]
        out += [f"## `{hook_name}` {{#{hook_name.replace('_', '-')}}}", "", body, ""]
        out += ["```python", f"@hookimpl\ndef {hook_name}{sig}:", "    ...", "```", ""]
    return out


def training_events() -> list[str]:
    """The training events: their order and the payload of each (from the dataclasses)."""
    import dataclasses

    from aqa_framework.engine import events

    classes = {
        "run_start": events.RunStart,
        "resume": events.Resume,
        "epoch_start": events.EpochStart,
        "step_end": events.StepEnd,
        "evaluate": events.Evaluate,
        "checkpoint": events.CheckpointSaved,
        "epoch_end": events.EpochEnd,
        "run_end": events.RunEnd,
        "interrupt": events.Interrupt,
        "close": events.Close,
    }
    module_doc = inspect.getdoc(events) or ""
    order = module_doc.split("::", 1)[1].split("\n\n")[1] if "::" in module_doc else ""
    out = [
        "## Training events {#training-events}",
        "",
        "A run emits these events, in this order, to every callback (`on_<event>(event)` "
        "methods of `aqa_framework.engine.events.Callback`): first the engine's own (progress "
        "display, `metrics.jsonl`, results and report), then the spec's trackers (`track:`), "
        "then the plugins' callbacks that the spec names in `callbacks:` (a class with "
        "`always = True` runs in every run; installing a plugin changes no run that does not "
        "ask for it). Callbacks run on rank 0 only under torchrun (a class "
        "with `all_ranks = True` runs on every process). A callback that raises stops the run "
        "with one message naming the plugin and the callback; the last checkpoint is kept and "
        "the run resumes with `aqa run SPEC --resume RUN`; `close` still reaches every "
        "callback.",
        "",
        "```text",
        __import__("textwrap").dedent(order).strip("\n"),
        "```",
        "",
        "Every payload has `run` (`folder`, `name`, `spec`, `source`, `epochs`, `world_size`, "
        "`rank`, `log`). The others:",
        "",
        "| event | payload | fields |",
        "|---|---|---|",
    ]
    assert list(classes) == list(events.EVENTS), "every event is documented"
    for name, cls in classes.items():
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls) if f.name != "run")
        summary = cell(plain((cls.__doc__ or "").strip().splitlines()[0]))
        out.append(f"| `{name}` | `{cls.__name__}`: {summary} | {fields or '-'} |")
    out.append("")
    return out


