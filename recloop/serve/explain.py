"""The explanation stage: reasons for each item shown (the algorithm is
:class:`recloop.rank.explain.Explainer`), over the live catalog including the items
added while serving. Its cache (one explainer per live state and catalog size) is its own.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recloop.rank.explain import Explainer, render_reason

if TYPE_CHECKING:
    from recloop.data.features import Features
    from recloop.serve.catalog import Catalog
    from recloop.serve.pipeline import Query
    from recloop.serve.state import LiveState

def catalog_features(state: LiveState, catalog: Catalog) -> Features | None:
    """The model's item features extended with the items of ``catalog`` added while
    serving (titles, categorical labels), row-aligned with catalog indices."""
    base = state.model.item_features_
    if base is None:
        return None
    n = len(catalog)
    features = base.aligned_to(state.model.items_)
    if catalog.n_cold:
        cold = range(catalog.n_model, n)
        categorical = {name: [catalog.labels(name, i) for i in cold] for name in features.categorical}
        text = {"title": [catalog.title(i) or catalog.id(i) for i in cold]} if "title" in features.text else {}
        features = features.append(catalog.ids(list(cold)), categorical, text)
    return features


@dataclass(frozen=True)
class ExplainConfig:
    """``verb``: how reasons name the user's action ("Because you watched X").
    ``n_items``: history items cited per recommendation."""

    verb: str = "watched"
    n_items: int = 1


class ExplainStage:
    """Reasons from :class:`recloop.rank.explain.Explainer` (the history item that
    contributes most, the genres the item shares with it), plus, for items added while
    serving, the history item whose text is closest to theirs (the content path's own
    reason). For a "similar items" query the reasons say "Similar to X", not "Because
    you watched X": there is no user."""

    def __init__(self, config: ExplainConfig = ExplainConfig()):
        self.config = config
        self._lock = threading.Lock()
        self._explainers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # state -> (size, Explainer)

    def explainer(self, state: LiveState, catalog: Catalog) -> Explainer:
        """The explainer of ``state`` covering ``catalog`` (rebuilt as items arrive)."""
        with self._lock:
            size, explainer = self._explainers.get(state, (-1, None))
        if size >= len(catalog):
            return explainer
        features = catalog_features(state, catalog)
        vectors = state.retrieval.item_vectors if state.retrieval.uses_vectors else None
        explainer = Explainer(state.model, features, item_ids=features.ids if features is not None else state.model.items_,
                              item_vectors=vectors, n_items=self.config.n_items)
        with self._lock:
            if self._explainers.get(state, (-1, None))[0] < len(catalog):
                self._explainers[state] = (len(catalog), explainer)
        return explainer

    def explain(self, state: LiveState, query: Query, items: np.ndarray) -> list[list[str]]:
        view, catalog = query.view, query.catalog
        if not len(items) or not len(view.positives):
            return [[] for _ in items]
        explainer = self.explainer(state, catalog)
        reasons = explainer.explain(items, view.positives)
        cold = [c for c, item in enumerate(items) if catalog.is_cold(int(item))]
        if cold:
            self._content_reasons(state, catalog, explainer, view.positives, items, cold, reasons)
        return [[render_reason(r, self.config.verb, similar=query.similar) for r in row] for row in reasons]

    def _content_reasons(self, state: LiveState, catalog: Catalog, explainer: Explainer, history: np.ndarray,
                         items: np.ndarray, cold: list[int], reasons: list[list[dict]]) -> None:
        coldstart, n_model = state.cold, state.n_model_items
        embeddings = coldstart.catalog_embeddings()
        rows = []
        for h in history:
            if h >= n_model:
                rows.append(coldstart.embeddings[h - n_model])
            elif embeddings is not None:
                rows.append(embeddings[h])
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
                reasons[column].insert(0, {"type": "because_you_interacted", "item_id": catalog.id(item),
                                           "title": catalog.title(item), "weight": float(similarity[best]),
                                           "basis": "text"})
                shared = explainer.shared_genres(int(items[column]), item)
                if shared:
                    reasons[column].insert(1, {"type": "shared_genres", "item_id": catalog.id(item), "genres": shared})
