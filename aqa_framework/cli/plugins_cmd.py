"""``aqa plugins``: list and inspect what plugins register, scaffold new plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aqa_framework.extensions import EXTENSION_KINDS
from aqa_framework.kinds import KINDS

app = typer.Typer(
    help="List and inspect what plugins register: components, callbacks, trackers, commands.",
    no_args_is_help=True,
)

ALL_KINDS: tuple[str, ...] = (*KINDS, *EXTENSION_KINDS)
"""Every kind ``--kind`` accepts: the component kinds, then callback, tracker, command."""

KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind", "-k", help=f"Only this kind: {', '.join(ALL_KINDS)} (or its plural)."
    ),
]


def _kinds(kind: str | None) -> list[str]:
    """The kinds ``--kind`` selects (all when not given); a plural names its kind.

    Raises:
        UnknownComponentError: For an unknown kind, listing the kinds.
    """
    if kind is None:
        return list(ALL_KINDS)
    plurals = {spec.plural: k for k, spec in KINDS.items()}
    plurals |= {plural: k for k, plural in EXTENSION_KINDS.items()}
    found = kind if kind in ALL_KINDS else plurals.get(kind)
    if found is None:
        from aqa_framework.errors import UnknownComponentError

        raise UnknownComponentError(
            f"Unknown kind '{kind}'. Kinds: {', '.join(ALL_KINDS)} (or their plurals)."
        )
    return [found]


def _source(kinds: list[str]) -> Any:
    """The registry, or only the third-party plugins when only commands are asked for.

    Commands need no component hook to run: listing them imports neither the built-in
    components nor torch, as ``aqa --help`` does.
    """
    if kinds == ["command"]:
        from aqa_framework.extensions import load_plugins

        return load_plugins()
    from aqa_framework.registry import get_registry

    return get_registry()


def _params_rows(params_model: Any) -> list[dict[str, Any]]:
    rows = []
    for fname, f in params_model.model_fields.items():
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        try:
            json.dumps(default)
        except TypeError:
            default = str(default)
        rows.append(
            {
                "name": fname,
                "type": _type_name(f.annotation),
                "required": f.is_required(),
                "default": default,
                "description": f.description or "",
            }
        )
    return rows


def backbone_size(cls: Any) -> dict[str, Any]:
    """Parameters and FLOPs of a backbone with its default params, for one default clip.

    The backbone is built on the ``meta`` device (no memory, no weights) and run on one clip
    of its ``default_input_shape`` (else the builder's default, 3x16x112x112) under
    ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2 FLOPs
    (convolutions, matrix products, attention; not pooling, normalisation or activations).

    Args:
        cls: A backbone class.

    Returns:
        ``{"parameters": int, "flops": int, "clip": [C, T, H, W]}``, or ``{"error": str}``
        when the backbone cannot be built or run with its default params.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aqa_framework.builder import DEFAULT_INPUT_SHAPE

    try:
        params = cls.parse_params({})
        with torch.device("meta"):
            model = cls(params)
        clip = tuple(int(s) for s in getattr(model, "default_input_shape", None)
                     or DEFAULT_INPUT_SHAPE)[-4:]
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(1, *clip, device="meta"))
    except Exception as exc:  # a third-party backbone may fail in any way; show says why
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops": int(counter.get_total_flops()),
        "clip": list(clip),
    }


def _size_text(size: dict[str, Any]) -> str:
    if "error" in size:
        return f"size: not measured with default params ({size['error']})"
    n, flops = size["parameters"], size["flops"]
    count = f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"
    amount = f"{flops / 1e9:.1f} GFLOPs" if flops >= 1e8 else f"{flops / 1e6:.1f} MFLOPs"
    c, t, h, w = size["clip"]
    channels = "" if c == 3 else f" of {c} channels"
    return (
        f"size: {count} parameters, {amount} per {t}x{h}x{w} clip{channels} "
        "(default params; a multiply-add counts as 2 FLOPs)"
    )


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def _entry_json(e: Any) -> dict[str, Any]:
    """What ``--json`` gives of any listed entry: kind, name, summary and its plugin."""
    return {
        "kind": e.kind,
        "name": e.name,
        "summary": e.summary,
        "plugin": e.plugin.name,
        "distribution": e.plugin.distribution,
        "version": e.plugin.version,
    }


def _component_json(e: Any) -> dict[str, Any]:
    return _entry_json(e) | {"class": e.qualname}


def _extension_json(e: Any) -> dict[str, Any]:
    """A callback, tracker or command as ``--json`` gives it."""
    doc = _entry_json(e) | {"builtin": bool(e.plugin.builtin), "use": e.usage}
    if e.kind == "command":
        doc["target"] = e.target
        return doc
    doc |= {"class": e.target, "always": e.always, "all_ranks": e.all_ranks}
    if e.kind == "tracker":
        doc |= {"requires": list(e.requires), "missing": list(e.missing), "extra": e.extra}
    return doc


