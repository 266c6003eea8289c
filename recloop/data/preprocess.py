"""Cleaning steps applied to a log before it is split.

Each step returns a new :class:`Interactions` on the same vocabularies; :func:`preprocess`
chains them from a :class:`PreprocessConfig` and finally drops the ids left without
interactions. A step that leaves nothing raises a :class:`DataError` naming itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions
from recloop.data.shard import UserShard
from recloop.errors import ConfigError, DataError


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing settings.

    Attributes
    ----------
    deduplicate:
        ``"last"`` or ``"first"`` keeps one row per (user, item) pair; ``"none"`` keeps all.
    min_rating:
        Keep only interactions with ``rating >= min_rating`` (implicit positives); ``None``
        keeps all.
    user_core, item_core:
        Iterative k-core: repeat until every user has ``>= user_core`` and every item
        ``>= item_core`` interactions. 0 disables.
    drop_rating:
        Forget the rating after thresholding, so models treat the log as implicit.
    """

    deduplicate: str = "none"
    min_rating: float | None = None
    user_core: int = 0
    item_core: int = 0
    drop_rating: bool = False

    def __post_init__(self):
        if self.deduplicate not in ("none", "first", "last"):
            raise ConfigError(f"preprocess.deduplicate must be 'none', 'first' or 'last', got {self.deduplicate!r}")
        if self.user_core < 0 or self.item_core < 0:
            raise ConfigError("preprocess.user_core and item_core must be >= 0")


def deduplicate(log: Interactions, keep: str = "last") -> Interactions:
    """One row per (user, item) pair: the ``"first"`` or ``"last"`` in canonical order."""
    pair = log.user_idx * log.n_items + log.item_idx
    if keep == "last":
        _, position = np.unique(pair[::-1], return_index=True)
        rows = len(pair) - 1 - position
    else:
        _, rows = np.unique(pair, return_index=True)
    return log.select(np.sort(rows))


def threshold(log: Interactions, min_rating: float) -> Interactions:
    """Keep interactions whose rating is at least ``min_rating``."""
    if log.rating is None:
        raise DataError(f"min_rating={min_rating} needs ratings, but this log has none")
    return log.select(log.rating >= min_rating)


def k_core(log: Interactions, user_k: int, item_k: int, shard: UserShard | None = None) -> Interactions:
    """Iteratively drop users with fewer than ``user_k`` and items with fewer than
    ``item_k`` interactions until both hold (the k-core of the bipartite graph).

    On a log split by user (``shard``), a user's count is local and an item's is summed
    over the processes in every round, as is the number of rows the round drops, so that
    all processes stop in the same round with the single-process result."""
    keep = np.ones(len(log), dtype=bool)
    while True:
        users, items = log.user_idx[keep], log.item_idx[keep]
        user_ok = np.bincount(users, minlength=log.n_users) >= user_k
        item_counts = np.bincount(items, minlength=log.n_items)
        if shard is not None:
            item_counts = shard.sum_across(item_counts.astype(np.int64))
        item_ok = item_counts >= item_k
        drop = keep & ~(user_ok[log.user_idx] & item_ok[log.item_idx])
        dropped = int(drop.sum())
        if (dropped if shard is None else shard.total(dropped)) == 0:
            return log.select(keep)
        keep &= ~drop


def preprocess(dataset: Dataset, config: PreprocessConfig, shard: UserShard | None = None) -> Dataset:
    """Apply the configured steps in order: dedup, rating threshold, k-core, compact.

    ``dataset`` may be one process's rows of a log split by user (``shard``): de-duplication
    and the rating threshold are per row or per user; k-core and the final compaction sum
    their counts over the processes, so every process keeps the ids one process would."""
    total = len if shard is None else (lambda x: shard.total(len(x)))
    log = dataset.interactions
    if total(log) == 0:
        raise DataError(f"dataset {dataset.name!r} has no interactions to preprocess")
    steps = []
    if config.deduplicate != "none":
        steps.append((f"deduplicate={config.deduplicate!r}", lambda x: deduplicate(x, config.deduplicate)))
    if config.min_rating is not None:
        steps.append((f"min_rating={config.min_rating}", lambda x: threshold(x, config.min_rating)))
    if config.user_core or config.item_core:
        steps.append((f"k-core (user_core={config.user_core}, item_core={config.item_core})",
                      lambda x: k_core(x, config.user_core, config.item_core, shard)))
    for name, step in steps:
        before = total(log)
        log = step(log)
        if total(log) == 0:
            raise DataError(f"preprocessing step {name} removed all {before} interactions of "
                            f"{dataset.name!r}; loosen it")
    if config.drop_rating and log.rating is not None:
        log = Interactions(log.user_idx, log.item_idx, log.users, log.items, None, log.timestamp, _sorted=True)
    return dataset.with_interactions(log).compact(None if shard is None else shard.sum_across)
