"""Layer activations of a backbone, pooled per video, computed once and cached on disk.

:func:`extract_features` runs a backbone over a dataset split with forward hooks on chosen
layers (``Backbone.layers`` lists the meaningful ones), pools each activation to a vector per
clip and averages the clips of a video. :class:`FeatureCache` stores the result under a key
made of the weights' fingerprint, the dataset spec's fingerprint, the split, the layer and the
pooling, so probes and regressors (``aqa probe``, ``aqa baseline svr``) reuse what was computed
before. Arrays are ``.npy`` files written atomically (temporary file, then rename).

Layer names are dotted submodule paths of the backbone (``conv3``, ``features.4``); the
pseudo-layer ``output`` is the backbone's own output, flattened without pooling (e.g. C3D
``pool5``, 8192 values per clip).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.errors import AQAError, DataError
from aqa_framework.files import atomic_file, write_json_atomic

OUTPUT_LAYER = "output"
"""Pseudo-layer name: the backbone's output itself, flattened (no pooling)."""

_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def default_cache_dir() -> Path:
    """``$AQA_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/aqa-framework/features``."""
    env = os.environ.get("AQA_FEATURE_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "aqa-framework" / "features"


# ---------------------------------------------------------------------------------------------
# fingerprints


def fingerprint_module(module: Any) -> str:
    """A fingerprint of a module's weights and buffers (names, shapes, dtypes and bytes).

    Args:
        module: A ``torch.nn.Module``.
    """
    import torch

    h = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fingerprint_data(name: str, params: Any, extra: Mapping[str, Any] | None = None) -> str:
    """A fingerprint of a dataset spec (component name and validated params).

    Args:
        name: Dataset registry name.
        params: Its params (a pydantic model or a mapping).
        extra: Anything else that changes the samples (e.g. a subset).
    """
    if hasattr(params, "model_dump"):
        params = params.model_dump(mode="json")
    doc = {"name": name, "params": params, **(extra or {})}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


# ---------------------------------------------------------------------------------------------
# pooling


@dataclass(frozen=True)
class Pooling:
    """How an activation ``(M, C, *S)`` becomes one vector per clip.

    Attributes:
        size: ``None`` for global average pooling (``C`` values), else the adaptive average
            pooling output size over the trailing dims, e.g. ``(1, 2, 2)`` gives ``C*4`` values.
    """

    size: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str | None) -> Pooling:
        """``"avg"`` (or empty) for global pooling, ``"1,2,2"`` for adaptive pooling.

        Raises:
            AQAError: For anything else.
        """
        if text is None or text.strip().lower() in {"", "avg", "global"}:
            return cls(None)
        try:
            size = tuple(int(p) for p in text.replace("x", ",").split(","))
        except ValueError:
            raise AQAError(f"pooling {text!r} is not 'avg' or sizes like '1,2,2'") from None
        if not size or any(s < 1 for s in size):
            raise AQAError(f"pooling sizes must be positive, got {text!r}")
        return cls(size)

    @property
    def tag(self) -> str:
        """Short name used in cache file names (``avg`` or ``ap1x2x2``)."""
        return "avg" if self.size is None else "ap" + "x".join(map(str, self.size))

    def __call__(self, act: Any) -> Any:
        """Pool a ``(M, C, *S)`` tensor into ``(M, D)``."""
        import torch.nn.functional as F

        if act.dim() <= 2:
            return act.reshape(act.shape[0], -1)
        if self.size is None:
            return act.flatten(2).mean(dim=2)
        spatial = act.dim() - 2
        if len(self.size) != spatial or spatial > 3:
            raise AQAError(
                f"pooling size {self.size} does not fit an activation with {spatial} trailing "
                f"dims (shape {tuple(act.shape)})"
            )
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
        return pool[spatial](act.float(), self.size).flatten(1)


# ---------------------------------------------------------------------------------------------
# extraction


