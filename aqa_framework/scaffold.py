"""``aqa plugins new``: scaffold a plugin package that installs and passes its tests as is.

The package has a ``pyproject.toml`` with the ``aqa`` entry point, a plugin module with the
hook implementations, a small synthetic dataset, a score head, an example spec, tests written
with :mod:`aqa_framework.testing`, and a README. Torch-free (templates are plain strings).
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from aqa_framework import __version__
from aqa_framework.errors import AQAError

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")
_RESERVED = {"builtin", "aqa", "aqa_framework", "testing"}

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "${dist}"
version = "0.1.0"
description = "aqa-framework plugin: ${name} components."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["aqa-framework>=${core_version}"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# The entry-point name ("${name}") is the prefix of every component name: ${name}.<x>.
[project.entry-points.aqa]
${name} = "${package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_README = '''\
# ${dist}

An [aqa-framework](https://aqa-framework.readthedocs.io) plugin. It registers:

| kind | name | what |
|---|---|---|
| dataset | `${name}.synthetic` | SYNTHETIC clips whose score is their brightness |
| head | `${name}.score` | regresses one score of the dataset, reports Spearman and MAE |

## Install and test

```bash
pip install -e .
python -m pytest -q
aqa plugins list '${name}.*'
```

## Run

```bash
aqa validate spec.yaml
aqa run spec.yaml --set train.epochs=1
```

The data of `${name}.synthetic` is SYNTHETIC (random clips); it exists so the package works
out of the box. Write your own dataset next to it (see the plugin guide of aqa-framework) and
point `spec.yaml` at it.
'''

_INIT = '''\
"""${dist}: an aqa-framework plugin."""

__version__ = "0.1.0"
'''

_PLUGIN = '''\
"""Hook implementations: the module the ``aqa`` entry point names.

Component modules are imported inside the hooks so that listing plugins stays cheap.
"""

from __future__ import annotations

from aqa_framework import hookimpl


@hookimpl
def register_datasets(register):
    """Register this plugin's datasets."""
    from ${package}.dataset import SyntheticDataset

    register(SyntheticDataset)


@hookimpl
def register_heads(register):
    """Register this plugin's task heads."""
    from ${package}.head import ScoreHead

    register(ScoreHead)
'''

_DATASET = '''\
"""A tiny SYNTHETIC dataset: random clips whose score is their mean brightness."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from aqa_framework.errors import DataError
from aqa_framework.interfaces import VideoDataset
from aqa_framework.targets import ScoreTarget, Targets
from pydantic import BaseModel, ConfigDict, Field


class SyntheticDataset(VideoDataset):
    """Synthetic clips whose score (0-10) is their brightness; replace with real data."""

    name: ClassVar[str] = "${name}.synthetic"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    class Params(BaseModel):
        """Parameters of the synthetic dataset."""

        model_config = ConfigDict(extra="forbid")

        num_samples: int = Field(16, ge=2, description="Samples per split.")
        num_clips: int = Field(2, ge=1, description="Clips per sample (N).")
        frames: int = Field(16, ge=1, description="Frames per clip (T).")
        size: int = Field(32, ge=8, description="Frame height and width.")
        seed: int = Field(0, ge=0, description="Seed of the generated clips.")

    def __init__(self, params: BaseModel, split: str = "train", train: bool = False) -> None:
        super().__init__(params, split, train)
        if split not in self.splits:
            raise DataError(f"dataset '{self.name}' has no split '{split}' {self.splits}")

    @property
    def targets(self) -> Targets:
        """One score, ``score``, from 0 to 10."""
        return Targets(scores={"score": ScoreTarget(low=0.0, high=10.0)})

    @property
    def keys(self) -> list[str]:
        """Sample keys, ``<split>-NNNN``."""
        return [f"{self.split}-{i:04d}" for i in range(len(self))]

    def __len__(self) -> int:
        """Number of samples in the split."""
        return self.params.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample: a clip stack whose brightness encodes its score."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        p = self.params
        split_id = self.splits.index(self.split)
        gen = torch.Generator().manual_seed(p.seed * 1_000_003 + split_id * 100_000 + index)
        score = float(10.0 * torch.rand((), generator=gen))
        shape = (p.num_clips, 3, p.frames, p.size, p.size)
        video = (score / 10.0) * 2 - 1 + 0.1 * torch.randn(shape, generator=gen)
        return {"key": self.keys[index], "video": video, "scores": {"score": round(score, 3)}}
'''

_HEAD = '''\
"""A score head: regresses one score of the dataset from video features."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from aqa_framework.interfaces import TaskHead
from aqa_framework.metrics import spearman
from aqa_framework.targets import Targets
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn


