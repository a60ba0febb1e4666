"""Split nested training state into JSON and tensors, and join it back (never pickle).

Optimizer, scheduler, gradient-scaler and RNG states are trees of dicts, lists, tuples,
numbers, strings, tensors and numpy arrays. :func:`encode` turns such a tree into a JSON-able
tree plus a flat ``{name: tensor}`` mapping (saved with safetensors); :func:`decode` reverses
it. NaN and infinite numbers (a plateau scheduler's initial ``best`` is ``inf``) are written as
``{"__float__": "inf"}``, so the tree is strict JSON. Only these types are accepted, so loading
a checkpoint cannot run code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

_TENSOR = "__tensor__"
_NDARRAY = "__ndarray__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_FLOAT = "__float__"
_MARKERS = {_TENSOR, _NDARRAY, _TUPLE, _ITEMS, _FLOAT}


def encode(obj: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a state tree into a JSON-able tree and named tensors.

    Args:
        obj: The state (dicts, lists, tuples, scalars, strings, None, tensors, numpy arrays).
        prefix: Prefix of the tensor names.

    Returns:
        ``(tree, tensors)``; ``tree`` refers to tensors by name.

    Raises:
        TypeError: For a value of any other type.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().cpu().clone().contiguous()
            return {_TENSOR: path}
        if isinstance(x, np.ndarray):
            dtype = str(x.dtype)
            arr = x.astype(np.int64) if x.dtype.kind == "u" else x
            tensors[path] = torch.from_numpy(np.ascontiguousarray(arr)).clone()
            return {_NDARRAY: path, "dtype": dtype}
        if isinstance(x, np.generic):
            return enc(x.item(), path)
        if isinstance(x, float) and not math.isfinite(x):  # strict JSON has no NaN/inf
            return {_FLOAT: repr(x)}
        if x is None or isinstance(x, bool | int | float | str):
            return x
        if isinstance(x, tuple):
            return {_TUPLE: [enc(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [enc(v, f"{path}.{i}") for i, v in enumerate(x)]
        if isinstance(x, dict):
            plain = all(isinstance(k, str) and k not in _MARKERS for k in x)
            if plain:
                return {k: enc(v, f"{path}.{k}") for k, v in x.items()}
            return {
                _ITEMS: [
                    [enc(k, f"{path}.k{i}"), enc(v, f"{path}.{i}")]
                    for i, (k, v) in enumerate(x.items())
                ]
            }
        raise TypeError(f"cannot store a {type(x).__name__} in a checkpoint (at {path})")

    return enc(obj, prefix), tensors


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild a state tree from :func:`encode` output.

    Raises:
        KeyError: If the tree refers to a tensor that is missing.
        ValueError: If the tree is malformed.
    """

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if _TENSOR in x:
            return tensors[x[_TENSOR]]
        if _NDARRAY in x:
            return tensors[x[_NDARRAY]].numpy().astype(np.dtype(x["dtype"]))
        if _TUPLE in x:
            return tuple(dec(v) for v in x[_TUPLE])
        if _FLOAT in x:
            return float(x[_FLOAT])
        if _ITEMS in x:
            items = x[_ITEMS]
            if not all(isinstance(p, list) and len(p) == 2 for p in items):
                raise ValueError("malformed mapping in checkpoint state")
            return {_hashable(dec(k)): dec(v) for k, v in items}
        return {k: dec(v) for k, v in x.items()}

    return dec(tree)


def _hashable(x: Any) -> Any:
    return tuple(_hashable(v) for v in x) if isinstance(x, list | tuple) else x
