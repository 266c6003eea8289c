"""The pipeline stages of a running service: the pure re-ranking, exploration and
explanation modules (:mod:`recloop.serve.rerank`, ...), fed from a :class:`LiveState`.

The library modules work on item indices and arrays; these adapters supply what they
need from the live catalog (categories including items added while serving, item
similarities) and the request (diversity, k).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recloop.errors import ConfigError
from recloop.serve.pipeline import Query
from recloop.serve.rerank import MMR, CategoryCap, CategorySimilarity, ItemCategories, VectorSimilarity, chain
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


def catalog_categories(state: LiveState, name: str) -> ItemCategories | None:
    """``name`` as :class:`ItemCategories` over the whole catalog (cold items included),
    cached on the state and rebuilt when items are added; ``None`` if no such feature."""
    catalog = state.catalog
    if name not in catalog.feature_names:
        return None
    cache = state.__dict__.setdefault("_categories_cache", {})
    n = len(catalog)
    cached = cache.get(name)
    if cached is not None and len(cached.matrix) == n:
        return cached
    base = ItemCategories.from_features(state.model.item_features_.aligned_to(state.model.items_), name)
    if n > catalog.n_model:
        position = {v: j for j, v in enumerate(base.values)}
        extra = np.zeros((n - catalog.n_model, len(base.values)), dtype=bool)
        for row, index in enumerate(range(catalog.n_model, n)):
            for label in catalog.labels(name, index):
                extra[row, position[label]] = True
        base = ItemCategories(name, base.values, np.vstack([base.matrix, extra]))
    cache[name] = base
    return base


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

    def similarity(self, state: LiveState):
        kind = self.config.similarity
        if kind == "auto":
            if state.retriever.uses_vectors:
                kind = "vectors"
            elif self.config.category in state.catalog.feature_names:
                kind = "categories"
            else:
                kind = "cooccurrence"
        cache = state.__dict__.setdefault("_similarity_cache", {})
        if kind == "vectors":
            if not state.retriever.uses_vectors:
                raise ConfigError(f"{state.model.name} has no item vectors; use similarity 'categories' or "
                                  "'cooccurrence' for diversity")
            return _CatalogVectorSimilarity(state)
        if kind == "categories":
            categories = catalog_categories(state, self.config.category)
            if categories is None:
                raise ConfigError(f"the catalog has no categorical feature {self.config.category!r} for diversity; "
                                  f"features are {state.catalog.feature_names}")
            return CategorySimilarity(categories)
        with self._lock:
            if "cooccurrence" not in cache:
                cache["cooccurrence"] = CooccurrenceSimilarity(state)
        return cache["cooccurrence"]

    def rerank(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        diversity = self.config.diversity if query.diversity is None else query.diversity
        stages = []
        if diversity > 0:
            stages.append(MMR(self.similarity(state), lambda_=1.0 - diversity, k=k))
        if self.config.max_per_category:
            categories = catalog_categories(state, self.config.category)
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
        self.vectors = state.retriever.item_vectors
        self.inner = VectorSimilarity(self.vectors)

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        inside = item_idx < len(self.vectors)
        if inside.all():
            return self.inner(item_idx)
        out = np.zeros((len(item_idx), len(item_idx)), dtype=np.float32)
        rows = np.flatnonzero(inside)
        out[np.ix_(rows, rows)] = self.inner(item_idx[inside])
        return out
