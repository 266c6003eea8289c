"""Train/validation/test splits of an interaction log.

All splits keep the full vocabularies, so a user or item index means the same thing in
every part. The same seed gives the same split, on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from recloop.data.interactions import Interactions
from recloop.errors import ConfigError, DataError
from recloop.utils import make_rng

SPLIT_METHODS = ("leave-one-out", "ratio", "temporal")


@dataclass(frozen=True, eq=False)
class Split:
    """Three disjoint parts of one log. ``valid`` may be empty.

    ``user_groups`` names sets of users (``user_idx`` arrays) whose results are reported
    apart, e.g. the cold users of :func:`make_cold_users` (``"cold-3"``) and the rest
    (``"warm"``); empty for a plain split."""

    train: Interactions
    valid: Interactions
    test: Interactions
    user_groups: Mapping[str, np.ndarray] = field(default_factory=dict)

    def history(self, stage: str) -> Interactions:
        """What a model may see when scoring ``stage``: the training log for
        ``"valid"``; training plus validation for ``"test"``."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return self.train if len(self.valid) == 0 else self.train.concat(self.valid)
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def target(self, stage: str) -> Interactions:
        return {"valid": self.valid, "test": self.test}[stage]

    def describe(self) -> dict[str, int]:
        out = {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
               "test_users": int(len(self.test.active_users()))}
        out.update({f"users_{name}": len(users) for name, users in self.user_groups.items()})
        return out


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes
    ----------
    method:
        ``"leave-one-out"``: per user, last interaction is test, second-to-last validation
        (users with fewer than 3 interactions keep theirs in training, with 2 the last is
        test). ``"ratio"``: per user, ``test_ratio`` (and ``valid_ratio``) of the
        interactions, drawn at random with ``seed`` or the latest ones when ``by_time``.
        ``"temporal"``: one global time cut; the latest ``test_ratio`` of all interactions
        are test, the ``valid_ratio`` before them validation.
    cold_users, cold_history:
        Simulated cold users (:func:`make_cold_users`): after the split, a ``seed``-ed
        ``cold_users`` share of the users keep only ``cold_history[j]`` of their training
        interactions (the sizes dealt in turn), their other training and validation rows
        are dropped, their test rows kept; results are then reported per group
        (``cold-1``, ``cold-3``, ..., ``warm``). 0 (the default) makes none.
    """

    method: str = "leave-one-out"
    test_ratio: float = 0.2
    valid_ratio: float = 0.0
    by_time: bool = False
    validation: bool = True
    seed: int = 42
    cold_users: float = 0.0
    cold_history: tuple[int, ...] = (1, 3, 5)

    def __post_init__(self):
        if self.method not in SPLIT_METHODS:
            raise ConfigError(f"split.method must be one of {SPLIT_METHODS}, got {self.method!r}")
        if not (0 < self.test_ratio < 1) or not (0 <= self.valid_ratio < 1) or self.test_ratio + self.valid_ratio >= 1:
            raise ConfigError(f"split ratios must satisfy 0 < test_ratio, 0 <= valid_ratio and "
                              f"test_ratio + valid_ratio < 1; got {self.test_ratio}, {self.valid_ratio}")
        if not 0 <= self.cold_users < 1:
            raise ConfigError(f"split.cold_users must be a share in [0, 1), got {self.cold_users}")
        if self.cold_users and (not self.cold_history or min(self.cold_history) < 1):
            raise ConfigError(f"split.cold_history must list positive history sizes, got {self.cold_history}")


def split(log: Interactions, config: SplitConfig) -> Split:
    """Split ``log`` as ``config`` says."""
    if config.method == "leave-one-out":
        parts = leave_one_out(log, validation=config.validation)
    elif config.method == "ratio":
        parts = ratio_split(log, config.test_ratio, config.valid_ratio, seed=config.seed, by_time=config.by_time)
    else:
        parts = temporal_split(log, config.test_ratio, config.valid_ratio)
    if config.cold_users:
        parts = make_cold_users(parts, config.cold_users, config.cold_history, seed=config.seed)
    return parts


def make_cold_users(parts: Split, share: float, sizes: tuple[int, ...] = (1, 3, 5), seed: int = 42) -> Split:
    """Turn a seeded ``share`` of the users into cold users.

    Candidates are the users with a test interaction and more than ``max(sizes)``
    training plus validation interactions (so each keeps strictly less than before).
    ``round(share * n_users_with_test)`` of them are drawn with ``seed`` and dealt the
    sizes in turn (the first drawn keeps ``sizes[0]``, the next ``sizes[1]``, ...): a cold
    user keeps a seeded random ``size`` of their *training* rows, loses all other
    training and validation rows, and keeps every test row, so their test history
    (:meth:`Split.history`) has exactly ``size`` items. The dropped rows are in no part
    (neither trained on nor masked nor counted as targets). ``user_groups`` gets
    ``"cold-<size>"`` for each size and ``"warm"`` for every other user with a test
    interaction.
    """
    rng = make_rng([seed, 1])  # its own stream: the split's draws stay as they were
    train, valid, test = parts.train, parts.valid, parts.test
    known = train.user_counts() + valid.user_counts()
    tested = test.active_users()
    candidates = tested[(known[tested] > max(sizes)) & (train.user_counts()[tested] >= max(sizes))]
    n_cold = min(len(candidates), round(share * len(tested)))
    chosen = rng.permutation(candidates)[:n_cold]
    keep_size = np.full(train.n_users, -1, dtype=np.int64)  # -1: not cold
    keep_size[chosen] = np.resize(np.asarray(sizes, dtype=np.int64), n_cold)
    # a random rank of every training row inside its user; cold users keep ranks < size
    order = np.lexsort((rng.random(len(train)), train.user_idx))
    rank = np.empty(len(train), dtype=np.int64)
    rank[order] = np.arange(len(train)) - np.repeat(train.user_indptr[:-1], train.user_counts())
    row_size = keep_size[train.user_idx]
    train = train.select((row_size < 0) | (rank < row_size))
    valid = valid.select(keep_size[valid.user_idx] < 0)
    groups = {f"cold-{size}": np.sort(chosen[keep_size[chosen] == size]) for size in dict.fromkeys(sizes)}
    groups["warm"] = np.setdiff1d(tested, chosen)
    return replace(parts, train=train, valid=valid, user_groups=groups)


def _parts(log: Interactions, part: np.ndarray) -> Split:
    """``part`` holds 0 (train), 1 (valid) or 2 (test) per row."""
    return Split(log.select(part == 0), log.select(part == 1), log.select(part == 2))


def leave_one_out(log: Interactions, validation: bool = True) -> Split:
    """Last interaction of each user is test, the one before it validation."""
    indptr = log.user_indptr
    lengths = np.diff(indptr)
    part = np.zeros(len(log), dtype=np.int8)
    has_test = lengths >= 2
    part[indptr[1:][has_test] - 1] = 2
    if validation:
        has_valid = lengths >= 3
        part[indptr[1:][has_valid] - 2] = 1
    return _parts(log, part)


def ratio_split(log: Interactions, test_ratio: float, valid_ratio: float = 0.0,
                seed: int = 42, by_time: bool = False) -> Split:
    """Per user, ``round(n * test_ratio)`` interactions to test and
    ``round(n * valid_ratio)`` to validation, at least one of the user's interactions
    staying in training. Random (seeded) or, with ``by_time``, the latest ones."""
    indptr = log.user_indptr
    lengths = np.diff(indptr)
    n_test = np.minimum(np.round(lengths * test_ratio).astype(np.int64), np.maximum(lengths - 1, 0))
    n_valid = np.minimum(np.round(lengths * valid_ratio).astype(np.int64), np.maximum(lengths - 1 - n_test, 0))
    # rank of each row inside its user: 0 = goes to test first
    if by_time:
        rank_in_user = np.repeat(indptr[1:], lengths) - 1 - np.arange(len(log))
    else:
        rng = make_rng(seed)
        keys = rng.random(len(log))
        order = np.lexsort((keys, log.user_idx))
        rank_in_user = np.empty(len(log), dtype=np.int64)
        rank_in_user[order] = np.arange(len(log)) - np.repeat(indptr[:-1], lengths)
    row_test = np.repeat(n_test, lengths)
    row_valid = np.repeat(n_valid, lengths)
    part = np.where(rank_in_user < row_test, 2, np.where(rank_in_user < row_test + row_valid, 1, 0)).astype(np.int8)
    return _parts(log, part)


def temporal_split(log: Interactions, test_ratio: float, valid_ratio: float = 0.0) -> Split:
    """One global cut in time: the latest ``test_ratio`` of interactions are test."""
    if log.timestamp is None:
        raise DataError("a temporal split needs timestamps, and this log has none")
    # Order all rows by (time, canonical position) so equal times split deterministically.
    order = np.lexsort((np.arange(len(log)), log.timestamp))
    n = len(log)
    n_test, n_valid = int(round(n * test_ratio)), int(round(n * valid_ratio))
    part = np.zeros(n, dtype=np.int8)
    part[order[n - n_test:]] = 2
    part[order[n - n_test - n_valid:n - n_test]] = 1
    return _parts(log, part)
