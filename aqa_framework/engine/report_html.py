"""The run report as one self-contained HTML page: ``report.html``.

Metrics, the scatter plot (embedded as a data URI), every sample's predictions next to its
references (generated commentary next to the reference one) and the training curves (inline
SVG). No script, no stylesheet or image from elsewhere: the page opens offline, from any copy.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aqa_framework.engine.run_folder import REPORT_HTML_FILE
from aqa_framework.files import write_text_atomic

if TYPE_CHECKING:
    from aqa_framework.engine.report import ReportInputs

MAX_ROWS = 500
"""Samples shown in the predictions table."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.caption{max-width:28em}img{max-width:100%}svg text{font-size:11px}
"""

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="num">nan</td>'
    if isinstance(value, float):
        text = (
            "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
        )
        return f'<td class="num">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _predictions(inputs: ReportInputs) -> str:
    """Every sample (up to :data:`MAX_ROWS`): each task's prediction next to its reference."""
    r = inputs.result
    header = ["key"]
    columns: list[list[Any]] = []
    for task, cols in r.predictions.items():
        refs = r.references.get(task, {})
        for col, values in cols.items():
            header.append(f"{task}.{col}")
            columns.append(list(values))
            if col in refs:
                header.append(f"{task}.{col} (reference)")
                columns.append(list(refs[col]))
    n = min(len(r.keys), MAX_ROWS)
    rows = [[r.keys[i], *[c[i] if i < len(c) else "" for c in columns]] for i in range(n)]
    more = (
        f"<p>The first {MAX_ROWS} of {len(r.keys)} samples (all in predictions.csv).</p>"
        if len(r.keys) > MAX_ROWS
        else ""
    )
    return _table(header, rows, "predictions") + more


def _commentaries(inputs: ReportInputs) -> str:
    from aqa_framework.engine.report import caption_columns

    r = inputs.result
    parts = []
    for task, col in caption_columns(r, inputs.task_kinds):
        refs = r.references.get(task, {}).get(col, [""] * len(r.keys))
        rows = [
            [r.keys[i], r.predictions[task][col][i], refs[i]]
            for i in range(min(inputs.samples, len(r.keys)))
        ]
        parts.append(f"<h3>Task {escape(task)}</h3>")
        parts.append(_table(["key", "generated commentary", "reference commentary"], rows))
    return "".join(parts)


def _series(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Curves of the history: ``train loss`` and each validation (or test) metric."""
    out: dict[str, list[tuple[int, float]]] = {}
    for rec in history:
        epoch = rec.get("epoch")
        for split in ("train", "val", "test"):
            for name, value in (rec.get(split) or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    out.setdefault(f"{split} {name}", []).append((int(epoch), float(value)))
    return out


def curve_svg(title: str, series: dict[str, list[tuple[int, float]]]) -> str:
    """One line chart as inline SVG (``epoch`` on x), one colour per series."""
    w, h, pad = 520, 260, 42
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(series)}" '
        f'role="img"><title>{escape(title)}</title>',
        f'<text x="{pad}" y="16">{escape(title)}</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>',
        f'<text x="{pad}" y="{h - pad + 14}">{x0}</text>',
        f'<text x="{w - pad}" y="{h - pad + 14}">{x1} (epoch)</text>',
        f'<text x="2" y="{pad}">{y1:.3g}</text><text x="2" y="{h - pad}">{y0:.3g}</text>',
    ]
    for i, (name, pts) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts
        ]
        ly = h + 14 + 18 * i
        parts.append(f'<rect x="{pad}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{pad + 16}" y="{ly}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curves(history: list[dict[str, Any]]) -> str:
    series = _series(history)
    losses = {k: v for k, v in series.items() if k.startswith("train ")}
    metrics = {k: v for k, v in series.items() if not k.startswith("train ")}
    charts = [curve_svg("training losses", losses)]
    by_split: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name, pts in metrics.items():
        split, metric = name.split(" ", 1)
        by_split.setdefault(metric, {})[split] = pts
    charts += [curve_svg(metric, curves) for metric, curves in list(by_split.items())[:6]]
    return "".join(f"<div>{c}</div>" for c in charts if c)


def render_html(inputs: ReportInputs, scatter: Path | None) -> str:
    """The page's HTML text."""
    r = inputs.result
    title = f"Run report: {inputs.title}"
    body = [f"<h1>{escape(title)}</h1>"]
    if inputs.description:
        body.append(f"<p>{escape(inputs.description.strip())}</p>")
    overview = [
        ["spec", inputs.spec_source or "(none)"],
        ["model", "; ".join(inputs.components)],
        ["data", inputs.dataset],
        ["epoch selection", inputs.selection],
        *[line.split(": ", 1) for line in inputs.environment if ": " in line],
    ]
    if inputs.wall_time_s is not None:
        overview.append(["training time", f"{inputs.wall_time_s:.1f} s"])
    body.append(_table(["", ""], overview, "overview"))
    body.append(
        f"<h2>Metrics on the {escape(inputs.final_split)} split ({len(r.keys)} samples)</h2>"
    )
    body.append(f"<p>{escape(inputs.selection)}</p>")
    if inputs.skipped:
        body.append(
            f"<p>{len(inputs.skipped)} sample(s) could not be loaded and were left out: "
            f"{escape(', '.join(inputs.skipped[:20]))}</p>"
        )
    body.append(_table(["metric", "value"], inputs.metric_rows(), "metrics"))
    header, rows = inputs.epoch_rows()
    if rows:
        body.append(f"<p>Per-epoch values on the {escape(inputs.final_split)} split:</p>")
        body.append(_table(header, rows, "epochs"))
    if scatter is not None:
        data = base64.b64encode(scatter.read_bytes()).decode("ascii")
        body.append("<h2>Predicted vs judged scores</h2>")
        body.append(f'<img alt="predicted vs judged scores" src="data:image/png;base64,{data}">')
    commentaries = _commentaries(inputs)
    if commentaries:
        body.append("<h2>Sample commentaries</h2>" + commentaries)
    body.append("<h2>Predictions</h2>" + _predictions(inputs))
    body.append(
        "<h2>Training curves</h2>" + (_curves(inputs.history) or "<p>No epochs recorded.</p>")
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write_html_report(run_dir: str | Path, inputs: ReportInputs, scatter: Path | None) -> Path:
    """Write ``report.html`` into a run folder.

    Args:
        run_dir: The run folder.
        inputs: What the report shows.
        scatter: The scatter plot to embed (``None``: no score task).

    Returns:
        The page.
    """
    path = Path(run_dir) / REPORT_HTML_FILE
    write_text_atomic(path, render_html(inputs, scatter))
    return path
