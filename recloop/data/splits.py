"""Train/validation/test splits of an interaction log.

All splits keep the full vocabularies, so a user or item index means the same thing in
every part. The same seed gives the same split, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.interactions import Interactions
from recloop.errors import ConfigError, DataError
from recloop.utils import make_rng

SPLIT_METHODS = ("leave-one-out", "ratio", "temporal")


@dataclass(frozen=True, eq=False)
class Split:
    """Three disjoint parts of one log. ``valid`` may be empty."""

    train: Interactions
    valid: Interactions
    test: Interactions

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
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                "test_users": int(len(self.test.active_users()))}


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
    """

    method: str = "leave-one-out"
    test_ratio: float = 0.2
    valid_ratio: float = 0.0
    by_time: bool = False
    validation: bool = True
    seed: int = 42

    def __post_init__(self):
        if self.method not in SPLIT_METHODS:
            raise ConfigError(f"split.method must be one of {SPLIT_METHODS}, got {self.method!r}")
        if not (0 < self.test_ratio < 1) or not (0 <= self.valid_ratio < 1) or self.test_ratio + self.valid_ratio >= 1:
            raise ConfigError(f"split ratios must satisfy 0 < test_ratio, 0 <= valid_ratio and "
                              f"test_ratio + valid_ratio < 1; got {self.test_ratio}, {self.valid_ratio}")


def split(log: Interactions, config: SplitConfig) -> Split:
    """Split ``log`` as ``config`` says."""
    if config.method == "leave-one-out":
        return leave_one_out(log, validation=config.validation)
    if config.method == "ratio":
        return ratio_split(log, config.test_ratio, config.valid_ratio, seed=config.seed, by_time=config.by_time)
    return temporal_split(log, config.test_ratio, config.valid_ratio)


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
