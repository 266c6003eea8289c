"""Bias baseline: a rating predictor from global, user and item offsets.

Y. Koren, "Factorization Meets the Neighborhood", KDD 2008 (the baseline predictor,
section 2.1): ``r_hat(u, i) = mu + b_u + b_i``, with damped means
``b_i = sum_u (r_ui - mu) / (|U_i| + item_damping)`` and
``b_u = sum_i (r_ui - mu - b_i) / (|I_u| + user_damping)``, alternated a few times.
It is the reference point for RMSE/MAE; ranked, it is a popularity-by-quality model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import UNKNOWN_USER, Recommender


@dataclass(frozen=True)
class BiasConfig:
    user_damping: float = 5.0
    item_damping: float = 5.0
    iterations: int = 3

    def __post_init__(self):
        if self.user_damping < 0 or self.item_damping < 0 or self.iterations < 1:
            raise ConfigError("Bias needs damping >= 0 and iterations >= 1")


class Bias(Recommender):
    name = "bias"
    config_class = BiasConfig
    scores_depend_on_user_id = True  # a learned per-user bias
    predicts_ratings = True

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating is None:
            raise ConfigError("Bias predicts ratings and needs a log with ratings "
                              "(the dataset has none, or preprocess.drop_rating removed them)")
        r = train.rating.astype(np.float64)
        self.mean_ = float(r.mean())
        item_bias = np.zeros(train.n_items)
        user_bias = np.zeros(train.n_users)
        for _ in range(self.config.iterations):
            residual = r - self.mean_ - user_bias[train.user_idx]
            item_bias = _damped_mean(train.item_idx, residual, train.n_items, self.config.item_damping)
            residual = r - self.mean_ - item_bias[train.item_idx]
            user_bias = _damped_mean(train.user_idx, residual, train.n_users, self.config.user_damping)
        self.item_bias_ = item_bias.astype(np.float32)
        self.user_bias_ = user_bias.astype(np.float32)

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        user_bias = np.where(user_idx == UNKNOWN_USER, 0.0, self.user_bias_[np.maximum(user_idx, 0)])
        if history.rating is not None:
            # A user the model never saw: their offset from the given ratings.
            unknown = np.flatnonzero(user_idx == UNKNOWN_USER)
            for row in unknown:
                items = history.row(row)
                if len(items):
                    ratings = history.rating[history.indptr[row]:history.indptr[row + 1]]
                    residual = ratings - self.mean_ - self.item_bias_[items]
                    user_bias[row] = residual.sum() / (len(items) + self.config.user_damping)
        return (self.mean_ + user_bias[:, None] + self.item_bias_[None, :]).astype(np.float32)

    def _get_state(self):
        return {"mean": np.array([self.mean_], dtype=np.float64), "item_bias": self.item_bias_,
                "user_bias": self.user_bias_}

    def _set_state(self, state):
        self.mean_ = float(state["mean"][0])
        self.item_bias_, self.user_bias_ = state["item_bias"], state["user_bias"]


def _damped_mean(index: np.ndarray, values: np.ndarray, n: int, damping: float) -> np.ndarray:
    return np.bincount(index, values, minlength=n) / (np.bincount(index, minlength=n) + damping)
