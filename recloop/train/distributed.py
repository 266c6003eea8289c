"""Data-parallel training under PyTorch's own engine (``torch.distributed`` + DDP).

``torchrun --nproc_per_node=N -m recloop train CONFIG --output DIR`` starts ``N``
processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` in their
environment. The CLI (the only layer that reads the environment) turns them into a
:class:`DistributedContext` with :func:`context_from_env` and calls :func:`setup`, which
initialises the process group (NCCL on GPU, gloo on CPU) and makes the context the
process-wide default that every :class:`~recloop.train.Trainer` picks up. Library code
and tests can call :func:`setup` with an explicit context instead.

Only rank 0 validates during training, prints and writes files; the others wait for its
decisions. Evaluation after training is sharded: an
:class:`~recloop.evaluate.Evaluator` given the context ranks this rank's share of the
users and gathers everyone's lists with :func:`all_gather_objects`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from recloop.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: nccl when CUDA is available, else gloo

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_current: DistributedContext | None = None


def context_from_env(environ: Mapping[str, str]) -> DistributedContext | None:
    """The context torchrun describes in ``environ`` (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or ``None`` for a single-process run. Pass ``os.environ``."""
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers, got {environ.get('WORLD_SIZE')!r}/"
                          f"{environ.get('RANK')!r}/{environ.get('LOCAL_RANK')!r}") from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK {rank} is out of range for WORLD_SIZE {world_size}")
    return DistributedContext(rank, world_size, local_rank, environ.get("RECLOOP_DIST_BACKEND") or None)


def setup(context: DistributedContext, init_method: str | None = None) -> DistributedContext:
    """Initialise the process group for ``context`` and make it the default of every
    ``Trainer`` in this process. ``init_method`` defaults to ``env://`` (torchrun's)."""
    global _current
    backend = context.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    context = DistributedContext(context.rank, context.world_size, context.local_rank, backend)
    if context.enabled and not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group(backend, init_method=init_method or "env://", rank=context.rank,
                                world_size=context.world_size)
    _current = context
    return context


def teardown() -> None:
    """Leave the process group (end of a distributed command)."""
    global _current
    if dist.is_initialized():
        dist.destroy_process_group()
    _current = None


def current() -> DistributedContext:
    """The process-wide context set by :func:`setup`; a single process otherwise."""
    return _current if _current is not None else DistributedContext()


def is_main_process() -> bool:
    """Whether this process should print and write files (rank 0, or not distributed)."""
    return current().is_main


def broadcast_floats(values: list[float], context: DistributedContext, device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank (decisions made by the one process that validates)."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def any_true(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (so all ranks stop together)."""
    if not context.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``value`` (any picklable object, e.g. numpy arrays), in rank order, on
    every rank; ``[value]`` in a single process."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered
