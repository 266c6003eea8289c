"""The interaction log: who did what, when, in dense indices.

:class:`Interactions` is immutable. Rows are kept in one canonical order, by user, then
timestamp, then position in the source file, so "the user's sequence" and "the last
item" mean the same thing everywhere (splits, sequence models, serving) and ties in
time are broken the same way on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recloop.data.ids import IdMap
from recloop.errors import DataError


@dataclass(frozen=True, eq=False)
class UserHistories:
    """The time-ordered items of a batch of users, in CSR layout.

    Row ``r`` holds ``item_idx[indptr[r]:indptr[r+1]]``, oldest first. This is what a
    model sees of a user at scoring time: the training log in offline evaluation, the
    live event log when serving.
    """

    indptr: np.ndarray
    item_idx: np.ndarray
    n_items: int
    rating: np.ndarray | None = None

    @classmethod
    def from_lists(cls, items: Sequence[Sequence[int]], n_items: int,
                   ratings: Sequence[Sequence[float]] | None = None) -> UserHistories:
        lengths = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
        indptr = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in items]) if len(items) else np.empty(0, np.int64)
        flat_r = None
        if ratings is not None:
            flat_r = np.concatenate([np.asarray(x, dtype=np.float32) for x in ratings]) if len(items) else np.empty(0, np.float32)
        if flat.size and (flat.min() < 0 or flat.max() >= n_items):
            raise DataError(f"history item index out of range 0..{n_items - 1}")
        return cls(indptr, flat, n_items, flat_r)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, r: int) -> np.ndarray:
        return self.item_idx[self.indptr[r]:self.indptr[r + 1]]

    def to_csr(self, weighted: bool = False) -> sp.csr_matrix:
        """A ``(len(self), n_items)`` matrix; binary unless ``weighted`` (ratings)."""
        if weighted and self.rating is not None:
            values = self.rating.astype(np.float32)
        else:
            values = np.ones(len(self.item_idx), dtype=np.float32)
        matrix = sp.csr_matrix((values, self.item_idx, self.indptr), shape=(len(self), self.n_items))
        matrix.sum_duplicates()  # also sorts indices; repeated items count once when binary
        if not weighted:
            matrix.data[:] = 1.0
        return matrix

    def padded(self, max_len: int, pad: int = -1) -> np.ndarray:
        """The last ``max_len`` items of each row, right-aligned, left-padded with ``pad``.

        Shape ``(len(self), max_len)``; the most recent item sits in the last column.
        """
        out = np.full((len(self), max_len), pad, dtype=np.int64)
        lengths = np.minimum(self.lengths, max_len)
        if lengths.sum() == 0:
            return out
        rows = np.repeat(np.arange(len(self)), lengths)
        # position inside the kept tail: 0..length-1, then shift right-aligned
        offset_in_tail = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = max_len - np.repeat(lengths, lengths) + offset_in_tail
        src = np.repeat(self.indptr[1:] - lengths, lengths) + offset_in_tail
        out[rows, cols] = self.item_idx[src]
        return out


class Interactions:
    """An immutable log of user-item interactions over fixed user and item vocabularies.

    Parameters
    ----------
    user_idx, item_idx:
        Dense indices into ``users`` and ``items``, one entry per interaction.
    users, items:
        The vocabularies. They may hold ids with no interaction here (a test split keeps
        the vocabularies of the whole dataset so indices agree across splits).
    rating:
        Optional explicit value (a rating, a count, a weight) per interaction.
    timestamp:
        Optional event time (any integer unit) per interaction.
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, users: IdMap, items: IdMap,
                 rating: np.ndarray | None = None, timestamp: np.ndarray | None = None,
                 *, _sorted: bool = False):
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        n = len(user_idx)
        if len(item_idx) != n:
            raise DataError(f"user_idx has {n} entries but item_idx has {len(item_idx)}")
        for name, values in (("rating", rating), ("timestamp", timestamp)):
            if values is not None and len(values) != n:
                raise DataError(f"{name} has {len(values)} entries but there are {n} interactions")
        if n and (user_idx.min() < 0 or user_idx.max() >= len(users)):
            raise DataError(f"user_idx out of range 0..{len(users) - 1}")
        if n and (item_idx.min() < 0 or item_idx.max() >= len(items)):
            raise DataError(f"item_idx out of range 0..{len(items) - 1}")
        rating = None if rating is None else np.asarray(rating, dtype=np.float32)
        timestamp = None if timestamp is None else np.asarray(timestamp, dtype=np.int64)
        if not _sorted and not _in_canonical_order(user_idx, timestamp):
            # Canonical order: user, then time, then source position (lexsort is stable).
            keys = (user_idx,) if timestamp is None else (timestamp, user_idx)
            order = np.lexsort(keys)
            # One column at a time, so that at most one extra column is alive at once.
            user_idx = user_idx[order]
            item_idx = item_idx[order]
            rating = None if rating is None else rating[order]
            timestamp = None if timestamp is None else timestamp[order]
            del order
        self._user_idx, self._item_idx = user_idx, item_idx
        self._rating, self._timestamp = rating, timestamp
        for array in (self._user_idx, self._item_idx, self._rating, self._timestamp):
            if array is not None:
                array.flags.writeable = False
        self.users, self.items = users, items

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_ids(cls, user_ids: Sequence[object] | np.ndarray, item_ids: Sequence[object] | np.ndarray,
                 rating: np.ndarray | None = None, timestamp: np.ndarray | None = None,
                 users: IdMap | None = None, items: IdMap | None = None) -> Interactions:
        """Build from external ids; vocabularies are built in order of first appearance
        unless given (then every id must be in them)."""
        if users is None:
            users, user_idx = IdMap.from_values(user_ids, "user")
        else:
            user_idx = users.indices(user_ids)
        if items is None:
            items, item_idx = IdMap.from_values(item_ids, "item")
        else:
            item_idx = items.indices(item_ids)
        return cls(user_idx, item_idx, users, items, rating, timestamp)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, user: str = "user_id", item: str = "item_id",
                   rating: str | None = None, timestamp: str | None = None) -> Interactions:
        """Build from a data frame with the named columns."""
        missing = [c for c in (user, item, rating, timestamp) if c is not None and c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {missing} not in the frame; it has {list(frame.columns)}")
        return cls.from_ids(frame[user].to_numpy(), frame[item].to_numpy(),
                            None if rating is None else frame[rating].to_numpy(dtype=np.float32),
                            None if timestamp is None else frame[timestamp].to_numpy(dtype=np.int64))

    def _like(self, user_idx, item_idx, rating, timestamp, users=None, items=None, sorted_=False) -> Interactions:
        return Interactions(user_idx, item_idx, users or self.users, items or self.items,
                            rating, timestamp, _sorted=sorted_)

    # --- basic views --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._user_idx)

    def __repr__(self) -> str:
        return (f"Interactions(n={len(self)}, users={self.n_users}, items={self.n_items}, "
                f"rating={self.has_rating}, timestamp={self.has_timestamp})")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def user_idx(self) -> np.ndarray:
        return self._user_idx

    @property
    def item_idx(self) -> np.ndarray:
        return self._item_idx

    @property
    def rating(self) -> np.ndarray | None:
        return self._rating

    @property
    def timestamp(self) -> np.ndarray | None:
        return self._timestamp

    @property
    def has_rating(self) -> bool:
        return self._rating is not None

    @property
    def has_timestamp(self) -> bool:
        return self._timestamp is not None

    @cached_property
    def user_indptr(self) -> np.ndarray:
        """``indptr`` of the rows grouped by user (length ``n_users + 1``)."""
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self._user_idx, minlength=self.n_users), out=indptr[1:])
        return indptr

    def to_frame(self) -> pd.DataFrame:
        """The log with external ids, in canonical order."""
        frame = pd.DataFrame({"user_id": self.users.ids[self._user_idx],
                              "item_id": self.items.ids[self._item_idx]})
        if self._rating is not None:
            frame["rating"] = self._rating
        if self._timestamp is not None:
            frame["timestamp"] = self._timestamp
        return frame

    # --- matrices and sequences -----------------------------------------------------------
    def to_csr(self, weighted: bool = False) -> sp.csr_matrix:
        """The ``(n_users, n_items)`` matrix: 1 per distinct pair, or summed ratings if
        ``weighted`` (rating-less logs count occurrences). A fresh copy each call."""
        return self._binary_csr.copy() if not weighted else self._weighted_csr.copy()

    @cached_property
    def _binary_csr(self) -> sp.csr_matrix:
        matrix = self._weighted_matrix(np.ones(len(self), dtype=np.float32))
        matrix.data[:] = 1.0
        return matrix

    @cached_property
    def _weighted_csr(self) -> sp.csr_matrix:
        values = self._rating if self._rating is not None else np.ones(len(self), dtype=np.float32)
        return self._weighted_matrix(values)

    def _weighted_matrix(self, values: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix((values.astype(np.float32), (self._user_idx, self._item_idx)),
                               shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        return matrix

    def histories(self, user_idx: np.ndarray | None = None) -> UserHistories:
        """The time-ordered items of ``user_idx`` (all users by default)."""
        indptr = self.user_indptr
        if user_idx is None:
            return UserHistories(indptr, self._item_idx, self.n_items, self._rating)
        user_idx = np.asarray(user_idx, dtype=np.int64)
        starts, ends = indptr[user_idx], indptr[user_idx + 1]
        lengths = ends - starts
        out_ptr = np.zeros(len(user_idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_ptr[1:])
        src = np.repeat(starts - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])
        rating = None if self._rating is None else self._rating[src]
        return UserHistories(out_ptr, self._item_idx[src], self.n_items, rating)

    def user_counts(self) -> np.ndarray:
        """Interactions per user (``n_users``,)."""
        return np.bincount(self._user_idx, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Distinct users per item (``n_items``,): the item's popularity."""
        return np.bincount(self._binary_csr.indices, minlength=self.n_items)

    def active_users(self) -> np.ndarray:
        """Indices of users with at least one interaction."""
        return np.flatnonzero(np.diff(self.user_indptr))

    # --- derived logs -----------------------------------------------------------------------
    def select(self, mask: np.ndarray) -> Interactions:
        """The rows where ``mask`` is true (boolean mask or row indices), same vocabularies."""
        return self._like(self._user_idx[mask], self._item_idx[mask],
                          None if self._rating is None else self._rating[mask],
                          None if self._timestamp is None else self._timestamp[mask], sorted_=True)

    def concat(self, other: Interactions) -> Interactions:
        """Both logs together; they must share vocabularies."""
        if other.users != self.users or other.items != self.items:
            raise DataError("cannot concatenate interactions over different user/item vocabularies")
        if (self._rating is None) != (other._rating is None) or (self._timestamp is None) != (other._timestamp is None):
            raise DataError("cannot concatenate interactions with different columns (rating/timestamp)")

        def cat(a, b):
            return None if a is None else np.concatenate([a, b])
        # Keep canonical order: with no timestamps, self's rows come before other's.
        return self._like(cat(self._user_idx, other._user_idx), cat(self._item_idx, other._item_idx),
                          cat(self._rating, other._rating), cat(self._timestamp, other._timestamp))

    def remap(self, user_keep: np.ndarray, item_keep: np.ndarray) -> Interactions:
        """Renumber onto the sub-vocabularies ``users.take(user_keep)``/``items.take(item_keep)``;
        rows whose user or item is not kept are dropped."""
        user_new = np.full(self.n_users, -1, dtype=np.int64)
        user_new[user_keep] = np.arange(len(user_keep))
        item_new = np.full(self.n_items, -1, dtype=np.int64)
        item_new[item_keep] = np.arange(len(item_keep))
        u, i = user_new[self._user_idx], item_new[self._item_idx]
        keep = (u >= 0) & (i >= 0)
        return self._like(u[keep], i[keep],
                          None if self._rating is None else self._rating[keep],
                          None if self._timestamp is None else self._timestamp[keep],
                          users=self.users.take(user_keep), items=self.items.take(item_keep))

    # --- persistence ------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for safetensors/npz); the vocabularies go separately as JSON."""
        arrays = {"user_idx": self._user_idx, "item_idx": self._item_idx}
        if self._rating is not None:
            arrays["rating"] = self._rating
        if self._timestamp is not None:
            arrays["timestamp"] = self._timestamp
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], users: IdMap, items: IdMap) -> Interactions:
        return cls(arrays["user_idx"], arrays["item_idx"], users, items,
                   arrays.get("rating"), arrays.get("timestamp"), _sorted=True)


def _in_canonical_order(user_idx: np.ndarray, timestamp: np.ndarray | None, block: int = 1 << 20) -> bool:
    """Whether rows are already by user, then time (a log written user by user, oldest
    first, needs no sort). Checked in blocks so that it costs no full-length temporary."""
    for start in range(0, len(user_idx) - 1, block):
        stop = min(start + block + 1, len(user_idx))
        users = user_idx[start:stop]
        step = users[1:] - users[:-1]
        if (step < 0).any():
            return False
        if timestamp is not None:
            times = timestamp[start:stop]
            if ((step == 0) & (times[1:] < times[:-1])).any():
                return False
    return True
