"""Files of pre-extracted clip features: one ``.npy`` / ``.npz`` array ``(L, D)`` per video.

A folder written by ``aqa features extract`` holds one feature file per video and a
``manifest.json`` saying how they were made (:data:`MANIFEST`: backbone, its params, the
weight file's SHA-256, clip length, stride, feature size and each video's status), so a
feature dataset knows ``D`` without opening a file and an interrupted extraction resumes
where it stopped. Release feature files (rhythmic gymnastics' ``<Video_Name>.npy``) need no
manifest.

Torch-free: the CLI may import it at startup.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.errors import DataError

__all__ = [
    "MANIFEST",
    "crop_or_pad",
    "feature_dim_from_manifest",
    "load_feature_file",
    "read_manifest",
    "sha256_file",
]

MANIFEST = "manifest.json"
"""Name of the manifest of a feature folder."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a feature folder, ``None`` if it has none.

    Raises:
        DataError: If the manifest exists but is not a JSON object.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc} (delete it to extract again)") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path} is not a feature manifest (not a JSON object)")
    return doc


def feature_dim_from_manifest(folder: str | Path) -> int | None:
    """``D`` as the folder's manifest records it, ``None`` without a manifest or a size."""
    try:
        doc = read_manifest(folder)
    except DataError:
        return None
    dim = (doc or {}).get("feature_dim")
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def _read_array(path: Path, npz_key: str | None) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if npz_key is None:
                if len(names) != 1:
                    raise DataError(
                        f"feature file {path} holds {len(names)} arrays ({', '.join(names)}); "
                        "name the one to read with the dataset's npz_key"
                    )
                npz_key = names[0]
            if npz_key not in names:
                raise DataError(
                    f"feature file {path} has no array {npz_key!r} (arrays: "
                    f"{', '.join(names)}); fix npz_key"
                )
            return np.asarray(archive[npz_key])
    return np.load(path, allow_pickle=False)


def load_feature_file(
    path: str | Path, npz_key: str | None = None, feature_dim: int | None = None
) -> np.ndarray:
    """Read one video's clip features and check them.

    Args:
        path: A ``.npy`` file, or a ``.npz`` archive.
        npz_key: The array of a ``.npz`` to read (``None``: its only array).
        feature_dim: The ``D`` every file must have (``None``: any).

    Returns:
        ``float32 (L, D)`` with ``L >= 1``.

    Raises:
        DataError: If the file is missing or unreadable, or the array is not a finite
            ``(L, D)`` matrix of the expected ``D``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}")
    try:
        arr = _read_array(path, npz_key)
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read feature file {path}: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(
            f"feature file {path} holds an array of shape {tuple(arr.shape)}; expected "
            "(clips, features) with at least one clip"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"feature file {path} holds {arr.dtype} values, not real numbers")
    if feature_dim is not None and arr.shape[1] != feature_dim:
        raise DataError(
            f"feature file {path} has {arr.shape[1]} features per clip, but the dataset's "
            f"features have {feature_dim} (feature_dim, or the first file); extract all "
            "videos with the same backbone"
        )
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise DataError(
            f"feature file {path}: clip {first} (of {arr.shape[0]}) has non-finite values; "
            "extract it again"
        )
    return arr


def crop_or_pad(
    features: np.ndarray, length: int, start: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A window of ``length`` clips: cut from a longer sequence, zero-padded if shorter.

    Args:
        features: ``(L, D)``.
        length: Clips in the window.
        start: First clip of the window when ``L > length`` (``None``: the centred window).

    Returns:
        ``(length, D)`` features and the ``(length,)`` bool mask of real clips.
    """
    total = features.shape[0]
    mask = np.zeros(length, dtype=bool)
    if total >= length:
        first = (total - length) // 2 if start is None else int(start)
        if not 0 <= first <= total - length:
            raise ValueError(f"window start {first} outside 0..{total - length}")
        mask[:] = True
        return features[first : first + length], mask
    out = np.zeros((length, features.shape[1]), dtype=features.dtype)
    out[:total] = features
    mask[:total] = True
    return out, mask
