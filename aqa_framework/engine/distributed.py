"""Data-parallel training through torchrun and ``torch.distributed`` (nothing home-made).

``torchrun --nproc_per_node=N -m aqa_framework.cli.main run spec.yaml`` starts N processes;
each reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the process group
(NCCL on GPUs, gloo on CPUs) and wraps the model in ``DistributedDataParallel``. Only rank 0
writes files; evaluation runs sharded and the predictions are gathered on every rank.

On several nodes (``torchrun --nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT``) the
same holds for the job's global rank 0. With ``--max-restarts`` torchrun's elastic agents
restart the whole group when a worker dies; :func:`elastic_launch` tells the run which job and
which restart it belongs to, so that a restarted group continues its run folder from the last
checkpoint (see :func:`aqa_framework.engine.runner.run_training`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
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


@dataclass(frozen=True)
class ElasticLaunch:
    """The torchrun job a worker belongs to, and which start of its group this is.

    torchrun's elastic agent (one per node) starts the workers and, with ``--max-restarts``,
    starts them again when one dies; the agents themselves live for the whole job. A job is
    therefore recognised by its rendezvous id and its agents (host and process id each).

    Attributes:
        run_id: The rendezvous id (``--rdzv-id``; ``TORCHELASTIC_RUN_ID``).
        restart_count: 0 for the group's first start, else the most restarts any node's
            agent counted (agents that restarted their workers only because another node's
            worker died do not count, so the nodes' counts may differ).
        max_restarts: The job's ``--max-restarts``.
        agents: ``"host:pid"`` of every node's agent (the workers' parent process), sorted.
    """

    run_id: str
    restart_count: int
    max_restarts: int
    agents: tuple[str, ...]

    @property
    def restarted(self) -> bool:
        """Whether torchrun restarted the group (a worker of an earlier start died)."""
        return self.restart_count > 0

    def to_json(self) -> dict[str, Any]:
        """The identity stored with a run's checkpoints (``launch`` in their metadata)."""
        return {"run_id": self.run_id, "agents": list(self.agents)}

    def started(self, stored: Any) -> bool:
        """Whether ``stored`` (a checkpoint's ``launch``) names this job.

        The rendezvous id must match and at least one agent must be the same process
        (agents are not replaced on a restart; a node that joined later may be new).
        """
        if not isinstance(stored, dict) or stored.get("run_id") != self.run_id:
            return False
        agents = stored.get("agents")
        return isinstance(agents, list) and bool(set(self.agents) & {str(a) for a in agents})


def elastic_launch(ctx: DistContext) -> ElasticLaunch | None:
    """The torchrun job of this worker (``None`` when not started by torchrun).

    Every rank must call it (the agents and their restart counts are gathered across ranks).

    Args:
        ctx: Distributed context.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is None:
        return None
    agent = f"{socket.gethostname()}:{os.getppid()}"
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    gathered = gather_objects((agent, restarts), ctx)
    return ElasticLaunch(
        run_id=run_id,
        restart_count=max(int(n) for _, n in gathered),
        max_restarts=int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0),
        agents=tuple(sorted({str(a) for a, _ in gathered})),
    )


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
        store = _attempt_store()
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(
                backend=backend,
                store=store,
                rank=int(os.environ["RANK"]),
                world_size=int(os.environ["WORLD_SIZE"]),
            )
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=dist.get_backend(),
    )


def _attempt_store() -> Any:
    """The elastic agent's store, seen through keys of this start of the group (or ``None``).

    When torchrun's agent hosts the store (``TORCHELASTIC_USE_AGENT_STORE``), the store
    outlives the workers, and the restart count each agent exports is not the same on every
    node (pytorch/pytorch#135712): the workers of a restarted group would read the addresses
    the dead group published and fail to connect. :func:`_fresh_namespace` agrees on a prefix
    that no earlier start used. ``None`` when the workers do not use the agent's store (then
    ``init_process_group`` reads the environment as usual).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    timeout = timedelta(minutes=10)
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout
    )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    namespace = _fresh_namespace(client, rank, world_size, timeout.total_seconds())
    return dist.PrefixStore(f"aqa/{namespace}", client)


def _fresh_namespace(store: Any, rank: int, world_size: int, timeout_s: float) -> str:
    """A key prefix shared by the workers of this start only, agreed through ``store``.

    Rank 0 draws a new name; every other rank posts a token of its own under its rank and
    waits for the answer keyed by that token (so it never reads an earlier start's answer).
    Rank 0 answers every token it finds, stale ones too (harmlessly), until each rank has
    acknowledged under the new name.

    Raises:
        RuntimeError: If a rank does not answer within ``timeout_s``.
    """
    if rank != 0:
        token = uuid.uuid4().hex
        store.set(f"aqa/hello/{rank}", token)
        namespace = store.get(f"aqa/reply/{token}").decode()
        store.set(f"aqa/{namespace}/ack/{rank}", "1")
        return namespace
    namespace = uuid.uuid4().hex
    answered: set[str] = set()
    pending = set(range(1, world_size))
    deadline = time.monotonic() + timeout_s
    while pending:
        for r in sorted(pending):
            key = f"aqa/hello/{r}"
            if store.check([key]):
                token = store.get(key).decode()
                if token not in answered:
                    store.set(f"aqa/reply/{token}", namespace)
                    answered.add(token)
        pending = {r for r in pending if not store.check([f"aqa/{namespace}/ack/{r}"])}
        if pending and time.monotonic() > deadline:
            raise RuntimeError(
                f"ranks {sorted(pending)} did not join the process group within {timeout_s:.0f} s"
            )
        if pending:
            time.sleep(0.02)
    return namespace


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
