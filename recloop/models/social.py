"""Social signals as arrays: what a user's friends have, and the fallback that uses it.

A user with friends but almost no history (a new user who names friends, or a user
with one or two artists) has too little of their own for a collaborative model; what
their friends listen to is the best evidence there is (homophily in social
recommendation: Ma et al., "Recommender Systems with Social Regularization", WSDM
2011). These functions take and return arrays; the models
(:class:`~recloop.models.lightgcn.SocialLightGCN`) and the service wire them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
