"""Reasons for a recommended item, from the user's history: "because you watched X".

Two kinds of reason, as plain dicts the service returns as JSON and can render as text
with :func:`render_reason`:

* ``{"type": "because_you_interacted", "item_id": "50", "title": "Star Wars (1977)",
  "weight": 0.31, "basis": "item_weight" | "cosine"}``: the history item that explains
  the recommendation best. For item-item models, whose score is ``x_u W`` (EASE's
  ``weights_``, ItemKNN's ``similarity_``), that is the history item ``h`` with the
  largest contribution ``W[h, item]`` (times its rating for models fitted on ratings):
  the score is exactly the sum of these contributions, so the reason is faithful.
  For embedding models (``item_vectors()``) it is the history item whose vector has the
  highest cosine with the item's, a proxy rather than a decomposition of the score. A
  history item contributing nothing (weight <= 0) is no reason.
* ``{"type": "shared_genres", "item_id": "50", "genres": ["Comedy", "Drama"]}``: the
  values of a categorical feature the recommended item shares with the "because" item
  above (``item_id``), in the feature's vocabulary order. No "because" item, no shared
  genres: a list of the user's favourite genres would not say why this item.

Item features must be row-aligned with item indices (as :class:`~recloop.data.Dataset`
keeps them, and ``Features.append`` extends them for items added at runtime).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.errors import ConfigError, NotFittedError
from recloop.rank.rerank import ItemCategories

#: Attributes holding an item-item matrix ``W`` with ``score = x_u @ W``, by model.
ITEM_ITEM_ATTRIBUTES = ("weights_", "similarity_")  # EASE, ItemKNN

Reason = dict[str, Any]


def item_item_matrix(model: Any) -> np.ndarray | sp.spmatrix | None:
    """The model's ``(n_items, n_items)`` matrix ``W`` with ``score = x_u W``, if it has one."""
    n = getattr(model, "n_items", None)
    for name in ITEM_ITEM_ATTRIBUTES:
        matrix = getattr(model, name, None)
        if (isinstance(matrix, np.ndarray) or sp.issparse(matrix)) and matrix.ndim == 2 \
                and matrix.shape[0] == matrix.shape[1] and (n is None or matrix.shape[0] == n):
            return matrix
    return None


