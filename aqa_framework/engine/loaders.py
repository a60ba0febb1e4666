"""DataLoaders with reproducible order: seeded per epoch, sharded under DDP.

Both collate with :func:`aqa_framework.data.skipping.collate`: samples a dataset could not
load (``on_error: skip``) are left out of the batch and listed under ``batch["skipped"]``. An
evaluation loader told the model's :class:`~aqa_framework.data.padding.SequencePadding`
zero-pads sequences of different lengths when the model masks padding out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from aqa_framework.data.skipping import collate
from aqa_framework.engine.distributed import DistContext
from aqa_framework.engine.seeding import derive_seed, worker_init_fn
from aqa_framework.env import usable_cores
from aqa_framework.errors import SpecError

if TYPE_CHECKING:
    from aqa_framework.data.padding import SequencePadding

MAX_AUTO_WORKERS = 8


def resolve_num_workers(
    value: int | Literal["auto"], device: torch.device | str, world_size: int = 1
) -> int:
    """The number of DataLoader workers ``data.num_workers`` asks for on ``device``.

    Args:
        value: A count, or ``"auto"``: 0 on a CPU, where the training process already uses
            every core; on a GPU the CPU cores available to each process minus one (for the
            process itself), between 1 and :data:`MAX_AUTO_WORKERS`.
        device: Where the model runs (``"auto"``: a GPU if there is one).
        world_size: Processes sharing this machine's cores (DDP ranks).

    Returns:
        Worker processes per process.
    """
    if value != "auto":
        return int(value)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cpu":
        return 0
    return max(1, min(MAX_AUTO_WORKERS, usable_cores() // max(1, world_size) - 1))


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of a dataset: every sample exactly once overall.

    Evaluation uses it so that predictions gathered from all ranks cover the split without the
    padding duplicates of ``DistributedSampler``.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length = length
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class EpochLoader:
    """A training DataLoader whose shuffling and worker seeds depend only on (seed, epoch).

    Args:
        dataset: The training set.
        batch_size: Global batch size (split evenly across DDP ranks).
        num_workers: Worker processes per rank.
        seed: The run seed.
        ctx: The distributed context.
        pin_memory: Pin host memory (GPU runs).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        num_workers: int,
        seed: int,
        ctx: DistContext,
        pin_memory: bool = False,
    ) -> None:
        if batch_size % ctx.world_size:
            raise SpecError(
                [
                    (
                        "data.batch_size",
                        f"{batch_size} is the global batch size and must be divisible by the "
                        f"number of processes ({ctx.world_size})",
                    )
                ]
            )
        self.seed = seed
        self.rank = ctx.rank
        self.sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
        )
        self.generator = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size // ctx.world_size,
            sampler=self.sampler,
            num_workers=num_workers,
            worker_init_fn=worker_init_fn,
            generator=self.generator,
            pin_memory=pin_memory,
            collate_fn=collate,
        )

    def epoch(self, epoch: int) -> DataLoader:
        """The loader, set up for an epoch (a dataset with ``set_epoch`` is told it too)."""
        self.sampler.set_epoch(epoch)
        set_epoch = getattr(self.loader.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        self.generator.manual_seed(derive_seed(self.seed, epoch, self.rank))
        return self.loader

    def __len__(self) -> int:
        return len(self.loader)


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    ctx: DistContext,
    pin_memory: bool = False,
    padding: SequencePadding | None = None,
) -> DataLoader:
    """A loader over this rank's shard of an evaluation split, in index order.

    Args:
        dataset: The split.
        batch_size: Samples per batch.
        num_workers: Worker processes.
        ctx: The distributed context.
        pin_memory: Pin host memory (GPU runs).
        padding: What the model allows for sequences of different lengths
            (:meth:`SequencePadding.for_model
            <aqa_framework.data.padding.SequencePadding.for_model>`); ``None``: such
            batches are refused.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), ctx.rank, ctx.world_size),  # type: ignore[arg-type]
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        pin_memory=pin_memory,
        collate_fn=collate if padding is None else functools.partial(collate, padding=padding),
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to a device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return (
            type(batch)(to_device(v, device) for v in batch)
            if isinstance(batch, tuple)
            else [to_device(v, device) for v in batch]
        )
    return batch
