"""Which examples go into which batch: seeded shuffling, length bucketing, sharding.

The order of epoch ``e`` depends only on ``(seed, e)`` (and the rank), never on earlier
epochs, so a run resumed from a checkpoint sees exactly the batches an uninterrupted run
would. Two distributed layouts:

* every rank holds all examples (:func:`epoch_batches`): every *global* batch of
  ``batch_size`` examples is the same as in a single-process run and is cut into
  ``world_size`` contiguous shards, one per rank; DDP's gradient averaging then
  reproduces the single-process step (exactly so when every shard's loss is a mean over
  the same number of terms);
* each rank holds its own examples (data split by user, :func:`shard_batches`): each
  rank shuffles its examples and takes ``batch_size / world_size`` of them per step, so a
  global batch is a stratified sample of the same size; statistically, not numerically,
  the single-process run. All ranks take the same number of steps (:func:`shard_steps`);
  a rank that runs out of examples first continues with a fresh shuffle of its own.
"""

from __future__ import annotations

import numpy as np

from recloop.errors import ConfigError


def epoch_batches(n_examples: int, batch_size: int, *, epoch: int, seed: int, rank: int = 0, world_size: int = 1,
                  lengths: np.ndarray | None = None, bucket_batches: int = 64) -> list[np.ndarray]:
    """This rank's example indices for every step of epoch ``epoch``.

    ``lengths`` (one per example) turns on length bucketing: shuffled examples are
    sorted by length inside windows of ``bucket_batches`` batches, cut into batches,
    and the batches shuffled, so padded sequence batches waste little work while the
    order stays random.
    """
    if n_examples < 1:
        raise ConfigError("there are no training examples")
    _per_rank(batch_size, world_size)
    rng = np.random.default_rng([seed, epoch])
    order, batches = _shuffled_batches(rng, n_examples, batch_size, lengths, bucket_batches)
    if world_size == 1:
        return batches
    shards = []
    for batch in batches:
        if len(batch) < world_size:  # every rank needs an example: repeat from the start
            batch = np.concatenate([batch, order[: world_size - len(batch)]])
        shards.append(np.array_split(batch, world_size)[rank])
    return shards


def shard_steps(n_examples: int, batch_size: int, world_size: int) -> int:
    """Steps one rank needs for an epoch over its ``n_examples`` when each rank takes
    ``batch_size / world_size`` examples per step. The job runs the largest of these
    over its ranks (an all-reduce), or DDP would wait forever for the rank that stopped."""
    return -(-n_examples // _per_rank(batch_size, world_size))


def shard_batches(n_examples: int, batch_size: int, *, epoch: int, seed: int, rank: int, world_size: int,
                  steps: int, lengths: np.ndarray | None = None, bucket_batches: int = 64) -> list[np.ndarray]:
    """This rank's example indices for the ``steps`` steps of epoch ``epoch`` when each rank
    holds its own ``n_examples`` examples: shuffled (and length-bucketed) as
    :func:`epoch_batches` does, ``batch_size / world_size`` per step, seeded by
    ``(seed, epoch, rank)``; past the end of its examples a rank starts a fresh shuffle."""
    if n_examples < 1:
        raise ConfigError(f"rank {rank} of {world_size} holds no training examples: the data split by user left "
                          "it none (too few users for this many processes); use fewer processes")
    size = _per_rank(batch_size, world_size)
    rng = np.random.default_rng([seed, epoch, rank])
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        batches.extend(_shuffled_batches(rng, n_examples, size, lengths, bucket_batches)[1])
    return batches[:steps]


def _per_rank(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size {batch_size} must be divisible by the {world_size} processes "
                          f"(each takes batch_size / {world_size} examples per step)")
    return batch_size // world_size


def _shuffled_batches(rng: np.random.Generator, n_examples: int, batch_size: int, lengths: np.ndarray | None,
                      bucket_batches: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A permutation of the examples and its batches; with ``lengths``, examples sorted
    by length inside windows of ``bucket_batches`` batches and the batches shuffled."""
    order = rng.permutation(n_examples)
    if lengths is not None:
        lengths = np.asarray(lengths)
        window = batch_size * bucket_batches
        for start in range(0, n_examples, window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[start:start + batch_size] for start in range(0, n_examples, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return order, batches
