"""Random ranker: the floor of any protocol, chance made reproducible.

Every (user, item) pair gets a uniform score drawn from a generator seeded by
``(seed, user_idx)``, so a user's ranking does not depend on which batch it is scored in.
Unknown users (-1) are seeded by their history instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from recloop.data.interactions import Interactions, UserHistories
from recloop.models.base import UNKNOWN_USER, Recommender


@dataclass(frozen=True)
class RandomConfig:
    """``seed``: the base seed of every user's scores."""

    seed: int = 0


class RandomRanker(Recommender):
    name = "random"
    config_class = RandomConfig
    scores_depend_on_user_id = True  # seeded by the user index

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.fitted_ = np.ones(1, dtype=np.int8)  # nothing to learn

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        scores = np.empty((len(user_idx), self.n_items), dtype=np.float32)
        for row, user in enumerate(user_idx):
            if user == UNKNOWN_USER:
                digest = hashlib.sha256(history.row(row).tobytes()).digest()
                key = [self.config.seed, 1, int.from_bytes(digest[:8], "little")]
            else:
                key = [self.config.seed, 0, int(user)]
            scores[row] = np.random.default_rng(key).random(self.n_items, dtype=np.float32)
        return scores

    def _get_state(self):
        return {"fitted": self.fitted_}

    def _set_state(self, state):
        self.fitted_ = state["fitted"]
