"""Device choice, mixed precision (autocast, gradient scaling) and backend switches."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from aqa_framework.errors import SpecError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a run uses.

    Args:
        name: ``train.device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        local_rank: Rank on this machine under torchrun (picks the GPU for ``auto``/``cuda``).

    Raises:
        SpecError: If a GPU is asked for and none is available, or the name is unknown.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(
            [("train.device", f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")]
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError([("train.device", f"{name!r} asked for, but no GPU is available")])
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


#: CPU feature flags that mean native bf16 arithmetic (x86: AVX-512 BF16, AMX; Arm: BF16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpuinfo_has_native_bf16(text: str) -> bool:
    """Whether ``/proc/cpuinfo`` text names a native bf16 feature.

    Reads the first ``flags`` (x86) or ``Features`` (Arm) line.
    """
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return bool(NATIVE_BF16_FLAGS & set(value.split()))
    return False


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU computes bf16 natively (AVX-512 BF16, AMX or Arm BF16).

    Without it oneDNN emulates bf16, which is many times slower than fp32 (measured about
    30x on an AVX2 CPU), so ``train.precision: auto`` stays fp32 there. Reads the flags of
    ``/proc/cpuinfo`` (Linux) or ``sysctl hw.optional.arm.FEAT_BF16`` (macOS).
    """
    import platform
    import subprocess
    from pathlib import Path

    info = Path("/proc/cpuinfo")
    if info.is_file():
        try:
            return cpuinfo_has_native_bf16(info.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return False
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                                 capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return False
        return out.stdout.strip() == "1"
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``train.precision`` into ``"fp32"``, ``"bf16"`` or ``"fp16"`` for a device.

    ``auto`` is bf16 autocast on a GPU that supports it and on a CPU with native bf16
    (:func:`cpu_has_native_bf16`), and fp32 everywhere else.

    Raises:
        SpecError: If fp16 is asked for on a CPU (no gradient scaling there).
    """
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise SpecError([("train.precision", "fp16 needs a GPU; use bf16 or fp32 on a CPU")])
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to the run's precision (a no-op for fp32)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def configure_backends(device: torch.device) -> None:
    """Turn on the fast GPU paths: cuDNN autotuning and TF32 matmuls (GPU only)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
