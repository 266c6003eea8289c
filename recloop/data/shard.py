"""A log split by user across the processes of a data-parallel job.

Under ``torchrun`` with ``[data] shard_by_user = true``, process ``rank`` of ``world_size``
keeps only the rows of the users it *owns*: ``owner(user) = hash(user id) % world_size``,
where the hash is 64-bit FNV-1a of the id's UTF-8 text with a final avalanche (the
splitmix64 finaliser). It depends on the id's text alone, so every process, machine and
file format (``42`` in a Parquet integer column, ``"42"`` in a CSV) agrees on the owner,
and a user's whole history is on one process: per-user steps (de-duplication,
leave-one-out, a user's training sequence) need no communication.

The *vocabularies* stay global: every process builds the user and item vocabularies of
the whole log, in the order one process would (first appearance in the source), so that
``user_idx``/``item_idx`` mean the same on every rank and as in a single-process run,
every rank's item table indexes the same items, and per-user results can be merged by
index. That costs one pass over the user and item columns on every rank (read, encoded,
released); the other columns are read for the owned rows only. Global quantities are
element-wise sums over the ranks through :attr:`UserShard.sum_across`, which the caller
supplies (``recloop.train.distributed`` passes an all-reduce; the data layer imports no
communication code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recloop.data.dataset import Dataset
from recloop.data.ids import IdMap
from recloop.errors import ConfigError

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def stable_hash(ids: np.ndarray | pa.Array | list) -> np.ndarray:
    """64-bit hash (``uint64``) of each id's text, the same in every process and on every
    machine (Python's ``hash`` of a ``str`` is salted per process). Vectorised: one numpy
    pass per character position of the longest id."""
    text = pa.array(ids) if not isinstance(ids, pa.Array) else ids
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=n + 1, offset=text.offset * 4).astype(np.int64)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8) if text.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max()) if n else 0):
            live = np.flatnonzero(lengths > j)
            h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * FNV_PRIME
        # splitmix64's finaliser: every output bit depends on every input bit, so that
        # ``% world_size`` of ids that differ in one character spreads evenly.
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _no_peers(values: np.ndarray) -> np.ndarray:
    return values


@dataclass(frozen=True)
class UserShard:
    """This process's part of a log split by user.

    Attributes
    ----------
    rank, world_size:
        This process and the number of processes.
    sum_across:
        ``sum_across(array)``: the element-wise sum of ``array`` (int64 or float64, the
        same shape on every rank) over all ranks, returned on every rank. Every rank must
        call it at the same point (it is a collective).
    """

    rank: int
    world_size: int
    sum_across: Callable[[np.ndarray], np.ndarray] = _no_peers

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"a user shard needs 0 <= rank < world_size, got rank {self.rank} of {self.world_size}")

    def owners(self, users: IdMap) -> np.ndarray:
        """The rank that owns each user of ``users`` (``int64``, one per user index)."""
        return (stable_hash(users.ids) % np.uint64(self.world_size)).astype(np.int64)

    def rows(self, users: IdMap, user_idx: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows (given by their ``user_idx``) this rank keeps."""
        return (self.owners(users) == self.rank)[user_idx]

    def total(self, count: int) -> int:
        """``count`` summed over the ranks."""
        return int(self.sum_across(np.array([count], dtype=np.int64))[0])


def keep_shard(dataset: Dataset, shard: UserShard | None) -> Dataset:
    """The rows of ``dataset`` whose user ``shard`` owns, on the same (global)
    vocabularies and features; ``dataset`` itself without a shard."""
    if shard is None:
        return dataset
    log = dataset.interactions
    return dataset.with_interactions(log.select(shard.rows(log.users, log.user_idx)))
