"""Seeds and random-number-generator states (torch, numpy, python).

A run seeds every generator once from ``spec.seed``; checkpoints store the generator states at
the end of an epoch so that a resumed run continues with exactly the numbers an uninterrupted
run would have drawn. Data order never depends on those states: the sampler is seeded with
``(seed, epoch)`` and DataLoader workers get seeds derived from ``(seed, epoch, rank)``.
"""

from __future__ import annotations

import random
import signal
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every GPU).

    Args:
        seed: A seed in ``[0, 2**32)``.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from several integers (e.g. seed, epoch, rank).

    Args:
        *parts: Non-negative integers.
    """
    ss = np.random.SeedSequence([int(p) for p in parts])
    return int(ss.generate_state(1, np.uint64)[0] >> 1)


def worker_init_fn(worker_id: int) -> None:
    """Prepare a DataLoader worker: seeds, and no reaction to Ctrl-C or SIGTERM.

    Torch seeds each worker with ``base_seed + worker_id``, where the base seed comes from the
    DataLoader's generator; this extends that seed to numpy and python ``random``.

    A worker is forked with the training process's stop handler, and Ctrl-C reaches every
    process of the terminal's group: workers ignore SIGINT and SIGTERM, so the training
    process alone decides when to stop (after the current step) and its workers keep serving
    until then; they exit with it.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def get_rng_state() -> dict[str, Any]:
    """The state of every global generator (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`get_rng_state` output (after a JSON round trip).

    Args:
        state: The stored states; lists are accepted where tuples were saved.
    """
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])
