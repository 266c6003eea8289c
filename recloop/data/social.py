"""A user-user relation (a friend graph), row-aligned with a user vocabulary.

:class:`UserGraph` is what a :class:`~recloop.data.Dataset` carries as ``user_graph``:
an undirected, unweighted graph over the dataset's users, held as a symmetric CSR
pattern (row ``u`` lists ``u``'s friends by ``user_idx``, sorted, no self loops). Like
:class:`~recloop.data.Features` it follows the interaction vocabulary: when users are
dropped or renumbered (preprocessing, compaction) :meth:`aligned_to` keeps only the
edges between users that remain. Models get it at fit time (``fit(..., user_graph=)``);
an artifact saves it beside the history, so the service knows who is friends with whom.

Two array functions use it. A user with friends but almost no history (a new user who
names friends, or one with one or two artists) has too little of their own for a
collaborative model; what their friends have is the best evidence there is (homophily:
H. Ma et al., "Recommender Systems with Social Regularization", WSDM 2011).
:func:`friend_item_share` measures it and :func:`social_fallback` blends it into a
model's scores; the social model and the service both call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recloop.data.ids import IdMap
from recloop.errors import DataError


@dataclass(frozen=True, eq=False)
class UserGraph:
    """Symmetric friendships over ``users``: ``indices[indptr[u]:indptr[u + 1]]`` are
    the friends of ``user_idx`` ``u``."""

    users: IdMap
    indptr: np.ndarray
    indices: np.ndarray

    def __post_init__(self):
        if len(self.indptr) != len(self.users) + 1:
            raise DataError(f"user graph indptr has {len(self.indptr)} entries for {len(self.users)} users "
                            f"(expected {len(self.users) + 1})")
        if len(self.indices) != self.indptr[-1]:
            raise DataError(f"user graph has {len(self.indices)} neighbour entries but indptr ends at "
                            f"{self.indptr[-1]}")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(self.users)):
            raise DataError(f"user graph neighbours out of range 0..{len(self.users) - 1}")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_index_pairs(cls, users: IdMap, source: np.ndarray, target: np.ndarray) -> UserGraph:
        """The graph with an edge for every pair ``(source[j], target[j])`` (dense user
        indices), made symmetric; duplicate pairs and self loops are dropped."""
        source = np.asarray(source, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        if len(source) != len(target):
            raise DataError(f"user graph pairs: {len(source)} sources but {len(target)} targets")
        keep = source != target
        rows = np.concatenate([source[keep], target[keep]])
        cols = np.concatenate([target[keep], source[keep]])
        n = len(users)
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
        matrix.sum_duplicates()  # also sorts each row's indices
        return cls(users, matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64))

    @classmethod
    def from_id_pairs(cls, users: IdMap, source_ids: Iterable[object], target_ids: Iterable[object]) -> UserGraph:
        """As :meth:`from_index_pairs` from external ids; a pair naming a user outside
        ``users`` is dropped (a friend with no interactions has no row to live in)."""
        source = users.indices(list(source_ids), missing="negative")
        target = users.indices(list(target_ids), missing="negative")
        known = (source >= 0) & (target >= 0)
        return cls.from_index_pairs(users, source[known], target[known])

    # --- views ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return f"UserGraph(users={len(self)}, friendships={self.n_edges})"

    @property
    def n_edges(self) -> int:
        """Undirected friendships (each counted once)."""
        return len(self.indices) // 2

    def friends(self, user_idx: int) -> np.ndarray:
        """The ``user_idx`` of ``user_idx``'s friends, ascending."""
        if not 0 <= user_idx < len(self):
            raise IndexError(f"user_idx {user_idx} is out of range for a graph of {len(self)} users")
        return self.indices[self.indptr[user_idx]:self.indptr[user_idx + 1]]

    def degree(self) -> np.ndarray:
        """Friends per user, ``(n_users,)``."""
        return np.diff(self.indptr)

    def to_csr(self) -> sp.csr_matrix:
        """The ``(n_users, n_users)`` 0/1 adjacency matrix (symmetric)."""
        data = np.ones(len(self.indices), dtype=np.float32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(len(self), len(self)))

    # --- following a vocabulary ----------------------------------------------------------------
    def aligned_to(self, users: IdMap) -> UserGraph:
        """The graph over ``users``: edges between users present in both vocabularies
        are kept, renumbered; users only in ``users`` get no friends."""
        if users == self.users:
            return self
        position = users.indices(self.users.ids, missing="negative")  # old index -> new index
        rows = np.repeat(np.arange(len(self)), self.degree())
        source, target = position[rows], position[self.indices]
        keep = (source >= 0) & (target >= 0)
        return UserGraph.from_index_pairs(users, source[keep], target[keep])

    def describe(self) -> dict:
        degree = self.degree()
        return {"users": len(self), "friendships": self.n_edges,
                "users_with_friends": int((degree > 0).sum()),
                "median_friends": float(np.median(degree)) if len(degree) else 0.0,
                "max_friends": int(degree.max()) if len(degree) else 0}

    # --- persistence ---------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "indices": self.indices}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], users: IdMap) -> UserGraph:
        return cls(users, np.asarray(arrays["indptr"], dtype=np.int64), np.asarray(arrays["indices"], dtype=np.int64))


def friend_item_share(friend_rows: sp.csr_matrix, user_items: sp.csr_matrix) -> np.ndarray:
    """For each row's friends, the share of them that have each item.

    ``friend_rows`` is ``(b, n_users)`` (1 where the column user is a friend of row
    ``r``), ``user_items`` the binary ``(n_users, n_items)`` matrix of what every user
    has. Returns float32 ``(b, n_items)`` in ``[0, 1]``; all zero for a row with no
    friends.
    """
    friend_rows = sp.csr_matrix(friend_rows, dtype=np.float32)
    n_friends = np.asarray(friend_rows.sum(axis=1), dtype=np.float32).reshape(-1)
    counts = (friend_rows @ user_items).toarray().astype(np.float32)  # (b, n_items): friends having each item
    return counts / np.maximum(n_friends, 1.0)[:, None]


def social_fallback(scores: np.ndarray, share: np.ndarray, weight: float) -> np.ndarray:
    """Blend a model's ``scores`` with the friends' ``share`` (both ``(b, n_items)``):
    ``(1 - weight) * minmax(scores) + weight * share``, row by row. Min-max scaling puts
    the model's scores on the share's ``[0, 1]`` scale; ``weight = 1`` ranks by the
    friends alone (ties by the model, through a tiny remainder of its scores)."""
    scores = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(scores)
    low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    scaled = np.where(finite, (scores - low) / np.maximum(high - low, 1e-12), scores)
    weight = float(np.clip(weight, 0.0, 1.0))
    return (max(1.0 - weight, 1e-3) * scaled + weight * share).astype(np.float32)