class Explainer:
    """Reasons for recommended items of a fitted model.

    ``item_features``: side features (titles from the ``title`` text field, genres from
    the ``category`` categorical feature; by default ``"genre"`` or else the first one).
    ``item_ids``: the vocabulary for reported ids, by default the features' (which grow
    with added items) or the model's. ``item_vectors``: vectors to use for the cosine
    reason, by default ``model.item_vectors()``; pass ``retriever.item_vectors`` to cover
    items added at runtime. ``n_items``: how many "because" reasons per item (1).
    """

    def __init__(self, model: Any, item_features: Features | None = None, *, category: str | None = None,
                 title: str = "title", item_ids: IdMap | None = None, item_vectors: np.ndarray | None = None,
                 n_items: int = 1):
        if not getattr(model, "is_fitted", False):
            raise NotFittedError(f"{type(model).__name__} is not fitted; call fit() or recloop.artifact.load_model() "
                                 "before building an Explainer")
        if n_items < 0:
            raise ConfigError(f"Explainer n_items must be >= 0, got {n_items}")
        self.model = model
        self.n_items = n_items
        self.matrix = item_item_matrix(model)
        self.weighted = bool(getattr(getattr(model, "config", None), "weighted", False))
        if item_vectors is None and self.matrix is None and callable(getattr(model, "item_vectors", None)):
            item_vectors = model.item_vectors()
        self.item_vectors = None if item_vectors is None else np.asarray(item_vectors, dtype=np.float32)
        self.item_features = item_features
        self.item_ids = item_ids or (item_features.ids if item_features is not None else model.items_)
        self.titles = None
        self.categories: ItemCategories | None = None
        if item_features is not None:
            if title in item_features.text:
                self.titles = item_features.text[title]
            if category is None and item_features.categorical:
                category = "genre" if "genre" in item_features.categorical else next(iter(item_features.categorical))
            if category is not None:
                self.categories = ItemCategories.from_features(item_features, category)

    def __repr__(self) -> str:
        basis = "item_weight" if self.matrix is not None else "cosine" if self.item_vectors is not None else "none"
        category = self.categories.name if self.categories is not None else None
        return f"Explainer({type(self.model).__name__}, basis={basis!r}, category={category!r})"

    # --- the two kinds of reason ---------------------------------------------------------------
    def _contributions(self, history: np.ndarray, ratings: np.ndarray | None,
                       items: np.ndarray) -> tuple[np.ndarray, str] | None:
        """``(len(history), len(items))`` weight of each history item for each item."""
        if self.matrix is not None:
            n = self.matrix.shape[0]
            inside = (history < n)[:, None] & (items < n)[None, :]
            h, i = np.minimum(history, n - 1), np.minimum(items, n - 1)
            if sp.issparse(self.matrix):
                block = self.matrix[h][:, i].toarray()
            else:
                block = self.matrix[np.ix_(h, i)]
            block = np.asarray(block, dtype=np.float64)
            if self.weighted and ratings is not None:
                block = block * ratings[:, None]
            block[~inside] = -np.inf
            if np.isfinite(block).any() or self.item_vectors is None:
                block[history[:, None] == items[None, :]] = -np.inf
                return block, "item_weight"
        if self.item_vectors is not None:
            n = len(self.item_vectors)
            inside = (history < n)[:, None] & (items < n)[None, :]
            h = self.item_vectors[np.minimum(history, n - 1)]
            v = self.item_vectors[np.minimum(items, n - 1)]
            h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            block = np.einsum("hd,id->hi", h, v).astype(np.float64)  # tiny: no BLAS threads
            block[~inside | (history[:, None] == items[None, :])] = -np.inf
            return block, "cosine"
        return None

    def _item_reason(self, item_idx: int, weight: float, basis: str) -> Reason:
        title = None
        if self.titles is not None and item_idx < len(self.titles):
            title = str(self.titles[item_idx]) or None
        item_id = self.item_ids.id(item_idx) if item_idx < len(self.item_ids) else str(item_idx)
        return {"type": "because_you_interacted", "item_id": item_id, "title": title,
                "weight": round(float(weight), 6), "basis": basis, "item_idx": int(item_idx)}

    def explain(self, item_idx: int | Sequence[int] | np.ndarray, history: Sequence[int] | np.ndarray,
                ratings: Sequence[float] | np.ndarray | None = None) -> list[list[Reason]]:
        """Reasons for each of ``item_idx`` given one user's ``history`` (item indices,
        with ``ratings`` aligned when the model was fitted on ratings). One list of
        reasons per item: the "because" reasons (best first), then the genres the item
        shares with the best "because" item."""
        items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        history = np.asarray(history, dtype=np.int64).reshape(-1)
        rating_array = None if ratings is None else np.asarray(ratings, dtype=np.float64).reshape(-1)
        if rating_array is not None and len(rating_array) != len(history):
            raise ValueError(f"ratings has {len(rating_array)} entries for {len(history)} history items")
        # A repeated history item counts once, at its latest rating.
        _, last = np.unique(history[::-1], return_index=True)
        keep = np.sort(len(history) - 1 - last)
        keep = keep[history[keep] >= 0]
        history = history[keep]
        rating_array = None if rating_array is None else rating_array[keep]
        reasons: list[list[Reason]] = [[] for _ in items]
        if len(history) and len(items) and self.n_items:
            found = self._contributions(history, rating_array, items)
            if found is not None:
                weights, basis = found
                best = np.argsort(-weights, axis=0, kind="stable")[:self.n_items]  # (n, items)
                for col in range(len(items)):
                    for row in best[:, col]:
                        if weights[row, col] > 0 and np.isfinite(weights[row, col]):
                            reasons[col].append(self._item_reason(int(history[row]), weights[row, col], basis))
        if self.categories is not None:
            for col in range(len(items)):
                because = next((r for r in reasons[col] if r["type"] == "because_you_interacted"), None)
                if because is None or because.get("item_idx") is None:
                    continue
                shared = self.shared_genres(int(items[col]), because["item_idx"])
                if shared:
                    reasons[col].append({"type": "shared_genres", "item_id": because["item_id"], "genres": shared})
        for row in reasons:
            for reason in row:
                reason.pop("item_idx", None)
        return reasons


    def shared_genres(self, item_idx: int, because_idx: int) -> list[str]:
        """The category values ``item_idx`` shares with ``because_idx``, in vocabulary order."""
        if self.categories is None:
            return []
        pair = self.categories.rows(np.asarray([item_idx, because_idx]))
        return [self.categories.values[j] for j in np.flatnonzero(pair[0] & pair[1])]


def render_reason(reason: Reason, verb: str = "watched", similar: bool = False) -> str:
    """One reason as a line of text: "Because you watched Toy Story (1995)",
    "Shared genres: Comedy, Drama". With ``similar`` (items related to one item, no
    user): "Similar to Toy Story (1995)", "Shared genres: ..."."""
    if reason["type"] == "because_you_interacted":
        name = reason.get("title") or reason["item_id"]
        return f"Similar to {name}" if similar else f"Because you {verb} {name}"
    if reason["type"] == "shared_genres":
        return f"Shared genres: {', '.join(reason['genres'])}"
    raise ValueError(f"unknown reason type {reason['type']!r}; types are 'because_you_interacted', 'shared_genres'")
