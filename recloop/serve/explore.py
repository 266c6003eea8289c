"""The exploration stage: may swap some of the ``k`` shown for candidates the bandit
wants to learn about, and learns from the logged events (the algorithms are
:mod:`recloop.rank.bandits`; this module holds their config and state).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recloop.errors import ConfigError
from recloop.rank.bandits import EpsilonGreedy, LinearBandit, LinearBanditConfig, RandomProjection
from recloop.utils import make_rng

if TYPE_CHECKING:
    from recloop.serve.pipeline import Query
    from recloop.serve.state import LiveState

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
    """The bandits of :mod:`recloop.rank.bandits` over a live state: contexts from the
    model's user vectors, rewards from the logged events."""

    def __init__(self, config: ExploreConfig, max_k: int = 100):
        self.config = config
        self._rng = make_rng(config.seed)
        self._lock = threading.Lock()
        self.last_event_id = 0
        self.bandit = None
        if config.method in ("ucb", "thompson"):
            self.bandit = LinearBandit(LinearBanditConfig(dim=config.dim, policy=config.method, alpha=config.alpha,
                                                          k=max_k, score_weight=config.score_weight, seed=config.seed))
        self._projection: dict[int, RandomProjection] = {}

    def _context(self, state: LiveState, view) -> np.ndarray:
        if state.retrieval.uses_vectors and len(view.history.item_idx):
            vector = state.retrieval.user_vectors([view.user_idx], view.history)[0]
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
        # The bandit is thread safe; its config's k is the largest a request may ask.
        out = self.bandit.explore(pool, pool_scores, self._context(state, query.view), k=k)
        return out.item_idx[:k], out.scores[:k], out.explored[:k]

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
            if state.retrieval.uses_vectors and state.knows_user(event.user_id):
                context = self._context(state, state.user_view(event.user_id))
            else:
                context = np.eye(1, self.config.dim)[0]
            items.append(state.catalog.index(event.item_id))
            contexts.append(context)
            rewards.append(1.0 if positive else 0.0)
        if items:
            self.bandit.update(np.asarray(items), np.vstack(contexts), np.asarray(rewards))
