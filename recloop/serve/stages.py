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

from recloop.data.features import Features
from recloop.errors import ConfigError
from recloop.serve.explain import Explainer, render_reason
from recloop.serve.explore import EpsilonGreedy, LinearBandit, LinearBanditConfig, RandomProjection
from recloop.serve.pipeline import Query
from recloop.serve.rerank import MMR, CategoryCap, CategorySimilarity, ItemCategories, VectorSimilarity, chain
from recloop.serve.state import LiveState
from recloop.utils import make_rng

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

    def wants_candidates(self, query: Query) -> bool:
        diversity = self.config.diversity if query.diversity is None else query.diversity
        return diversity > 0 or self.config.max_per_category > 0

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


# --- explanations ---------------------------------------------------------------------------------
def catalog_features(state: LiveState) -> Features | None:
    """The model's item features extended with the items added while serving (titles,
    categorical labels), row-aligned with catalog indices; cached per catalog size."""
    base = state.model.item_features_
    if base is None:
        return None
    catalog = state.catalog
    cache = state.__dict__.setdefault("_features_cache", {})
    n = len(catalog)
    if cache.get("n") == n:
        return cache["features"]
    features = base.aligned_to(state.model.items_)
    if catalog.n_cold:
        cold = range(catalog.n_model, n)
        categorical = {name: [catalog.labels(name, i) for i in cold] for name in features.categorical}
        text = {"title": [catalog.title(i) or catalog.id(i) for i in cold]} if "title" in features.text else {}
        features = features.append(catalog.ids(list(cold)), categorical, text)
    cache.update(n=n, features=features)
    return features


@dataclass(frozen=True)
class ExplainConfig:
    """``verb``: how reasons name the user's action ("Because you watched X").
    ``n_items``: history items cited per recommendation."""

    verb: str = "watched"
    n_items: int = 1


class ExplainStage:
    """Reasons from :class:`recloop.serve.explain.Explainer` (the history item that
    contributes most, shared genres), plus, for items added while serving, the history
    item whose text is closest to theirs (the content path's own reason)."""

    def __init__(self, config: ExplainConfig = ExplainConfig()):
        self.config = config
        self._lock = threading.Lock()

    def explainer(self, state: LiveState) -> Explainer:
        features = catalog_features(state)
        cache = state.__dict__.setdefault("_explainer_cache", {})
        key = len(state.catalog)
        with self._lock:
            if cache.get("n") != key:
                vectors = state.retriever.item_vectors if state.retriever.uses_vectors else None
                cache.update(n=key, explainer=Explainer(
                    state.model, features, item_ids=features.ids if features is not None else state.model.items_,
                    item_vectors=vectors, n_items=self.config.n_items))
            return cache["explainer"]

    def explain(self, state: LiveState, query: Query, items: np.ndarray) -> list[list[str]]:
        view = query.view
        if not len(items) or not len(view.positives):
            return [[] for _ in items]
        reasons = self.explainer(state).explain(items, view.positives)
        cold = [c for c, item in enumerate(items) if state.catalog.is_cold(int(item))]
        if cold:
            self._content_reasons(state, view.positives, items, cold, reasons)
        return [[render_reason(r, self.config.verb) for r in row] for row in reasons]

    def _content_reasons(self, state: LiveState, history: np.ndarray, items: np.ndarray, cold: list[int],
                         reasons: list[list[dict]]) -> None:
        coldstart, n_model = state.cold, state.n_model_items
        catalog = coldstart.catalog_embeddings()
        rows = []
        for h in history:
            if h >= n_model:
                rows.append(coldstart.embeddings[h - n_model])
            elif catalog is not None:
                rows.append(catalog[h])
            else:
                rows.append(None)
        usable = [i for i, row in enumerate(rows) if row is not None]
        if not usable:
            return
        matrix = np.vstack([rows[i] for i in usable])
        for column in cold:
            if any(r["type"] == "because_you_interacted" for r in reasons[column]):
                continue
            similarity = matrix @ coldstart.embeddings[int(items[column]) - n_model]
            best = int(np.argmax(similarity))
            if similarity[best] > 0:
                item = int(history[usable[best]])
                reasons[column].insert(0, {"type": "because_you_interacted", "item_id": state.catalog.id(item),
                                           "title": state.catalog.title(item), "weight": float(similarity[best]),
                                           "basis": "text"})