@app.command("list")
def list_plugins(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter, e.g. '*3d*'.")] = "*",
    kind: KindOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List what plugins register: components, callbacks, trackers and commands.

    Each with the distribution that provides it (built-ins marked); a callback shows whether
    it runs in every run (``always``) or only when a spec names it in ``callbacks:``.
    """
    from aqa_framework.extensions import list_extensions

    kinds = _kinds(kind)
    source = _source(kinds)
    components = [e for k in kinds if k in KINDS for e in source.list_components(k, pattern)]
    listing = list_extensions(source, [k for k in kinds if k in EXTENSION_KINDS], pattern)
    if as_json:
        doc: dict[str, Any] = {
            "python": sys.executable,
            "components": [_component_json(e) for e in components],
        }
        for k, plural in EXTENSION_KINDS.items():
            doc[plural] = [_extension_json(e) for e in listing.entries if e.kind == k]
        doc["plugins"] = [
            {
                "name": p.name,
                "module": p.module,
                "distribution": p.distribution,
                "version": p.version,
                "builtin": p.builtin,
                "error": p.error,
            }
            for p in source.plugins
        ]
        doc["problems"] = listing.problems
        typer.echo(json.dumps(doc, indent=2))
        return
    _print_list(kinds, components, listing, source.failed)


def _print_list(kinds: list[str], components: list[Any], listing: Any, failed: list[Any]) -> None:
    from rich.table import Table

    from aqa_framework.cli.console import out
    from aqa_framework.extensions import provider_label

    tables = []
    if any(k in KINDS for k in kinds):
        table = Table(title="Registered components", title_justify="left")
        for col in ("kind", "name", "provider", "summary"):
            table.add_column(col, overflow="fold")
        rows = [(e.kind, e.name, provider_label(e.plugin), e.summary) for e in components]
        tables.append((table, rows, "No component matches."))
    if any(k in EXTENSION_KINDS for k in kinds):
        table = Table(title="Callbacks, trackers and commands", title_justify="left")
        for col in ("kind", "name", "provider", "use", "summary"):
            table.add_column(col, overflow="fold")
        rows = [(e.kind, e.name, e.provider, e.usage, e.summary) for e in listing.entries]
        tables.append((table, rows, "No callback, tracker or command matches."))
    for table, rows, empty in tables:
        _fill(table, rows)
        out.print(table)
        if not rows:
            out.print(empty)
    _print_failures(failed, listing.problems)
    out.print(f"Python: {sys.executable}", markup=False, highlight=False)


def _fill(table: Any, rows: list[tuple[str, ...]]) -> None:
    """Add the rows, a section line between kinds (the first cell)."""
    last_kind = None
    for row in rows:
        if last_kind is not None and row[0] != last_kind:
            table.add_section()
        last_kind = row[0]
        table.add_row(*row)


def _print_failures(failed: list[Any], problems: list[str]) -> None:
    from aqa_framework.cli.console import out

    if failed:
        out.print("[bold red]Plugins that failed to load:[/]")
        for p in failed:
            out.print(f"  {p.name} ({p.distribution} {p.version}): {p.error}", markup=False)
    if problems:
        out.print("[bold red]Registrations that failed:[/]")
        for problem in problems:
            out.print(f"  {problem}", markup=False)


def _source_of(obj: Any, fallback: str) -> str:
    import inspect

    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        return fallback


def _component_doc(e: Any) -> dict[str, Any]:
    import inspect

    doc = _component_json(e)
    doc |= {
        "doc": inspect.getdoc(e.cls) or "",
        "source": _source_of(e.cls, e.qualname),
        "params": _params_rows(e.cls.Params),
    }
    if e.kind == "backbone":
        doc["size"] = backbone_size(e.cls)
    return doc


def _extension_doc(e: Any) -> dict[str, Any]:
    """A callback, tracker or command as ``show --json`` gives it (a command is not imported)."""
    import inspect

    doc = _extension_json(e)
    if e.kind == "command":
        doc["source"] = e.target if isinstance(e.obj, str) else _source_of(e.obj, e.target)
        doc["doc"] = e.summary if isinstance(e.obj, str) else inspect.getdoc(e.obj) or e.summary
        return doc
    doc |= {
        "doc": inspect.getdoc(e.obj) or "",
        "source": _source_of(e.obj, e.target),
        "events": list(e.events),
    }
    if e.kind == "tracker":
        doc["install"] = e.install
        doc["params"] = _params_rows(e.obj.Params)
    return doc


def _unknown_name(name: str, kinds: list[str], source: Any, listing: Any) -> str:
    """One message for a name nothing has: near matches (with their kinds) and the fix."""
    import difflib

    known: dict[str, list[str]] = {}
    for k in kinds:
        if k in KINDS:
            for n in source.names(k):
                known.setdefault(n, []).append(k)
    for e in listing.entries:
        known.setdefault(e.name, []).append(e.kind)
    single = len(kinds) == 1
    msg = f"Unknown {kinds[0] if single else 'name'} '{name}'."
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if close:
        msg += " Did you mean " + " or ".join(
            f"'{c}'" if single else f"'{c}' ({', '.join(known[c])})" for c in close
        ) + "?"
    if single:
        msg += f" Available: {', '.join(sorted(known)) or 'none'}."
    else:
        msg += " `aqa plugins list` shows every name."
    failed = source.failed
    if failed:
        msg += " Plugins that failed to load: " + ", ".join(
            f"{p.name} ({p.error})" for p in failed
        )
    if listing.problems:
        msg += " Registrations that failed: " + "; ".join(listing.problems)
    return msg


@app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(help="A name: component, callback, tracker or command, e.g. c3d.")
    ],
    kind: KindOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show where a component, callback, tracker or command comes from and what it takes.

    A component or tracker: its parameters (types, defaults, descriptions); a backbone: also
    its parameter count and FLOPs per clip with default params; a callback: whether it runs
    in every run or only when a spec names it, and the events it handles. A command is shown
    without importing it.
    """
    from aqa_framework.errors import UnknownComponentError
    from aqa_framework.extensions import list_extensions

    kinds = _kinds(kind)
    source = _source(kinds)
    docs = []
    if any(k in KINDS for k in kinds):  # only commands: no registry (no torch)
        docs = [_component_doc(e) for e in source.find(name) if e.kind in kinds]
    listing = list_extensions(source, [k for k in kinds if k in EXTENSION_KINDS])
    docs += [_extension_doc(e) for e in listing.entries if e.name == name]
    if not docs:
        raise UnknownComponentError(_unknown_name(name, kinds, source, listing))
    if as_json:
        typer.echo(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
        return
    for d in docs:
        if d["kind"] in KINDS:
            _print_component(d)
        else:
            _print_extension(d)


def _params_table(params: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="params", title_justify="left")
    for col in ("name", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for row in params:
        default = "(required)" if row["required"] else repr(row["default"])
        table.add_row(row["name"], row["type"], default, row["description"])
    return table


def _print_component(d: dict[str, Any]) -> None:
    from aqa_framework.cli.console import out

    out.print(f"[bold]{d['kind']} {d['name']}[/] - {d['summary']}")
    out.print(f"class: {d['class']}\ndefined in: {d['source']}", markup=False)
    out.print(f"provided by: {d['distribution']} {d['version']} (plugin {d['plugin']})")
    if "size" in d:
        out.print(_size_text(d["size"]), markup=False, highlight=False)
    if d["params"]:
        out.print(_params_table(d["params"]))
    else:
        out.print("params: none")


def _extension_lines(d: dict[str, Any]) -> list[str]:
    """What ``show`` prints about a callback, tracker or command, after its provider."""
    name, kind = d["name"], d["kind"]
    if kind == "command":
        return [f"target: {d['target']} (imported when the command runs)",
                f"use: aqa {name} --help"]
    where = "on every process" if d["all_ranks"] else "on rank 0 only"
    if kind == "callback" and d["always"]:
        runs = f"runs: in every run (always = True), {where}"
    elif kind == "callback":
        runs = f"runs: only when a spec names it (callbacks: [{name}]), {where}"
    else:
        runs = f"runs: when a spec selects it (track: [{name}]), {where}"
    lines = [runs, f"events: {', '.join(d['events']) or 'none'}"]
    if kind == "tracker" and d["requires"]:
        need = f"needs: {', '.join(d['requires'])}"
        lines.append(f"{need} (not installed: {d['install']})" if d["missing"] else need)
    return lines


def _print_extension(d: dict[str, Any]) -> None:
    from aqa_framework.cli.console import out

    out.print(f"[bold]{d['kind']} {d['name']}[/] - {d['summary']}")
    if "class" in d:
        out.print(f"class: {d['class']}\ndefined in: {d['source']}", markup=False)
    elif d["source"] != d["target"]:
        out.print(f"defined in: {d['source']}", markup=False)
    plugin = "built-in plugin" if d["builtin"] else f"plugin {d['plugin']}"
    out.print(f"provided by: {d['distribution']} {d['version']} ({plugin})", markup=False)
    for line in _extension_lines(d):
        out.print(line, markup=False, highlight=False)
    if d.get("params"):
        out.print(_params_table(d["params"]))
    elif d["kind"] == "tracker":
        out.print("params: none")


@app.command("new")
def new(
    name: Annotated[
        str,
        typer.Argument(help="Plugin name: the prefix of its components, e.g. 'skating'."),
    ],
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Folder to create the package in.")
    ] = Path("."),
) -> None:
    """Create a plugin package (dataset, head, spec, tests) that installs and passes its tests."""
    from aqa_framework.cli.console import out
    from aqa_framework.experiments.scaffold import create_plugin

    root = create_plugin(name, directory)
    out.print(f"[green]Created[/] {root}", highlight=False)
    out.print(
        f"Next:\n  cd {root}\n  pip install -e .\n  python -m pytest -q\n"
        f"  aqa plugins list '{name}.*'\n  aqa run spec.yaml",
        markup=False,
        highlight=False,
    )
