"""The re-ranking stage: from the candidates to the ``k`` shown, with MMR diversity and a
cap of exposure per category (the algorithms are :mod:`recloop.rank.rerank`).

This module wires them to a live state: what "alike" means (the model's item vectors,
the catalog's categories including items added while serving, or co-occurrence in the
training log) and the request's diversity. Its caches are its own, per live state.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recloop.errors import ConfigError
from recloop.rank.rerank import MMR, CategoryCap, CategorySimilarity, ItemCategories, VectorSimilarity, chain

if TYPE_CHECKING:
    from recloop.serve.catalog import Catalog
    from recloop.serve.pipeline import Query
    from recloop.serve.state import LiveState

SIMILARITIES = ("auto", "vectors", "categories", "cooccurrence")


@dataclass(frozen=True)
class RerankConfig:
    """Re-ranking of the candidates.

    ``diversity``: the default when a request gives none; 0 keeps the model's order, 1
    is the most diverse list MMR makes (MMR's lambda is ``1 - diversity``).
    ``similarity``: what "alike" means for diversity: ``vectors`` (the model's item
    vectors), ``categories`` (cosine of ``category`` multi-hot rows, e.g. genres),
    ``cooccurrence`` (cosine of the items' user columns in the training log), or
    ``auto``: vectors when the model has them, else categories when the catalog has
    ``category``, else co-occurrence.
    ``category``: the categorical item feature used by ``categories`` and the cap.
    ``max_per_category``: at most this many items of one ``category`` value in a
    list (0: no cap).
    """

    diversity: float = 0.0
    similarity: str = "auto"
    category: str = "genre"
    max_per_category: int = 0

    def __post_init__(self):
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"RerankConfig.diversity must be in [0, 1], got {self.diversity}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"RerankConfig.similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.max_per_category < 0:
            raise ConfigError(f"RerankConfig.max_per_category must be >= 0, got {self.max_per_category}")


def catalog_categories(state: LiveState, catalog: Catalog, name: str) -> ItemCategories | None:
    """``name`` as :class:`ItemCategories` over ``catalog`` (cold items included);
    ``None`` if there is no such feature."""
    if name not in catalog.feature_names:
        return None
    n = len(catalog)
    base = ItemCategories.from_features(state.model.item_features_.aligned_to(state.model.items_), name)
    if n > catalog.n_model:
        position = {v: j for j, v in enumerate(base.values)}
        extra = np.zeros((n - catalog.n_model, len(base.values)), dtype=bool)
        for row, index in enumerate(range(catalog.n_model, n)):
            for label in catalog.labels(name, index):
                extra[row, position[label]] = True
        base = ItemCategories(name, base.values, np.vstack([base.matrix, extra]))
    return base


class CategoryCache:
    """:func:`catalog_categories` per live state, rebuilt when a query's catalog
    snapshot has items the cached one lacks (a larger one serves older snapshots too)."""

    def __init__(self):
        self._by_state: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, state: LiveState, catalog: Catalog, name: str) -> ItemCategories | None:
        with self._lock:
            cached = self._by_state.setdefault(state, {}).get(name)
        if cached is not None and len(cached.matrix) >= len(catalog):
            return cached
        built = catalog_categories(state, catalog, name)
        with self._lock:
            entries = self._by_state.setdefault(state, {})
            current = entries.get(name)
            if built is not None and (current is None or len(current.matrix) < len(built.matrix)):
                entries[name] = built
        return built


class CooccurrenceSimilarity:
    """Cosine of items' columns in the training user-item matrix ("bought by the same
    people"); items without interactions (cold items) are similar to nothing."""

    def __init__(self, state: LiveState):
        matrix = state.model.history_.to_csr().tocsc()
        self.matrix = matrix
        self.norms = np.sqrt(np.asarray(matrix.power(2).sum(axis=0)).ravel()).astype(np.float32)
        self.n_model = matrix.shape[1]

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        inside = item_idx < self.n_model
        columns = np.where(inside, item_idx, 0)
        block = self.matrix[:, columns]
        block = block @ sp.diags(inside.astype(np.float32))
        gram = np.asarray((block.T @ block).todense(), dtype=np.float32)
        norms = np.where(inside, self.norms[columns], 0.0)
        denominator = np.outer(norms, norms)
        return np.divide(gram, denominator, out=np.zeros_like(gram), where=denominator > 0)


class RerankStage:
    """MMR diversity, then the per-category exposure cap (see :class:`RerankConfig`)."""

    def __init__(self, config: RerankConfig = RerankConfig()):
        self.config = config
        self._lock = threading.Lock()
        self._categories = CategoryCache()
        self._cooccurrence: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # state -> similarity

    def similarity(self, state: LiveState, catalog: Catalog):
        kind = self.config.similarity
        if kind == "auto":
            if state.retrieval.uses_vectors:
                kind = "vectors"
            elif self.config.category in catalog.feature_names:
                kind = "categories"
            else:
                kind = "cooccurrence"
        if kind == "vectors":
            if not state.retrieval.uses_vectors:
                raise ConfigError(f"{state.model.name} has no item vectors; use similarity 'categories' or "
                                  "'cooccurrence' for diversity")
            return _CatalogVectorSimilarity(state)
        if kind == "categories":
            categories = self._categories.get(state, catalog, self.config.category)
            if categories is None:
                raise ConfigError(f"the catalog has no categorical feature {self.config.category!r} for diversity; "
                                  f"features are {catalog.feature_names}")
            return CategorySimilarity(categories)
        with self._lock:
            if state not in self._cooccurrence:
                self._cooccurrence[state] = CooccurrenceSimilarity(state)
            return self._cooccurrence[state]

    def wants_candidates(self, query: Query) -> bool:
        diversity = self.config.diversity if query.diversity is None else query.diversity
        return diversity > 0 or self.config.max_per_category > 0

    def rerank(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        diversity = self.config.diversity if query.diversity is None else query.diversity
        stages = []
        if diversity > 0:
            stages.append(MMR(self.similarity(state, query.catalog), lambda_=1.0 - diversity, k=k))
        if self.config.max_per_category:
            categories = self._categories.get(state, query.catalog, self.config.category)
            if categories is not None:
                stages.append(CategoryCap(categories, self.config.max_per_category, k))
        if not stages:
            return items[:k], scores[:k]
        items, scores = chain(*stages)(items, scores)
        return items[:k], scores[:k]


class _CatalogVectorSimilarity:
    """Vector cosine over the retrieval index; cold items outside the index (content
    path) are similar to nothing."""

    def __init__(self, state: LiveState):
        self.vectors = state.retrieval.item_vectors
        self.inner = VectorSimilarity(self.vectors)

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        inside = item_idx < len(self.vectors)
        if inside.all():
            return self.inner(item_idx)
        out = np.zeros((len(item_idx), len(item_idx)), dtype=np.float32)
        rows = np.flatnonzero(inside)
        out[np.ix_(rows, rows)] = self.inner(item_idx[inside])
        return out
