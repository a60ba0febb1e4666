"""What a run ran on: versions, device, git commit and command line."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def git_commit(path: str | Path) -> dict[str, Any] | None:
    """The git commit (and whether the tree is dirty) of the repository holding ``path``."""
    cwd = Path(path)
    if not cwd.is_dir():
        cwd = cwd.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def collect_environment(
    device: torch.device, precision: str, world_size: int = 1
) -> dict[str, Any]:
    """A JSON-able description of the software and hardware of a run.

    Args:
        device: The training device.
        precision: The resolved precision (fp32, bf16, fp16).
        world_size: Number of data-parallel processes.
    """
    import aqa_framework

    env: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "cwd": str(Path.cwd()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "versions": {
            "aqa-framework": aqa_framework.__version__,
            "torch": torch.__version__,
            **{m: _version(m) for m in ("timm", "numpy", "safetensors", "pydantic", "decord")},
        },
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        ),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "precision": precision,
        "world_size": world_size,
        "git": git_commit(Path(aqa_framework.__file__).resolve().parent),
    }
    return env
