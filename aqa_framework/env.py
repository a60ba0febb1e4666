"""What the environment says: boolean switches and the CPU cores this process may use."""

from __future__ import annotations

import os

__all__ = ["env_flag", "usable_cores"]

_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to 1, true, yes or on (any case)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
