"""Most-popular: every user gets the items the most users interacted with.

The floor every personalised model must clear, and the reference point for
popularity bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.interactions import Interactions, UserHistories
from recloop.models.base import Recommender


@dataclass(frozen=True)
class PopularityConfig:
    """No hyperparameters: popularity is the number of distinct users per item."""


class MostPopular(Recommender):
    name = "popular"
    config_class = PopularityConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        counts = train.item_counts().astype(np.float32)
        self.popularity_ = counts

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(user_idx), len(self.popularity_))).copy()

    def _get_state(self):
        return {"popularity": self.popularity_}

    def _set_state(self, state):
        self.popularity_ = state["popularity"]
