"""Spatial transforms on uint8 frame batches, vectorised with torch.

The pipeline of the paper: resize every frame (171x128 for C3D-AVG, 640x360 for MSCADC),
center crop (112 / 180), flip horizontally (training, per sample), scale to [0, 1] and
normalise with the ImageNet mean and std. Frames stay ``uint8`` through the resize and the
crop (torch's antialiased bilinear kernel on channels-last uint8 is fast, and the result is what
the frame cache stores); only the final clips are converted to float, in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from aqa_framework.video.params import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FrameTransform", "center_crop", "resize_frames"]


def resize_frames(frames: np.ndarray | torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize ``uint8`` frames ``(F, H, W, 3)`` to ``size`` = (width, height).

    Args:
        frames: Frames as decoded (numpy or torch, channels last).
        size: Target ``(width, height)``, or ``None`` to keep the size.

    Returns:
        ``uint8`` tensor ``(F, 3, h, w)`` in channels-last memory format.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {x.dtype}")
    x = x.permute(0, 3, 1, 2)  # a channels-last view, no copy
    if size is None or (x.shape[-1], x.shape[-2]) == tuple(size):
        return x
    w, h = size
    return F.interpolate(
        x.contiguous(memory_format=torch.channels_last),
        size=(h, w),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )


def center_crop(x: torch.Tensor, crop: tuple[int, int] | None) -> torch.Tensor:
    """Center crop the last two dims to ``crop`` = (height, width), as torchvision does.

    Raises:
        ValueError: If the crop is larger than the frames.
    """
    if crop is None:
        return x
    ch, cw = crop
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} (HxW) is larger than the frames ({h}x{w})")
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return x[..., top : top + ch, left : left + cw]


@dataclass(frozen=True)
class FrameTransform:
    """Resize, crop, flip and normalise a batch of frames.

    Attributes:
        resize: ``(width, height)`` after resizing, or ``None``.
        crop: ``(height, width)`` of the center crop, or ``None``.
        mean: Per-channel mean on the [0, 1] scale, or ``None`` to skip normalisation.
        std: Per-channel std on the [0, 1] scale.
    """

    resize: tuple[int, int] | None = (171, 128)
    crop: tuple[int, int] | None = (112, 112)
    mean: Sequence[float] | None = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def prepare(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Step 1, resize and center crop (what the cache stores), all in ``uint8``.

        Args:
            frames: ``uint8 (F, H, W, 3)`` as decoded.

        Returns:
            ``uint8 (F, 3, ch, cw)`` (a channels-last view when nothing is resized).
        """
        return center_crop(resize_frames(frames, self.resize), self.crop)

    def finish(
        self, prepared: torch.Tensor, flip: bool = False, clips: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Step 2: flip, scale and normalise prepared ``uint8 (F, 3, h, w)`` frames.

        Args:
            prepared: Output of :meth:`prepare` (or frames read back from the cache).
            flip: Flip horizontally.
            clips: ``(N, T)`` with ``N x T = F`` to return clips instead of frames.

        Returns:
            ``float32 (F, 3, ch, cw)``, or ``(N, 3, T, ch, cw)`` when ``clips`` is given.
        """
        x = prepared
        if flip:
            x = x.flip(-1)  # on uint8, before the float copy
        if clips is not None:
            x = x.unflatten(0, clips).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W) view
        out = torch.empty(x.shape, dtype=torch.float32)
        out.copy_(x)  # one pass: gather, layout and uint8 -> float together
        shape = (1, 3) + (1,) * (out.dim() - 2) if clips is None else (1, 3, 1, 1, 1)
        if self.mean is None:
            return out.div_(255.0)
        std = torch.tensor(self.std, dtype=torch.float32)
        scale = (1.0 / (255.0 * std)).view(shape)
        shift = (-torch.tensor(self.mean, dtype=torch.float32) / std).view(shape)
        return out.mul_(scale).add_(shift)

    def __call__(self, frames: np.ndarray | torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Both steps: ``uint8 (F, H, W, 3)`` -> ``float32 (F, 3, ch, cw)``."""
        return self.finish(self.prepare(frames), flip=flip)
