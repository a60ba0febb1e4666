"""Layer-wise linear probes (paper Tables 9 and 10) and feature baselines (Table 7, C3D-SVR).

A probe fits a regressor from one layer's pooled activations to the judged score on a train
split and reports Spearman's rank correlation on a test split. Doing it for every layer of a
backbone shows how "quality-aware" each depth of the representation is. The train and test
splits may come from different datasets (cross-dataset probes: e.g. a model trained on diving,
probed on gymnastic vault).

Regressors:

* ``ridge``: standardised features, ridge regression with the penalty picked by efficient
  leave-one-out cross-validation on the train split (``RidgeCV``), standardised target.
* ``svr``: standardised features and target, support vector regression (the C3D-SVR baseline
  uses it on the backbone's pooled output features averaged over clips).

The feature side (extraction and caching) lives in
:mod:`aqa_framework.experiments.features`; this module holds the regression, the results table
and :func:`run_probe`, which ties a spec or a trained run to its data.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.errors import AQAError, DataError
from aqa_framework.files import markdown_table, write_text_atomic
from aqa_framework.metrics import pearson, spearman

REGRESSORS = ("ridge", "svr")
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


@dataclass(frozen=True)
class RegressorConfig:
    """Which regressor and its settings.

    Attributes:
        kind: ``"ridge"`` or ``"svr"``.
        alphas: Ridge penalties tried by leave-one-out cross-validation.
        svr_kernel: SVR kernel (``linear``, ``rbf``, ...).
        svr_c: SVR regularisation parameter ``C``.
        svr_epsilon: SVR epsilon tube, in standardised target units.
    """

    kind: str = "ridge"
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    svr_kernel: str = "linear"
    svr_c: float = 1.0
    svr_epsilon: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in REGRESSORS:
            raise AQAError(f"unknown regressor {self.kind!r}; choose from {', '.join(REGRESSORS)}")

    def build(self):
        """A fresh scikit-learn estimator: scaler + regressor, on a standardised target."""
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVR

        if self.kind == "ridge":
            reg = RidgeCV(alphas=self.alphas)
        else:
            reg = SVR(kernel=self.svr_kernel, C=self.svr_c, epsilon=self.svr_epsilon)
        return TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), reg), transformer=StandardScaler()
        )

    def describe(self) -> str:
        """Short description for tables."""
        if self.kind == "ridge":
            return "ridge"
        return f"svr-{self.svr_kernel}(C={self.svr_c:g})"


@dataclass
class ProbeRow:
    """The result of one layer.

    Attributes:
        layer: Layer name.
        dim: Feature dimension.
        n_train: Training samples.
        n_test: Test samples.
        regressor: Regressor description.
        spearman: Spearman's rho on the test split.
        pearson: Pearson's r on the test split.
        alpha: The ridge penalty chosen (NaN for other regressors).
    """

    layer: str
    dim: int
    n_train: int
    n_test: int
    regressor: str
    spearman: float
    pearson: float
    alpha: float = math.nan


def fit_and_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    regressor: RegressorConfig | None = None,
    layer: str = "",
) -> ProbeRow:
    """Fit a regressor on one layer's train features and score it on the test features.

    Raises:
        DataError: If shapes disagree or there are too few samples.
    """
    regressor = regressor or RegressorConfig()
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"layer {layer!r}: train features {x_train.shape} and test features {x_test.shape} "
            "do not have the same dimension"
        )
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"layer {layer!r}: features and scores have different lengths")
    if len(x_train) < 3:
        raise DataError(f"layer {layer!r}: need at least 3 training samples, got {len(x_train)}")
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise DataError(f"layer {layer!r}: features contain NaN or infinite values")
    model = regressor.build()
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    alpha = math.nan
    if regressor.kind == "ridge":
        alpha = float(model.regressor_[-1].alpha_)
    return ProbeRow(
        layer,
        int(x_train.shape[1]),
        len(x_train),
        len(x_test),
        regressor.describe(),
        spearman(pred, y_test),
        pearson(pred, y_test),
        alpha,
    )


@dataclass
class ProbeResult:
    """A probe table: one row per layer.

    Attributes:
        rows: One per layer, shallow to deep.
        title: Table title.
        info: What was probed (model, train data, test data, score), for the report.
    """

    rows: list[ProbeRow]
    title: str = "Linear probes"
    info: dict[str, str] = field(default_factory=dict)

    _COLUMNS = ("layer", "dim", "n_train", "n_test", "regressor", "spearman", "pearson", "alpha")

    def to_csv(self) -> str:
        """The table as CSV."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self._COLUMNS)
        for r in self.rows:
            writer.writerow([_fmt(getattr(r, c), 6) for c in self._COLUMNS])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The table as markdown, with what was probed listed above it."""
        lines = [f"# {self.title}", ""]
        lines += [f"- {k}: {v}" for k, v in self.info.items()]
        align = ["left" if c in {"layer", "regressor"} else "right" for c in self._COLUMNS]
        rows = [[_fmt(getattr(r, c), 4) for c in self._COLUMNS] for r in self.rows]
        lines += ["", markdown_table(self._COLUMNS, rows, align=align)]
        return "\n".join(lines) + "\n"

    def rich_table(self):
        """The table for the terminal."""
        from rich.table import Table

        table = Table(title=self.title)
        for c in self._COLUMNS:
            table.add_column(c, justify="left" if c in {"layer", "regressor"} else "right")
        for r in self.rows:
            table.add_row(*(_fmt(getattr(r, c), 4) for c in self._COLUMNS))
        return table

    def write(self, folder: str | Path, stem: str = "probe") -> list[Path]:
        """Write ``<stem>.csv`` and ``<stem>.md`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{stem}.csv", folder / f"{stem}.md"]
        write_text_atomic(paths[0], self.to_csv())
        write_text_atomic(paths[1], self.to_markdown())
        return paths


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}" if abs(value) >= 1e3 or (
            value != 0 and abs(value) < 1e-3
        ) else f"{value:.{digits}f}"
    return str(value)


def probe_layers(
    train: Any,
    test: Any,
    layers: Sequence[str],
    regressor: RegressorConfig | None = None,
    score: str | None = None,
    test_score: str | None = None,
) -> list[ProbeRow]:
    """Fit and score one regressor per layer.

    Args:
        train: A :class:`~aqa_framework.experiments.features.FeatureSet` of the train split.
        test: The feature set of the test split.
        layers: Layers to probe (each must be in both sets).
        regressor: The regressor (ridge by default).
        score: Score name in the train set (default: its first score).
        test_score: Score name in the test set (default: ``score`` if the test set has it,
            else its first score).
    """
    _, y_train = train.score(score)
    if test_score is None and score is not None and score in test.scores:
        test_score = score
    _, y_test = test.score(test_score)
    return [
        fit_and_score(train.layers[ly], y_train, test.layers[ly], y_test, regressor, ly)
        for ly in layers
    ]


# ---------------------------------------------------------------------------------------------
# end to end: a spec or a run, its data, its weights


@dataclass
class DataChoice:
    """Where the probe's train or test samples come from.

    Attributes:
        data: A data spec mapping (``name``, ``params``, ``batch_size`` ...), or ``None`` for
            the model spec's own ``data``.
        split: The split to read.
        label: How it is shown in the report.
    """

    data: dict[str, Any] | None
    split: str
    label: str = ""


def load_data_choice(path: str | Path | None, split: str) -> DataChoice:
    """Read the data of ``--train-data``/``--test-data``.

    The file is a YAML file with a ``data`` mapping (a whole spec works) or a bare data mapping
    (``name``, ``params``, ...); ``None`` means the model spec's own data.

    Raises:
        aqa_framework.errors.SpecError: If the file is not a usable data spec.
    """
    from aqa_framework.errors import SpecError
    from aqa_framework.spec import load_raw

    if path is None:
        return DataChoice(None, split, f"spec data [{split}]")
    raw = load_raw(path)
    data = raw.get("data", raw)
    if not isinstance(data, dict) or "name" not in data:
        raise SpecError([("data", "expected a data mapping with 'name' (and 'params')")], str(path))
    return DataChoice(dict(data), split, f"{path} [{split}]")


def _resolved_with_data(resolved: Any, data: Mapping[str, Any] | None) -> Any:
    """The resolved spec, with its ``data`` replaced (and re-validated) if given."""
    if data is None:
        return resolved
    from aqa_framework.resolve import load

    raw = resolved.spec.model_dump(mode="json")
    raw["data"] = dict(data)
    return load(raw, label="--train-data/--test-data")


def _loader(resolved: Any, split: str, device: str = "cpu"):
    from torch.utils.data import DataLoader

    from aqa_framework.data.open import open_data
    from aqa_framework.data.skipping import collate
    from aqa_framework.engine.loaders import resolve_num_workers

    ds = open_data(resolved, training=False, split=split).test
    d = resolved.spec.data
    return ds, DataLoader(
        ds,
        batch_size=d.eval_batch_size or d.batch_size,
        shuffle=False,
        num_workers=resolve_num_workers(d.num_workers, device),
        collate_fn=collate,
    )


def split_features(
    backbone: Any,
    model_hash: str,
    resolved: Any,
    split: str,
    layers: Sequence[str],
    pooling: Any,
    cache: Any,
    device: str = "cpu",
) -> Any:
    """Features of one split, from the cache where possible.

    Args:
        backbone: The backbone, with its weights loaded.
        model_hash: Fingerprint of those weights.
        resolved: Resolved spec whose ``data`` names the dataset.
        split: Split to read.
        layers: Layers wanted.
        pooling: A :class:`~aqa_framework.experiments.features.Pooling`.
        cache: A :class:`~aqa_framework.experiments.features.FeatureCache`.
        device: Where to run the backbone.
    """
    from aqa_framework.experiments.features import (
        FeatureKey,
        cached_features,
        extract_features,
        fingerprint_data,
    )

    comp = resolved.dataset
    key = FeatureKey(model_hash, fingerprint_data(comp.name, comp.params), split, pooling.tag)

    def compute(missing: list[str]):
        _, loader = _loader(resolved, split, device)
        return extract_features(backbone, loader, missing, pooling, device)

    info = {"dataset": comp.name, "params": comp.params.model_dump(mode="json")}
    features, _ = cached_features(cache, key, layers, compute, info)
    return features


@dataclass
class ProbeOptions:
    """How :func:`run_probe` extracts features and labels its table.

    Attributes:
        pooling: A :class:`~aqa_framework.experiments.features.Pooling` (global average by default).
        cache: A :class:`~aqa_framework.experiments.features.FeatureCache` (none by default).
        device: Where to run the backbone.
        score: Score to regress (default: each dataset's first score).
        title: Table title.
        model_label: How the model is named in the report.
    """

    pooling: Any = None
    cache: Any = None
    device: str = "cpu"
    score: str | None = None
    title: str = "Linear probes"
    model_label: str = ""


def run_probe(
    resolved: Any,
    backbone: Any,
    *,
    layers: Sequence[str] | None = None,
    train: DataChoice | None = None,
    test: DataChoice | None = None,
    regressor: RegressorConfig | None = None,
    **options: Any,
) -> ProbeResult:
    """Probe ``backbone``'s layers: features of the train and test data, one regressor per layer.

    Args:
        resolved: The model's resolved spec (its ``data`` is the default train/test data).
        backbone: The backbone with the weights to probe.
        layers: Layers (default: the backbone's declared probe points).
        train: Train samples (default: the spec's data, split ``train``).
        test: Test samples (default: the spec's data, split ``test``).
        regressor: Ridge by default.
        **options: The fields of :class:`ProbeOptions`, by name: ``pooling``, ``cache``,
            ``device``, ``score``, ``title``, ``model_label``.

    Raises:
        DataError: If train and test are the same split of the same data, or share samples.
        TypeError: For an option :class:`ProbeOptions` does not have.
    """
    from aqa_framework.experiments.features import (
        FeatureCache,
        Pooling,
        fingerprint_module,
        resolve_layers,
    )

    opts = ProbeOptions(**options)
    names = resolve_layers(backbone, layers)
    opts.pooling = opts.pooling or Pooling()
    opts.cache = opts.cache or FeatureCache(None)
    train = train or DataChoice(None, "train", "spec data [train]")
    test = test or DataChoice(None, "test", "spec data [test]")
    if train.data is None and test.data is None and train.split == test.split:
        raise DataError(f"train and test are the same split ({train.split!r}) of the same data")
    model_hash = fingerprint_module(backbone)
    sets = [
        split_features(
            backbone,
            model_hash,
            _resolved_with_data(resolved, choice.data),
            choice.split,
            names,
            opts.pooling,
            opts.cache,
            opts.device,
        )
        for choice in (train, test)
    ]
    overlap = set(sets[0].keys) & set(sets[1].keys) if train.data == test.data else set()
    if overlap:
        raise DataError(
            f"{len(overlap)} samples are in both the train and the test data "
            f"(e.g. {sorted(overlap)[0]}); a probe must be scored on unseen samples"
        )
    rows = probe_layers(sets[0], sets[1], names, regressor, opts.score)
    info = {
        "model": opts.model_label or resolved.backbone.name,
        "weights": model_hash,
        "train": f"{train.label} ({len(sets[0])} samples)",
        "test": f"{test.label} ({len(sets[1])} samples)",
        "pooling": opts.pooling.tag,
    }
    return ProbeResult(rows, opts.title, info)


# ---------------------------------------------------------------------------------------------
# what to probe: a spec (fresh or pretrained backbone) or a trained run


@dataclass
class ProbeTarget:
    """The model side of a probe.

    Attributes:
        resolved: The resolved spec whose data is the default train/test data.
        backbone: The backbone with its weights.
        label: How the model is named in the report.
        run_dir: The run folder the weights came from (where results go by default).
    """

    resolved: Any
    backbone: Any
    label: str
    run_dir: Path | None = None


def load_probe_target(
    source: str | Path,
    checkpoint: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> ProbeTarget:
    """Resolve what ``aqa probe SOURCE [--checkpoint RUN]`` means.

    * ``SOURCE`` a run folder (or checkpoint folder): its spec and its weights (the ``best``
      checkpoint, else ``last``).
    * ``SOURCE`` a spec file: its data and its backbone, freshly built (with the backbone's
      ``pretrained`` weights if it names any), or, with ``--checkpoint``, the trained
      backbone of that run (whose own spec defines the architecture).

    Args:
        source: A spec file or a run folder.
        checkpoint: A run or checkpoint folder whose backbone weights to use.
        overrides: ``--set`` overrides of the spec's values (e.g. ``data.params.root=...``).

    Raises:
        aqa_framework.errors.CheckpointError: If the weights cannot be read or do not fit.
        aqa_framework.errors.SpecError: If the spec is invalid.
    """
    from aqa_framework.resolve import load, run_base_dir

    source = Path(source)
    run_dir: Path | None = None
    if source.is_dir():
        checkpoint = checkpoint or source
        run_dir = source
        ck = _load_checkpoint(checkpoint)
        resolved = load(
            ck.spec,
            overrides,
            base_dir=run_base_dir(ck.path),
            label=f"{source} (spec of the run)",
        )
    else:
        resolved = load(source, overrides)
        ck = _load_checkpoint(checkpoint) if checkpoint is not None else None
        if checkpoint is not None:
            run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else None
    if ck is None:
        backbone = build_backbone(resolved)
        pretrained = resolved.backbone.cls.pretrained_file(resolved.backbone.params)
        weights = f"weights {pretrained}" if pretrained else "untrained"
        label = f"{resolved.backbone.name} ({weights})"
        return ProbeTarget(resolved, backbone, label, None)
    model_resolved = load(
        ck.spec, base_dir=run_base_dir(ck.path), label=f"{ck.path} (spec of the checkpoint)"
    )
    backbone = build_backbone(model_resolved, load_weights=False)
    from aqa_framework.engine.checkpoint import load_weights

    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in ck.model_state.items() if k.startswith(prefix)}

    load_weights(backbone, state, f"{ck.path} (backbone)")
    label = f"{model_resolved.backbone.name} from {ck.path} (epoch {ck.epoch})"
    return ProbeTarget(resolved, backbone, label, run_dir)


def _load_checkpoint(path: str | Path):
    from aqa_framework.engine.checkpoint import load_checkpoint

    return load_checkpoint(path, training_state=False)


def build_backbone(resolved: Any, load_weights: bool = True) -> Any:
    """The spec's backbone alone (no heads, no data), with its pretrained weights if any.

    Args:
        resolved: A resolved spec.
        load_weights: Load the file named by the backbone's ``pretrained`` parameter.
    """
    comp = resolved.backbone
    backbone = comp.cls(comp.params)
    pretrained = comp.cls.pretrained_file(comp.params)
    if load_weights and pretrained:
        backbone.load_pretrained(pretrained)
    return backbone
