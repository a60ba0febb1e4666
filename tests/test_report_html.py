"""report.html: one self-contained page, loaded in headless Chromium and read back."""

from __future__ import annotations

import copy
import csv
import re
import shutil
import subprocess

import pytest

from aqa_framework import testing
from aqa_framework.engine import runner
from aqa_framework.registry import reset_registry
from aqa_framework.resolve import resolve
from aqa_framework.spec import parse_spec

RAW = {
    "model": {
        "backbone": {"name": "c3d", "params": {"width": 0.0625}},
        "aggregator": {"name": "average", "params": {"shared_fc": 8}},
        "heads": {
            "score": {"name": "score"},
            "caption": {
                "name": "caption",
                "params": {"hidden": 8, "word_dim": 4, "metrics": ["bleu"]},
                "loss_weight": 0.01,
            },
        },
    },
    "data": {
        "name": "testing.tiny",
        "params": {"num_samples": 6, "num_clips": 1, "frames": 16, "size": 32},
        "batch_size": 3,
    },
    "train": {"epochs": 2, "optimizer": {"lr": 0.003}},
    "eval": {"report_samples": 2},
    "seed": 4,
}


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    reset_registry(testing.registry_with("testing", [testing.TinyVideoDataset]))
    folder = tmp_path_factory.mktemp("html") / "run"
    runner.run_training(resolve(parse_spec(copy.deepcopy(RAW)), source="tiny.yaml"), run_dir=folder)
    yield folder
    reset_registry(None)


def test_report_html_is_self_contained(finished_run):
    html = (finished_run / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert '<img alt="predicted vs judged scores" src="data:image/png;base64,' in html
    assert "<svg" in html and "<polyline" in html
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(link.startswith("data:") for link in links)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


@pytest.mark.skipif(
    chromium() is None,
    reason="no chromium binary found (apt-get install -y chromium) to render report.html",
)
def test_report_html_renders_in_headless_chromium(finished_run):
    page = finished_run / "report.html"
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "Run report: run" in text
    assert "Metrics on the test split (6 samples)" in text
    assert "score.spearman" in text and "caption.bleu" in text
    assert "generated commentary" in text and "reference commentary" in text
    assert "Predictions" in text and "score.final_score (reference)" in text
    assert "test-0000" in text and "test-0005" in text  # every sample
    assert "Training curves" in text and "training losses" in text and "train loss" in text
    with (finished_run / "predictions.csv").open(newline="") as f:
        first = next(csv.DictReader(f))
    # the generated commentary next to the reference one, as the page renders them
    row = re.search(r"<tr><td>test-0000</td><td>([^<]*)</td><td>([^<]*)</td></tr>", dom)
    assert row is not None
    assert (row.group(1), row.group(2)) == (first["caption.caption"], first["caption.caption.ref"])
