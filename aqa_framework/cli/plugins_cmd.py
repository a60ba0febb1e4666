"""``aqa plugins``: list and inspect the registered components, scaffold new plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aqa_framework.kinds import KINDS

app = typer.Typer(help="List and inspect plugins and their components.", no_args_is_help=True)

KindOption = Annotated[
    str | None,
    typer.Option("--kind", "-k", help=f"Only this kind: {', '.join(KINDS)}."),
]


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


@app.command("list")
def list_plugins(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter, e.g. '*3d*'.")] = "*",
    kind: KindOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List registered components grouped by kind, with the plugin that provides each."""
    from aqa_framework.registry import get_registry

    reg = get_registry()
    entries = reg.list_components(kind, pattern)
    if as_json:
        doc = {
            "python": sys.executable,
            "components": [
                {
                    "kind": e.kind,
                    "name": e.name,
                    "summary": e.summary,
                    "plugin": e.plugin.name,
                    "distribution": e.plugin.distribution,
                    "version": e.plugin.version,
                    "class": e.qualname,
                }
                for e in entries
            ],
            "plugins": [
                {
                    "name": p.name,
                    "module": p.module,
                    "distribution": p.distribution,
                    "version": p.version,
                    "error": p.error,
                }
                for p in reg.plugins
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
        return

    from rich.table import Table

    from aqa_framework.cli.console import out

    table = Table(title="Registered components", title_justify="left")
    for col in ("kind", "name", "provider", "summary"):
        table.add_column(col, overflow="fold")
    last_kind = None
    for e in entries:
        if last_kind is not None and e.kind != last_kind:
            table.add_section()
        last_kind = e.kind
        provider = f"{e.plugin.distribution} {e.plugin.version}"
        table.add_row(e.kind, e.name, provider, e.summary)
    out.print(table)
    if not entries:
        out.print("No component matches.")
    failed = reg.failed
    if failed:
        out.print("[bold red]Plugins that failed to load:[/]")
        for p in failed:
            out.print(f"  {p.name} ({p.distribution} {p.version}): {p.error}", markup=False)
    out.print(f"Python: {sys.executable}", markup=False, highlight=False)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Component name, e.g. c3d.")],
    kind: KindOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a component's parameters (types, defaults, descriptions) and where it is defined.

    For a backbone, also its parameter count and FLOPs per clip with default params.
    """
    import inspect

    from aqa_framework.errors import UnknownComponentError
    from aqa_framework.registry import get_registry

    reg = get_registry()
    if kind:
        entries = [reg.entry(kind, name)]
    else:
        entries = reg.find(name)
        if not entries:
            close = [reg.unknown_message(k, name) for k in KINDS]
            hint = next((m for m in close if "Did you mean" in m), close[0])
            raise UnknownComponentError(hint.replace("Unknown backbone", "Unknown component"))
    docs = []
    for e in entries:
        try:
            source = f"{inspect.getsourcefile(e.cls)}:{inspect.getsourcelines(e.cls)[1]}"
        except (OSError, TypeError):
            source = e.qualname
        docs.append(
            {
                "kind": e.kind,
                "name": e.name,
                "summary": e.summary,
                "doc": inspect.getdoc(e.cls) or "",
                "class": e.qualname,
                "source": source,
                "plugin": e.plugin.name,
                "distribution": e.plugin.distribution,
                "version": e.plugin.version,
                "params": _params_rows(e.cls.Params),
            }
        )
        if e.kind == "backbone":
            docs[-1]["size"] = backbone_size(e.cls)
    if as_json:
        typer.echo(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
        return
    from rich.table import Table

    from aqa_framework.cli.console import out

    for d in docs:
        out.print(f"[bold]{d['kind']} {d['name']}[/] - {d['summary']}")
        out.print(f"class: {d['class']}\ndefined in: {d['source']}", markup=False)
        out.print(f"provided by: {d['distribution']} {d['version']} (plugin {d['plugin']})")
        if "size" in d:
            out.print(_size_text(d["size"]), markup=False, highlight=False)
        table = Table(title="params", title_justify="left")
        for col in ("name", "type", "default", "description"):
            table.add_column(col, overflow="fold")
        for row in d["params"]:
            default = "(required)" if row["required"] else repr(row["default"])
            table.add_row(row["name"], row["type"], default, row["description"])
        if d["params"]:
            out.print(table)
        else:
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
