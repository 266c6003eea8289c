"""Pure, vectorised metric functions.

Accuracy metrics take ``hits``, a ``(n_users, K)`` boolean array where ``hits[u, r]``
says whether the item at rank ``r + 1`` of user ``u``'s list is relevant, and
``n_relevant``, the number of relevant items of each user. They return one value per
user, so that means, confidence intervals and paired tests come from the same numbers.
Ranks are 1-based in the formulas; ``rel_r`` is ``hits[u, r - 1]``; ``R_u`` is
``n_relevant[u]``.

Beyond-accuracy metrics take the recommendation lists, ``(n_users, k)`` item indices
(``-1`` for an empty slot).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recloop.utils import gini, kl_divergence  # shared with Dataset.describe (the data layer), so it lives below both


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """HR@k = 1 if any of the top k is relevant, else 0."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = (sum_{r<=k} rel_r) / R_u."""
    return hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Precision@k = (sum_{r<=k} rel_r) / k."""
    return hits[:, :k].sum(axis=1) / k


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k = DCG@k / IDCG@k, binary relevance.

    ``DCG@k = sum_{r<=k} rel_r / log2(r + 1)``;
    ``IDCG@k = sum_{r<=min(R_u, k)} 1 / log2(r + 1)`` (all relevant items ranked first).
    """
    discounts = _discounts(k)
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])
    return dcg / np.maximum(ideal[np.minimum(n_relevant, k)], 1e-12)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MRR@k = 1 / (rank of the first relevant item), 0 if none in the top k."""
    top = hits[:, :k]
    first = np.argmax(top, axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = (sum_{r<=k} P@r * rel_r) / min(R_u, k); MAP@k is its mean over users.

    The ``min(R_u, k)`` normaliser (as in RecBole) makes a perfect list score 1 even
    when the user has more than ``k`` relevant items.
    """
    top = hits[:, :k].astype(np.float64)
    precision_at_r = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    return (precision_at_r * top).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1)


ACCURACY_METRICS = {
    "hr": hit_rate,
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
    "mrr": mrr,
    "map": average_precision,
}


# --- beyond accuracy ----------------------------------------------------------------------------
def catalog_coverage(lists: np.ndarray, n_items: int) -> float:
    """Coverage@k = |distinct items in any list| / n_items."""
    return float(np.count_nonzero(np.bincount(lists[lists >= 0], minlength=n_items)) / n_items)


def exposure_gini(lists: np.ndarray, n_items: int) -> float:
    """Gini of exposure: the Gini coefficient of how often each catalog item appears in
    the lists (0 = every item shown equally often, -> 1 = a few items take all).

    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` over all ``n`` catalog items, counts
    ``x_(i)`` sorted ascending (:func:`recloop.utils.gini`).
    """
    return gini(np.bincount(lists[lists >= 0], minlength=n_items))


def intra_list_diversity(lists: np.ndarray, item_vectors: np.ndarray | sp.spmatrix,
                         chunk_users: int = 4096) -> np.ndarray:
    """ILD = mean over pairs i != j in the list of (1 - cos(v_i, v_j)), per user.

    ``item_vectors`` are genre indicators or embeddings, one row per item. Lists with
    fewer than two items score 0; items with a zero vector count as dissimilar (1).
    Only the listed items' vectors are densified, and users go ``chunk_users`` at a
    time, so memory follows the lists, not the catalog.
    """
    valid = lists >= 0
    listed, position = np.unique(np.where(valid, lists, 0), return_inverse=True)
    position = position.reshape(lists.shape)
    vectors = item_vectors[listed]
    vectors = vectors.toarray() if sp.issparse(vectors) else np.asarray(vectors, dtype=np.float64)
    vectors = vectors.astype(np.float64, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    out = np.zeros(len(lists), dtype=np.float64)
    for lo in range(0, len(lists), chunk_users):
        rows = slice(lo, lo + chunk_users)
        v = unit[position[rows]] * valid[rows, :, None]  # (chunk, k, d)
        sim = np.einsum("ukd,uld->ukl", v, v)
        n = valid[rows].sum(axis=1)
        pair_sum = sim.sum(axis=(1, 2)) - np.einsum("ukk->u", sim)
        pairs = n * (n - 1)
        out[rows] = np.where(pairs > 0, 1.0 - pair_sum / np.maximum(pairs, 1), 0.0)
    return out


def miscalibration(lists: np.ndarray, history: sp.csr_matrix, categories: sp.spmatrix | np.ndarray,
                   chunk_users: int = 4096) -> np.ndarray:
    """Miscalibration C_KL (Steck, RecSys 2018) = KL(p || q~) per user, with
    ``p(c|u) = mean_{i in history} p(c|i)``, ``q(c|u) = mean_{i in list} p(c|i)``,
    ``p(c|i) = 1 / |categories(i)|`` for each category of ``i`` and
    ``q~ = 0.99 q + 0.01 p``. 0 is a list whose mix matches the history's; users whose
    history has no categorised item score 0.

    ``history``: ``(users, n_items)`` rows aligned with ``lists``; ``categories``: the
    ``(n_items, n_values)`` multi-hot item matrix (e.g. genres).
    """
    matrix = sp.csr_matrix(categories, dtype=np.float64)
    per_item = np.asarray(matrix.sum(axis=1)).ravel()
    dist = sp.diags(np.divide(1.0, per_item, out=np.zeros_like(per_item), where=per_item > 0)) @ matrix
    history = sp.csr_matrix(history, dtype=np.float64)
    history.data[:] = 1.0
    out = np.zeros(len(lists))
    for lo in range(0, len(lists), chunk_users):
        rows = slice(lo, lo + chunk_users)
        seen = history[rows]
        p = np.asarray((seen @ dist).todense())  # (chunk, values)
        p /= np.maximum(np.diff(seen.indptr), 1)[:, None]
        top = lists[rows]
        valid = top >= 0
        listed = sp.csr_matrix((valid[valid].astype(np.float64), (np.nonzero(valid)[0], top[valid])),
                               shape=(len(top), matrix.shape[0]))
        q = np.asarray((listed @ dist).todense()) / np.maximum(valid.sum(axis=1), 1)[:, None]
        out[rows] = kl_divergence(p, q)
    return out


def novelty(lists: np.ndarray, item_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Novelty@k = mean over the list of -log2(p_i), with p_i = (users of i) / n_users
    in training (items never seen count as seen once), per user."""
    p = np.maximum(item_counts, 1) / max(n_users, 1)
    info = -np.log2(p)
    valid = lists >= 0
    return (info[np.where(valid, lists, 0)] * valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


def average_popularity(lists: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """ARP@k = mean training popularity (number of users) of the listed items, per user."""
    valid = lists >= 0
    return (item_counts[np.where(valid, lists, 0)] * valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


def long_tail_share(lists: np.ndarray, item_counts: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """APLT@k = share of listed items outside the head, the ``head_fraction`` most
    popular items of training (Abdollahpouri et al. 2017), per user."""
    n_head = int(np.ceil(len(item_counts) * head_fraction))
    head = np.zeros(len(item_counts), dtype=bool)
    head[np.argsort(-item_counts, kind="stable")[:n_head]] = True
    valid = lists >= 0
    return ((~head[np.where(valid, lists, 0)]) & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


# --- rating prediction ---------------------------------------------------------------------------
def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """RMSE = sqrt(mean((y_hat - y)^2))."""
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """MAE = mean(|y_hat - y|)."""
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - actual)))
