"""Data-parallel training under PyTorch's own engine (``torch.distributed`` + DDP).

``torchrun --nproc_per_node=N -m recloop train CONFIG --output DIR`` starts ``N``
processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` in their
environment. The CLI (the only layer that reads the environment) turns them into a
:class:`DistributedContext` with :func:`context_from_env` and calls :func:`setup`, which
initialises the process group (NCCL on GPU, gloo on CPU) and makes the context the
process-wide default that every :class:`~recloop.train.Trainer` picks up. Library code
and tests can call :func:`setup` with an explicit context instead.

Only rank 0 prints and writes files. Evaluation after training is sharded: an
:class:`~recloop.evaluate.Evaluator` given the context ranks this rank's share of the
users and gathers everyone's lists with :func:`all_gather_objects`.

Two ways to hold the data. By default every rank loads the whole log; the trainer cuts
each single-process batch into one slice per rank, only rank 0 validates during training
(the others wait for its decisions), and evaluation cuts the single-process batches. With
the data split by user (``shard_data``: ``[data] shard_by_user = true``, see
:mod:`recloop.data.shard` and :func:`user_shard`), each rank holds only its own users' rows:
the trainer draws each rank's share of a step from its own examples
(:func:`recloop.train.sampler.shard_batches`), every rank validates its users, and
evaluation ranks each rank's own users; global counts (item popularity, k-core) are
all-reduced with :func:`sum_across`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recloop.data.interactions import Interactions
from recloop.data.shard import UserShard
from recloop.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: nccl when CUDA is available, else gloo
    shard_data: bool = False  # each rank holds only its own users' rows (see the module docstring)

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
    context = replace(context, backend=backend)
    if context.enabled and not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group(backend, init_method=init_method or "env://", rank=context.rank,
                                world_size=context.world_size)
    _current = context
    return context


def teardown(finished: bool = True) -> None:
    """Leave the process group (end of a distributed command). ``finished``: the command
    ended normally on this rank, so all ranks first wait for each other; a rank that
    destroys its group while a peer still works (rank 0 writing the artifact) can abort
    at exit in gloo's threads. After an error nobody waits: the peer may never come."""
    global _current
    if dist.is_initialized():
        if finished:
            dist.barrier()
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


# --- data split by user ------------------------------------------------------------------------------
def shard_data() -> DistributedContext:
    """Mark this process's job as holding data split by user (each rank its own users'
    rows): from now on its Trainers, Evaluators and item statistics work on shards. Called
    by :func:`recloop.experiment.prepare_data` when the config sets ``data.shard_by_user``."""
    global _current
    context = current()
    if not context.enabled:
        raise ConfigError("data.shard_by_user needs a distributed job (torchrun with more than one process)")
    _current = replace(context, shard_data=True)
    return _current


def _device(context: DistributedContext) -> torch.device:
    return torch.device("cuda", context.local_rank) if context.backend == "nccl" else torch.device("cpu")


def sum_across(values: np.ndarray, context: DistributedContext | None = None) -> np.ndarray:
    """The element-wise sum of ``values`` over all ranks, on every rank (``values`` itself
    in a single process). Integers are summed as int64, anything else as float64."""
    context = context or current()
    values = np.asarray(values)
    if not context.enabled:
        return values
    dtype = np.int64 if values.dtype.kind in "iub" else np.float64
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=dtype)).to(_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def max_across(value: int, context: DistributedContext | None = None) -> int:
    """The largest ``value`` of all ranks, on every rank."""
    context = context or current()
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def user_shard(context: DistributedContext | None = None) -> UserShard:
    """This rank's :class:`~recloop.data.shard.UserShard`, its sums all-reduced."""
    context = context or current()
    return UserShard(context.rank, context.world_size, lambda values: sum_across(values, context))


def item_counts(log: Interactions) -> np.ndarray:
    """Distinct users per item of ``log``; over all ranks when the job's data is split by
    user (popularity negatives and item statistics must see the whole log)."""
    counts = log.item_counts()
    context = current()
    return sum_across(counts, context) if context.shard_data else counts


def whole_log(log: Interactions, context: DistributedContext | None = None) -> Interactions:
    """Every rank's rows of a log split by user, on every rank (``log`` itself when the
    data is not split). For what needs the whole log on one process, such as the history
    a saved model serves from; it costs the whole log's memory on every rank."""
    context = context or current()
    if not context.shard_data:
        return log
    parts = all_gather_objects(log.to_arrays(), context)
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return Interactions(arrays["user_idx"], arrays["item_idx"], log.users, log.items, arrays.get("rating"),
                        arrays.get("timestamp"))  # a user's rows are on one rank: sorting restores the order