@dataclass
class FeatureSet:
    """Video-level features of one dataset split.

    Attributes:
        keys: Sample keys, in dataset order.
        scores: Score name -> ``(n,)`` float array of judged scores (in points).
        layers: Layer name -> ``(n, D)`` float32 array.
    """

    keys: list[str]
    scores: dict[str, np.ndarray]
    layers: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def score(self, name: str | None = None) -> tuple[str, np.ndarray]:
        """A score column: ``name`` or, if ``None``, the first one.

        Raises:
            DataError: If the split has no such score.
        """
        if not self.scores:
            raise DataError("the dataset provides no scores to regress")
        if name is None:
            name = next(iter(self.scores))
        if name not in self.scores:
            raise DataError(f"no score {name!r}; the dataset provides {', '.join(self.scores)}")
        return name, self.scores[name]


def resolve_layers(backbone: Any, layers: Sequence[str] | None) -> list[str]:
    """Check requested layer names against the backbone (default: its declared probe points).

    Raises:
        AQAError: If a layer is not a submodule, or none was requested and none is declared.
    """
    declared = list(getattr(backbone, "layers", ()) or ())
    names = list(layers) if layers else declared
    if not names:
        raise AQAError(
            f"backbone '{getattr(backbone, 'name', type(backbone).__name__)}' declares no probe "
            "layers; name them with --layers (dotted submodule names, or 'output')"
        )
    modules = dict(backbone.named_modules())
    bad = [n for n in names if n != OUTPUT_LAYER and n not in modules]
    if bad:
        hint = ", ".join(declared) if declared else ", ".join(k for k in modules if k)[:300]
        raise AQAError(f"backbone has no layer {', '.join(map(repr, bad))}; try: {hint}, output")
    return names


