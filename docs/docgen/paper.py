"""The "Reproducing the paper" page, generated from the spec files under ``examples/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docgen.markdown import cell

TABLE4_ROWS: tuple[tuple[str, str], ...] = (
    ("aqa", "AQA (single task)"),
    ("cls", "AQA + Cls"),
    ("caps", "AQA + Caps"),
    ("cls-caps", "AQA + Cls + Caps"),
)
"""Spec-name suffix -> row of the MTL-AQA paper's Table 4."""

TABLE4_NETWORKS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("c3d-avg", "C3D-AVG", {"aqa": 89.60, "cls": 89.62, "caps": 88.78, "cls-caps": 90.44}),
    ("mscadc", "MSCADC", {"aqa": 84.72, "cls": 85.76, "caps": 85.47, "cls-caps": 86.12}),
)
"""Spec-name prefix, column title and the paper's Spearman x 100 per row."""


def _yaml(path: Path) -> dict[str, Any]:
    from aqa_framework.yamlio import load_yaml

    data = load_yaml(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def is_sweep_file(raw: dict[str, Any]) -> bool:
    """Whether a YAML mapping is a sweep file (``base`` and ``axes``) rather than a spec."""
    return "base" in raw and "axes" in raw


def table4_specs(root: Path) -> dict[tuple[str, str], Path]:
    """The Table 4 spec files that exist: ``(network, row) -> path``."""
    found = {}
    for prefix, _, _ in TABLE4_NETWORKS:
        for row, _ in TABLE4_ROWS:
            path = root / "examples" / "table4" / f"{prefix}-{row}.yaml"
            if path.is_file():
                found[(prefix, row)] = path
    return found


def _include(path: Path, root: Path, indent: str = "    ") -> list[str]:
    rel = path.relative_to(root).as_posix()
    return [f"{indent}```yaml", f'{indent}--8<-- "{rel}"', f"{indent}```"]


def reproducing_page(root: Path) -> str:
    """The page: prerequisites, Table 4 with a spec and command per cell, other experiments.

    Args:
        root: Repository root (holds ``examples/``).

    Returns:
        Markdown.
    """
    specs = table4_specs(root)
    out = [
        "# Reproducing the paper",
        "",
        "The MTL-AQA paper (Parmar & Morris, CVPR 2019) compares, in its Table 4, learning the "
        "score alone (single-task, STL) with learning it together with fine-grained dive "
        "classification and commentary generation (multitask, MTL), for two networks: "
        "C3D-AVG and MSCADC. Every cell of that table is a spec under `examples/table4/`. "
        "This page is generated from those files.",
        "",
        "## What you need",
        "",
        "- The MTL-AQA annotation files and event videos, prepared as described in "
        "[Datasets](user-guide/datasets.md#mtl-aqa). The specs expect them in "
        "`data/mtl-aqa/`; override with `--set data.params.root=...`.",
        "- For C3D-AVG, the Sports-1M C3D weights (`c3d.pickle`) in `weights/`, or "
        "`--set model.backbone.params.pretrained=...`. The paper pretrains MSCADC on UCF101; "
        "its specs train from scratch unless you give such weights.",
        "- A GPU: every spec trains for 100 epochs over the 1059 training dives.",
        "",
        "## Table 4",
        "",
        "Spearman rank correlation between predicted and judged scores on the 353 test dives, "
        "times 100, as published.",
        "",
        "| tasks | "
        + " | ".join(f"{title} (paper) | spec" for _, title, _ in TABLE4_NETWORKS)
        + " |",
        "|---|" + "---:|---|" * len(TABLE4_NETWORKS),
    ]
    for row, row_title in TABLE4_ROWS:
        cells = [row_title]
        for prefix, _, values in TABLE4_NETWORKS:
            path = specs.get((prefix, row))
            spec = f"[`{path.name}`](#{path.stem})" if path else "-"
            cells += [f"{values[row]:.2f}", spec]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "## Running a cell",
        "",
        "```bash",
        "aqa validate examples/table4/c3d-avg-cls-caps.yaml    # data, weights and model check",
        "aqa run examples/table4/c3d-avg-cls-caps.yaml",
        "```",
        "",
        "The run folder's `results.json` and `report.md` give `score.spearman` on the test "
        "split in [-1, 1] (the paper's 90.44 is 0.9044). Runs with the auxiliary tasks also "
        "report the classification accuracies (`cls.*_acc`) and the caption metrics "
        "(`caption.bleu_1` ... `caption.cider`) of the paper's Table 5.",
        "",
        "## What to expect",
        "",
        "- The rows of a column differ by about a point (88.78 to 90.44 for C3D-AVG), and the "
        "paper reports one run per cell. A single run moves with the seed, so compare task "
        "sets over several seeds: the sweeps `examples/sweeps/table4-c3d-avg.yaml` and "
        "`examples/sweeps/table4-mscadc.yaml` run the four task sets with three seeds each and "
        "tabulate mean ± standard deviation (`aqa sweep FILE`; see "
        "[Sweeps](user-guide/running.md#sweeps)).",
        "- The specs hold out no validation split, so the last epoch is reported and the test "
        "split is only used once, at the end. `--set train.select_on=test` instead picks the "
        "epoch with the best test Spearman, the optimistic protocol of published code; the "
        "report then says so.",
        "- To try a configuration without the real data, point it at the synthetic diving "
        "dataset: `--set data.name=synthetic-diving --set data.params.root=null` (synthetic "
        "cartoons; the numbers mean nothing for real diving).",
        "",
        "The other experiments of the paper (smaller training sets, probes, baselines) are "
        "described in [Experiments, sweeps, probes](experiments.md).",
        "",
        "## The specs",
        "",
    ]
    for (_, _row), path in specs.items():
        description = _yaml(path).get("description", "")
        out += [f"### `{path.name}` {{#{path.stem}}}", "", cell(description), ""]
        out += ["```bash", f"aqa run {path.relative_to(root).as_posix()}", "```", ""]
        out += ['??? example "Spec"', "", *_include(path, root), ""]
    others = sorted(
        p
        for p in (root / "examples").rglob("*.yaml")
        if p not in specs.values()
        and p.parent.name in {"sweeps", "table5", "table6", "table7", "table8"}
    )
    if others:
        out += [
            "## Other experiments",
            "",
            "| file | what | command |",
            "|---|---|---|",
        ]
        for path in others:
            raw = _yaml(path)
            rel = path.relative_to(root).as_posix()
            command = f"aqa sweep {rel}" if is_sweep_file(raw) else f"aqa run {rel}"
            out.append(f"| `{rel}` | {cell(raw.get('description', ''))} | `{command}` |")
        out.append("")
    return "\n".join(out)
