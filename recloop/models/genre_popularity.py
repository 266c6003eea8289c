"""Genre popularity: score an item by how popular its genres are (optionally, with the user).

The standard cold-item baseline: an item nobody has interacted with yet still has
genres, and the genres have a popularity. With ``G_i`` the genres of item ``i``,

* ``p(g)``: the share of training interactions whose item has genre ``g``;
* ``q_u(g)``: the share of user ``u``'s history whose item has genre ``g`` (the user's
  genre affinity; 0 for an empty history);
* ``w_u(g) = (1 - affinity) * p(g) + affinity * q_u(g)``;
* ``score(u, i) = mean_{g in G_i} w_u(g)`` (0 for an item without genres), plus
  ``1e-6 * n_i / max_j n_j`` with ``n_i`` the item's own training interactions, which only
  breaks ties (cold items have none, so among them the genres alone decide).

``affinity = 0`` is plain genre popularity, the same ranking for everyone; ``affinity = 1``
ranks by the user's own genre profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import Recommender


@dataclass(frozen=True)
class GenrePopularityConfig:
    """``feature``: the categorical item feature holding genres. ``affinity``: weight of the
    user's own genre shares against global genre popularity, in [0, 1]."""

    feature: str = "genre"
    affinity: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.affinity <= 1.0:
            raise ConfigError(f"genre-popular affinity must be in [0, 1], got {self.affinity}")


class GenrePopularity(Recommender):
    name = "genre-popular"
    config_class = GenrePopularityConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        features = self.item_features_
        feature = self.config.feature
        if features is None or feature not in features.categorical:
            have = [] if features is None else sorted(features.categorical)
            raise ConfigError(f"GenrePopularity needs the categorical item feature {feature!r} at fit time "
                              f"(fit(train, item_features=...)); the features given have {have}")
        if features.ids != train.items:
            features = features.aligned_to(train.items)
        genres = features.categorical[feature].matrix.astype(np.float32).tocsr()  # (items, genres)
        counts = train.item_counts().astype(np.float32)
        per_genre = genres.T @ counts
        self.genre_share_ = (per_genre / max(1.0, float(counts.sum()))).astype(np.float32)
        n_genres = np.asarray(genres.sum(axis=1)).ravel()
        # Row-normalised genre matrix: item i averages w(g) over its genres.
        scale = np.where(n_genres > 0, 1.0 / np.maximum(n_genres, 1), 0.0).astype(np.float32)
        self.item_genres_ = np.asarray((genres.multiply(scale[:, None])).todense(), dtype=np.float32)
        self.genre_indicator_ = np.asarray(genres.todense(), dtype=np.float32)
        self.tie_break_ = (1e-6 * counts / max(1.0, float(counts.max()))).astype(np.float32)

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        weights = np.broadcast_to(self.genre_share_, (len(user_idx), len(self.genre_share_)))
        if self.config.affinity > 0:
            x = history.to_csr()
            x.data[:] = 1.0 / np.repeat(np.maximum(np.diff(x.indptr), 1), np.diff(x.indptr))
            affinity = np.asarray(x @ self.genre_indicator_, dtype=np.float32)  # (b, genres): q_u(g)
            weights = (1 - self.config.affinity) * weights + self.config.affinity * affinity
        return (weights @ self.item_genres_.T + self.tie_break_).astype(np.float32)

    def _get_state(self):
        return {"genre_share": self.genre_share_, "item_genres": self.item_genres_,
                "genre_indicator": self.genre_indicator_, "tie_break": self.tie_break_}

    def _set_state(self, state):
        self.genre_share_, self.item_genres_ = state["genre_share"], state["item_genres"]
        self.genre_indicator_, self.tie_break_ = state["genre_indicator"], state["tie_break"]