def extract_features(
    backbone: Any,
    loader: Iterable[Mapping[str, Any]],
    layers: Sequence[str],
    pooling: Pooling | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Run ``backbone`` over every batch and collect pooled, clip-averaged activations.

    Args:
        backbone: A :class:`~aqa_framework.interfaces.Backbone` (put in eval mode here).
        loader: Batches as collated by the default collate: ``video`` ``(B, N, C, T, H, W)``,
            ``key`` (list), ``scores`` (name -> ``(B,)``).
        layers: Submodule names (or ``"output"``) to record.
        pooling: How each activation becomes a vector per clip (global average by default).
        device: Where to run.
        progress: Called with the number of samples of each finished batch.

    Returns:
        The features, one row per sample.
    """
    import torch

    pooling = pooling or Pooling()
    backbone.eval().to(device)
    captured: dict[str, Any] = {}
    handles = _capture_layers(backbone, layers, pooling, captured)
    keys: list[str] = []
    scores: dict[str, list[float]] = {}
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    try:
        with torch.inference_mode():
            for batch in loader:
                if "video" not in batch:  # every sample of the batch was skipped
                    continue
                video = _checked_video(batch)
                b, n = video.shape[:2]
                captured.clear()
                out = backbone(video.flatten(0, 1).to(device, torch.float32))
                for name in layers:
                    per_video = _activation(name, out, captured).float().reshape(b, n, -1)
                    chunks[name].append(per_video.mean(dim=1).cpu().numpy().astype(np.float32))
                keys.extend(str(k) for k in batch["key"])
                for sname, vals in (batch.get("scores") or {}).items():
                    scores.setdefault(sname, []).extend(float(v) for v in vals)
                if progress:
                    progress(b)
    finally:
        for h in handles:
            h.remove()
    if not keys:
        raise DataError("the dataset split is empty; nothing to extract")
    return FeatureSet(
        keys,
        {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()},
        {n: np.concatenate(c) for n, c in chunks.items()},
    )


def _capture_layers(
    backbone: Any, layers: Sequence[str], pooling: Pooling, captured: dict[str, Any]
) -> list[Any]:
    """Forward hooks storing each named layer's pooled activation in ``captured``."""
    modules = dict(backbone.named_modules())
    handles = []
    for name in layers:
        if name == OUTPUT_LAYER:
            continue

        def hook(_mod, _inp, out, name=name):
            act = out[0] if isinstance(out, tuple | list) else out
            captured[name] = pooling(act)  # pooled at once: later in-place ops cannot alter it

        handles.append(modules[name].register_forward_hook(hook))
    return handles


def _checked_video(batch: Mapping[str, Any]) -> Any:
    """The batch's clips, ``(B, N, C, T, H, W)``."""
    video = batch["video"]
    if video.dim() != 6:
        raise DataError(
            f"expected batch['video'] of shape (B, N, C, T, H, W), got {tuple(video.shape)}"
        )
    return video


def _activation(name: str, out: Any, captured: Mapping[str, Any]) -> Any:
    """One clip-level activation per clip: the backbone's output or a captured layer's."""
    if name == OUTPUT_LAYER:
        return out.reshape(out.shape[0], -1)
    if name not in captured:
        raise AQAError(f"layer {name!r} was not called in the forward pass")
    return captured[name]


# ---------------------------------------------------------------------------------------------
# cache


@dataclass(frozen=True)
class FeatureKey:
    """What identifies a cached feature set (one layer is one file inside it).

    Attributes:
        model: Fingerprint of the weights (:func:`fingerprint_module`).
        data: Fingerprint of the dataset spec (:func:`fingerprint_data`).
        split: Dataset split.
        pooling: :attr:`Pooling.tag`.
    """

    model: str
    data: str
    split: str
    pooling: str = "avg"

    def folder(self, root: Path) -> Path:
        """Folder of this key under a cache root."""
        return root / self.model / f"{self.data}-{_SAFE.sub('_', self.split)}"

    def layer_file(self, root: Path, layer: str) -> Path:
        """The ``.npy`` file of one layer."""
        tag = "output" if layer == OUTPUT_LAYER else f"{_SAFE.sub('_', layer)}@{self.pooling}"
        return self.folder(root) / f"{tag}.npy"


class FeatureCache:
    """Feature sets on disk, keyed by :class:`FeatureKey` and layer.

    Args:
        root: Cache folder (created on first write); ``None`` disables caching.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def load(self, key: FeatureKey, layers: Sequence[str]) -> FeatureSet | None:
        """The cached layers that exist (``None`` if the key was never stored).

        Layers missing from the cache are absent from the returned set's ``layers``.
        """
        if self.root is None:
            return None
        meta_path = key.folder(self.root) / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        found: dict[str, np.ndarray] = {}
        for layer in layers:
            path = key.layer_file(self.root, layer)
            if path.is_file():
                arr = np.load(path, allow_pickle=False)
                if arr.shape[0] == len(meta["keys"]):
                    found[layer] = arr
        scores = {k: np.asarray(v, dtype=np.float64) for k, v in meta["scores"].items()}
        return FeatureSet(list(meta["keys"]), scores, found)

    def save(self, key: FeatureKey, features: FeatureSet, info: Mapping[str, Any] | None = None):
        """Store every layer of ``features`` (atomic per file)."""
        if self.root is None:
            return
        folder = key.folder(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "keys": features.keys,
            "scores": {k: v.tolist() for k, v in features.scores.items()},
            "split": key.split,
            **(dict(info) if info else {}),
        }
        write_json_atomic(folder / "meta.json", meta, indent=None, newline=False)
        for layer, arr in features.layers.items():
            with atomic_file(key.layer_file(self.root, layer), "wb") as f:
                np.save(f, arr)


def cached_features(
    cache: FeatureCache,
    key: FeatureKey,
    layers: Sequence[str],
    compute: Callable[[list[str]], FeatureSet],
    info: Mapping[str, Any] | None = None,
) -> tuple[FeatureSet, list[str]]:
    """Features of ``layers``, computing (and storing) only those not cached yet.

    Args:
        cache: The cache.
        key: What the features belong to.
        layers: Layers wanted.
        compute: Extracts the given layers (one pass over the data).
        info: Extra metadata stored with a new entry.

    Returns:
        The feature set with every requested layer, and the layers that had to be computed.
    """
    have = cache.load(key, layers)
    missing = [ly for ly in layers if have is None or ly not in have.layers]
    if not missing:
        assert have is not None
        return have, []
    fresh = compute(missing)
    if have is not None and have.keys != fresh.keys:
        have = None  # stale entry (dataset changed under the same spec): recompute everything
        missing = list(layers)
        fresh = compute(missing)
    cache.save(key, fresh, info)
    merged = dict(have.layers) if have is not None else {}
    merged.update(fresh.layers)
    return FeatureSet(fresh.keys, fresh.scores, {ly: merged[ly] for ly in layers}), missing