# --- exploration ----------------------------------------------------------------------------------
EXPLORE_METHODS = ("none", "epsilon", "ucb", "thompson")


@dataclass(frozen=True)
class ExploreConfig:
    """Exploration over the candidates (off by default: answers stay deterministic).

    ``method``: ``epsilon`` (each slot, with probability ``epsilon``, goes to a random
    lower candidate), ``ucb`` (LinUCB) or ``thompson`` (linear Thompson sampling), both
    learning from the logged events: reward 1 for a positive event (click, purchase,
    good rating), 0 for a skip. The context is a short random projection of the model's
    user vector when it has one, else a constant (a click-rate bandit per item).
    ``alpha``: the bandit's exploration width; ``score_weight``: how much the model's
    score (min-max scaled over the candidates) counts beside the bandit's index;
    ``dim``: context length.
    """

    method: str = "none"
    epsilon: float = 0.1
    alpha: float = 0.5
    score_weight: float = 1.0
    dim: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.method not in EXPLORE_METHODS:
            raise ConfigError(f"ExploreConfig.method must be one of {EXPLORE_METHODS}, got {self.method!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"ExploreConfig.epsilon must be in [0, 1], got {self.epsilon}")
        if self.dim < 1:
            raise ConfigError(f"ExploreConfig.dim must be at least 1, got {self.dim}")


class ExploreStage:
    """Adapter of :mod:`recloop.serve.explore` to the live service."""

    def __init__(self, config: ExploreConfig, max_k: int = 100):
        self.config = config
        self._rng = make_rng(config.seed)
        self._lock = threading.Lock()
        self.last_event_id = 0
        self.bandit = None
        if config.method in ("ucb", "thompson"):
            self.bandit = LinearBandit(LinearBanditConfig(dim=config.dim, policy=config.method, alpha=config.alpha,
                                                          k=max_k, score_weight=0.0, seed=config.seed))
        self._projection: dict[int, RandomProjection] = {}

    def _context(self, state: LiveState, view) -> np.ndarray:
        if state.retriever.uses_vectors and len(view.history.item_idx):
            vector = state.retriever.user_vectors([view.user_idx], view.history)[0]
            projection = self._projection.get(len(vector))
            if projection is None:
                projection = self._projection.setdefault(len(vector), RandomProjection(len(vector), self.config.dim,
                                                                                       self.config.seed))
            return projection(vector)
        return np.eye(1, self.config.dim)[0]

    def explore(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
                candidates: np.ndarray, candidate_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = len(items)
        # The shown list first, then the other candidates in score order.
        rest = ~np.isin(candidates, items)
        pool = np.concatenate([items, candidates[rest]])
        pool_scores = np.concatenate([scores, candidate_scores[rest]])
        if self.config.method == "epsilon":
            with self._lock:
                out = EpsilonGreedy(self.config.epsilon, k=max(k, 1), seed=self._rng).explore(pool, pool_scores)
            return out.item_idx[:k], out.scores[:k], out.explored[:k]
        value = self.bandit.index(pool, self._context(state, query.view))
        if self.config.score_weight and len(pool_scores):
            finite = np.isfinite(pool_scores)
            low, high = pool_scores[finite].min(), pool_scores[finite].max()
            scaled = (pool_scores - low) / (high - low) if high > low else np.zeros_like(pool_scores)
            value = value + self.config.score_weight * np.where(finite, scaled, 0.0)
        order = np.argsort(-value, kind="stable")[:k]
        return pool[order], pool_scores[order], order >= k

    def observe(self, state: LiveState, events: list) -> None:
        """Rewards from logged events: 1 for a positive, 0 for a skip."""
        if self.bandit is None:
            return
        fresh = [e for e in events if e.id > self.last_event_id]
        if not fresh:
            return
        self.last_event_id = fresh[-1].id
        items, contexts, rewards = [], [], []
        for event in fresh:
            positive = state.policy.is_positive(event.type, event.value)
            if not positive and event.type != "skip":
                continue
            if event.item_id not in state.catalog:
                continue
            if state.retriever.uses_vectors and state.knows_user(event.user_id):
                context = self._context(state, state.user_view(event.user_id))
            else:
                context = np.eye(1, self.config.dim)[0]
            items.append(state.catalog.index(event.item_id))
            contexts.append(context)
            rewards.append(1.0 if positive else 0.0)
        if items:
            self.bandit.update(np.asarray(items), np.vstack(contexts), np.asarray(rewards))