class ScoreHead(TaskHead):
    """Regresses one score (MSE on the score scaled to its range); reports Spearman and MAE."""

    name: ClassVar[str] = "${name}.score"
    consumes: ClassVar[str] = "video"
    target_kind: ClassVar[str] = "scores"

    class Params(BaseModel):
        """Parameters of the score head."""

        model_config = ConfigDict(extra="forbid")

        score: str = Field("score", description="Which score of the dataset to learn.")
        hidden: int = Field(32, ge=1, description="Width of the hidden layer.")

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """The dataset must provide the score named by ``params.score``."""
        if params.score in targets.scores:
            return None
        return (
            f"head '{cls.name}' learns the score '{params.score}', but the dataset provides "
            f"{targets.describe()}"
        )

    def __init__(self, params: BaseModel, in_shape: tuple[int, ...], targets: Targets) -> None:
        super().__init__(params, in_shape, targets)
        target = targets.scores[params.score]
        self.low, self.span = target.low, target.high - target.low
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.LayerNorm(math.prod(in_shape)),  # features of any scale
            nn.Linear(math.prod(in_shape), params.hidden),
            nn.ReLU(),
            nn.Linear(params.hidden, 1),
        )

    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """The score of each sample, scaled to [0, 1] of the score range."""
        return {"unit": self.mlp(features).float().squeeze(1)}

    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Mean squared error in units of the score range."""
        true = torch.as_tensor(batch["scores"][self.params.score], device=outputs["unit"].device)
        return F.mse_loss(outputs["unit"], (true.float() - self.low) / self.span)

    def predict(self, outputs: dict) -> dict[str, list]:
        """Scores in points."""
        points = outputs["unit"].detach().cpu() * self.span + self.low
        return {self.params.score: [float(x) for x in points]}

    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The judged scores."""
        return {self.params.score: [float(x) for x in batch["scores"][self.params.score]]}

    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Spearman correlation and mean absolute error of the score."""
        pred, true = predictions[self.params.score], references[self.params.score]
        mae = sum(abs(p - t) for p, t in zip(pred, true, strict=True)) / len(true)
        return {"spearman": spearman(pred, true), "mae": mae}
'''

_SPEC = '''\
# A CPU-sized run on the SYNTHETIC data of ${dist}: aqa run spec.yaml
description: ${name} score head on synthetic clips with a small C3D.
model:
  backbone: {name: c3d, params: {width: 0.0625}}
  aggregator: {name: average}
  heads:
    score: {name: ${name}.score}
data:
  name: ${name}.synthetic
  params: {num_samples: 16, num_clips: 2, frames: 16, size: 32}
  batch_size: 4
train:
  epochs: 2
  optimizer: {name: adam, lr: 0.001}
  select_metric: score.spearman
'''

_TESTS = '''\
"""Contract tests and a training run, written with aqa_framework.testing."""

from pathlib import Path

from aqa_framework import testing

from ${package}.dataset import SyntheticDataset
from ${package}.head import ScoreHead

SPEC = Path(__file__).resolve().parents[1] / "spec.yaml"


def test_dataset_follows_the_contract():
    for split in SyntheticDataset.splits:
        ds = SyntheticDataset(SyntheticDataset.parse_params({"num_samples": 4}), split)
        testing.check_dataset(ds, max_samples=2)


def test_head_follows_the_contract():
    targets = SyntheticDataset(SyntheticDataset.parse_params({})).targets
    metrics = testing.check_head(ScoreHead, targets)
    assert set(metrics) == {"spearman", "mae"}


def test_head_explains_a_missing_score():
    params = ScoreHead.parse_params({"score": "difficulty"})
    assert "difficulty" in ScoreHead.check_targets(params, testing.tiny_targets())


def test_components_are_registered():
    testing.check_registered("${name}.synthetic", "dataset")
    testing.check_registered("${name}.score", "head")


def test_example_spec_trains(run_spec):
    # run_spec (a fixture of aqa-framework's pytest plugin) trains on the CPU under tmp_path
    run = run_spec(SPEC, "train.epochs=1", "data.params.num_samples=4")
    assert "score.spearman" in run.metrics
    assert len(run.predictions) == 4
'''

TEMPLATES: dict[str, str] = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "spec.yaml": _SPEC,
    "src/${package}/__init__.py": _INIT,
    "src/${package}/plugin.py": _PLUGIN,
    "src/${package}/dataset.py": _DATASET,
    "src/${package}/head.py": _HEAD,
    "tests/test_${package}.py": _TESTS,
}
"""Relative path -> file template (``string.Template`` placeholders)."""


def package_names(name: str) -> dict[str, str]:
    """The names a plugin called ``name`` uses.

    Args:
        name: Plugin name (the entry-point name and component prefix), e.g. ``skating``.

    Returns:
        ``name``, ``dist`` (``aqa-skating``), ``package`` (``aqa_skating``) and
        ``core_version``.

    Raises:
        AQAError: If the name is not a lower-case identifier or is reserved.
    """
    if not _NAME_RE.match(name):
        raise AQAError(
            f"plugin name {name!r} must be lower case letters and digits, optionally joined "
            "by '-' or '_', starting with a letter (e.g. 'skating' or 'figure-skating')"
        )
    if name in _RESERVED:
        raise AQAError(f"plugin name {name!r} is reserved; choose another")
    return {
        "name": name,
        "dist": f"aqa-{name.replace('_', '-')}",
        "package": f"aqa_{name.replace('-', '_')}",
        "core_version": __version__,
    }


def render(name: str) -> dict[str, str]:
    """The files of a new plugin package, without writing them.

    Args:
        name: Plugin name.

    Returns:
        Relative path -> file content.
    """
    names = package_names(name)
    return {
        Template(path).substitute(names): Template(text).substitute(names)
        for path, text in TEMPLATES.items()
    }


def create_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write a new plugin package ``<parent>/aqa-<name>``.

    Args:
        name: Plugin name: the entry-point name and the prefix of its components.
        parent: Folder to create the package in.

    Returns:
        The package folder.

    Raises:
        AQAError: If the name is invalid or the folder exists.
    """
    files = render(name)
    root = Path(parent) / package_names(name)["dist"]
    if root.exists():
        raise AQAError(f"{root} already exists; choose another name or --dir")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
