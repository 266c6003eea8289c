"""The exposure-aware re-ranking stage: calibration and an exposure quota per request
(the algorithms are :mod:`recloop.rank.fairness`, the same ones offline evaluation runs).

It wraps the diversity stage (:class:`recloop.serve.rerank.RerankStage`): when a query
asks for calibration or a quota (its own values, else the settings' ``[fairness]``),
the fair ranker chooses the ``k`` items from the candidates first, and the diversity
stage then orders those ``k`` (MMR and the category cap re-order, they no longer
choose), so the quota holds for the list shown. Without fairness the diversity stage
runs alone, as before.

Popularity tiers come from the artifact's training log; items added while serving are
tail. Categories (genres, brands) come from the catalog, cold items included. A
ranker is built once per live state and catalog size and cached here.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from recloop.errors import ConfigError, UnknownIdError
from recloop.rank.fairness import POPULARITY, FairnessConfig, FairRanker, fair_ranker
from recloop.serve.rerank import CategoryCache

if TYPE_CHECKING:
    from recloop.serve.pipeline import Query, Reranker
    from recloop.serve.state import LiveState


class FairnessStage:
    """See the module docstring. ``inner``: the diversity stage (or ``None``)."""

    def __init__(self, config: FairnessConfig | None = None, inner: Reranker | None = None):
        self.config = config or FairnessConfig()
        self.inner = inner
        self._categories = CategoryCache()
        self._rankers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # state -> (n_catalog, ranker)
        self._lock = threading.Lock()

    def settings_for(self, query: Query) -> tuple[float, Mapping[str, float]]:
        """The query's calibration lambda and minimum group shares, else the config's."""
        calibration = self.config.calibration if query.calibration is None else query.calibration
        min_share = self.config.min_share if query.exposure is None else query.exposure
        return calibration, min_share

    def active(self, query: Query) -> bool:
        calibration, min_share = self.settings_for(query)
        return calibration > 0 or any(v > 0 for v in min_share.values())

    def wants_candidates(self, query: Query) -> bool:
        if self.active(query):
            return True
        wants = getattr(self.inner, "wants_candidates", None)
        return self.inner is not None and (wants is None or wants(query))

    def ranker(self, state: LiveState, query: Query) -> FairRanker:
        catalog = query.catalog
        with self._lock:
            cached = self._rankers.get(state)
        if cached is not None and cached[0] >= len(catalog):
            return cached[1]
        categorical = {}
        for name in {self.config.calibration_feature, self.config.groups} - {POPULARITY}:
            categories = self._categories.get(state, catalog, name)
            if categories is not None:
                categorical[name] = categories
        ranker = fair_ranker(FairnessConfig(calibration=0.0, calibration_feature=self.config.calibration_feature,
                                            groups=self.config.groups, head_fraction=self.config.head_fraction),
                             query.k, state.model.history_.item_counts(), categorical, n_items=len(catalog))
        with self._lock:
            current = self._rankers.get(state)
            if current is None or current[0] < len(catalog):
                self._rankers[state] = (len(catalog), ranker)
        return ranker

    def rerank(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.active(query):
            calibration, min_share = self.settings_for(query)
            ranker = self.ranker(state, query)
            try:
                items, scores = ranker(items, scores, query.view.positives, calibration=calibration,
                                       min_share=min_share, k=k)
            except UnknownIdError as error:  # a group the request names that the items lack: a bad request
                raise ConfigError(str(error)) from None
            items, scores = items[:k], scores[:k]
        if self.inner is not None:
            return self.inner.rerank(state, query, items, scores, k)
        return items[:k], scores[:k]
