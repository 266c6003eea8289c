"""Which examples go into which batch: seeded shuffling, length bucketing, sharding.

The order of epoch ``e`` depends only on ``(seed, e)``, never on earlier epochs, so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run would.
When distributed, every *global* batch of ``batch_size`` examples is the same as in a
single-process run and is cut into ``world_size`` contiguous shards, one per rank; DDP's
gradient averaging then reproduces the single-process step (exactly so when every
shard's loss is a mean over the same number of terms).
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
    if world_size > 1 and batch_size % world_size:
        raise ConfigError(f"train.batch_size {batch_size} must be divisible by the {world_size} processes "
                          f"(each takes batch_size / {world_size} examples per step)")
    rng = np.random.default_rng([seed, epoch])
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
    if world_size == 1:
        return batches
    shards = []
    for batch in batches:
        if len(batch) < world_size:  # every rank needs an example: repeat from the start
            batch = np.concatenate([batch, order[: world_size - len(batch)]])
        shards.append(np.array_split(batch, world_size)[rank])
    return shards
