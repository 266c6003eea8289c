"""The social stage: recommendations from a user's friends, and the reasons that say so.

The artifact carries the friend graph (``model.user_graph_``, saved by any model fitted
on a dataset that has one). A request names the user's friends (``friends``: ids of the
model's users), or the graph knows them (a known user). When a user with friends has at
most ``max_history`` items, the candidates are the model's scores blended with the
share of the friends who have each item (:func:`recloop.data.social.social_fallback`):
a new user who names friends gets recommendations at once, from the first request.
Users with more history go through the usual retrieval. With ``explain``, an item that
friends have gets the reason "Popular among your friends (n of m)".

What the friends have is read from the artifact's training history (their live events
are not counted until the next retrain). A model that already blends friends in its own
scores for users with little history (``social-lightgcn`` with a ``fallback_history``)
is not blended twice for a known user.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recloop.data.social import friend_item_share, social_fallback
from recloop.errors import ConfigError

if TYPE_CHECKING:
    from recloop.serve.pipeline import Query
    from recloop.serve.state import LiveState

SOURCE = "friends"


@dataclass(frozen=True)
class SocialConfig:
    """``max_history``: users with at most this many items (and some friends) get the
    friends' blend; 0 turns it off (friends then only explain). ``weight``: the friends'
    share in the blend (1: rank by what friends have, the model breaking ties)."""

    max_history: int = 5
    weight: float = 0.5

    def __post_init__(self):
        if self.max_history < 0:
            raise ConfigError(f"social.max_history must be 0 or more, got {self.max_history}")
        if not 0 <= self.weight <= 1:
            raise ConfigError(f"social.weight must be in [0, 1], got {self.weight}")


class SocialStage:
    """See the module docstring. Holds one binary user-item matrix per live state."""

    def __init__(self, config: SocialConfig = SocialConfig()):
        self.config = config
        self._lock = threading.Lock()
        self._matrices: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # state -> user-item CSR

    def _user_items(self, state: LiveState) -> sp.csr_matrix:
        with self._lock:
            matrix = self._matrices.get(state)
            if matrix is None:
                matrix = self._matrices[state] = state.model.history_.to_csr()
        return matrix

    def applies(self, state: LiveState, query: Query) -> bool:
        """Whether ``query`` is answered from the friends' blend."""
        if query.friends is None or not len(query.friends) or query.similar:
            return False
        if query.view.history.lengths[0] > self.config.max_history:
            return False
        model = state.model
        blends_itself = getattr(model.config, "fallback_history", 0) > 0 and query.view.user_idx >= 0
        return not blends_itself

    def share(self, state: LiveState, friends: np.ndarray) -> np.ndarray:
        """``(n_model_items,)``: the share of ``friends`` (user indices) having each item."""
        rows = sp.csr_matrix((np.ones(len(friends), np.float32), (np.zeros(len(friends), np.int64), friends)),
                             shape=(1, state.model.n_users))
        return friend_item_share(rows, self._user_items(state))[0]

    def candidates(self, state: LiveState, query: Query, n: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The best ``n`` items of the blend, known, excluded and filtered-out items left out."""
        from recloop.models.base import stable_topk_row  # torch-free, but under the model registry

        view = query.view
        model_scores = state.model.score([view.user_idx], view.history)  # (1, n_model_items)
        blended = social_fallback(model_scores, self.share(state, query.friends)[None, :], self.config.weight)[0]
        scores = np.full(len(query.catalog), -np.inf, dtype=np.float32)  # items added while serving: not here
        scores[: len(blended)] = blended
        scores[view.known] = -np.inf
        scores[query.exclude] = -np.inf
        if query.allowed is not None:
            scores[~query.allowed] = -np.inf
        items = stable_topk_row(scores, n)
        items = items[np.isfinite(scores[items])]
        return items, scores[items], SOURCE

    def reasons(self, state: LiveState, query: Query, items: np.ndarray) -> list[str | None]:
        """"Popular among your friends (n of m)" for each item some friends have, else None."""
        if query.friends is None or not len(query.friends):
            return [None] * len(items)
        rows = self._user_items(state)[query.friends]
        counts = np.asarray(rows.sum(axis=0)).reshape(-1)
        total = len(query.friends)
        return [f"Popular among your friends ({int(counts[i])} of {total})"
                if 0 <= i < len(counts) and counts[i] > 0 else None for i in items]
