"""Small building blocks shared by the built-in components."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

Form = Literal["auto", "fc", "conv"]


def scale_channels(channels: int, width: float) -> int:
    """Channels of a layer under a width multiplier.

    Rounds to a multiple of 4 (at least 4) with timm's ``make_divisible``; a multiplier of 1
    keeps the original count.

    Args:
        channels: Channels of the original network.
        width: Width multiplier.
    """
    if width == 1.0:
        return channels
    from timm.layers import make_divisible

    return int(make_divisible(channels * width, divisor=4))


def resolve_form(form: Form, in_shape: tuple[int, ...]) -> Literal["fc", "conv"]:
    """Pick a head's form from its input shape.

    ``auto`` is ``conv`` for feature maps ``(C, T, H, W)`` and ``fc`` for vectors.

    Raises:
        ValueError: If ``conv`` is asked for features that are not ``(C, T, H, W)`` maps.
    """
    if form == "auto":
        return "conv" if len(in_shape) == 4 else "fc"
    if form == "conv" and len(in_shape) != 4:
        raise ValueError(
            f"form 'conv' needs feature maps (C, T, H, W) but gets features of shape "
            f"{tuple(in_shape)}; use form 'fc' (or 'auto')"
        )
    return form


def flat_size(in_shape: tuple[int, ...]) -> int:
    """Number of features once ``in_shape`` is flattened."""
    return int(math.prod(in_shape))


def conv3d(
    cin: int, cout: int, kernel: int = 3, padding: int = 1, dilation: int = 1
) -> nn.Conv3d:
    """A cubic 3D convolution (the only kind C3D-style networks use)."""
    return nn.Conv3d(cin, cout, kernel_size=kernel, padding=padding, dilation=dilation)


def check_layer_names(names: list[str], known: tuple[str, ...]) -> list[str]:
    """Validate a list of layer names (for ``frozen`` params); ``all`` means every layer.

    Raises:
        ValueError: Naming the unknown layers and the valid ones.
    """
    if "all" in names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; choose from {list(known)} or 'all'")
    return names
