"""Data-parallel training through torchrun and ``torch.distributed`` (nothing home-made).

``torchrun --nproc_per_node=N -m aqa_framework.cli.main run spec.yaml`` starts N processes;
each reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the process group
(NCCL on GPUs, gloo on CPUs) and wraps the model in ``DistributedDataParallel``. Only rank 0
writes files; evaluation runs sharded and the predictions are gathered on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this machine.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether a process group is in use."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    @property
    def reduce_device(self) -> torch.device:
        """Device of the tensors used in collectives."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes, or return a single-process context.

    Args:
        device_type: ``"cuda"`` (NCCL) or ``"cpu"`` (gloo).
    """
    if not launched_by_torchrun():
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=dist.get_backend(),
    )


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this module joined one)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every process."""
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable value built by this program)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def any_true(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` is set on any rank (e.g. a stop request)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.reduce_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sum_across(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum float values of the same keys across ranks."""
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.reduce_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    summed = dict(zip(keys, t.tolist(), strict=True))
    return {k: summed[k] for k in values}
