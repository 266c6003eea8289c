"""EASE: Embarrassingly Shallow Autoencoder.

H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

Closed form: with ``G = X^T X + lambda I`` and ``P = G^-1``, the item-item weights are
``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj`` and ``B_jj = 0``. A user's
scores are ``x_u B``. Departure from the paper: the inverse is taken in float32 via a
Cholesky factorisation (G is symmetric positive definite), about 5x faster than a
float64 general inverse and accurate to ~1e-6 relative at the l2 values that matter.

A grid over ``l2`` (:meth:`EASE.fit_grid`) builds the Gram matrix once and solves each
l2 from it; every l2 still needs its own factorisation, so a grid of n values costs about
n fits (the Gram matrix is a small part of one). Solving all l2 from one
eigendecomposition ``G = V diag(w) V^T`` (then ``P = V diag(1 / (w + l2)) V^T``, one
matrix product per l2) was measured and rejected: the product per l2 is itself an
``O(items^3)`` step, and on CPU the eigendecomposition costs more than ten Cholesky fits
(benchmarks/ease_grid.py: 12.5x one fit for a 5-value grid on 4,000 Beauty items).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import Recommender
from recloop.progress import progress_bar


@dataclass(frozen=True)
class EASEConfig:
    """``l2``: the ridge penalty lambda (larger for denser data: 100-1000 typical).
    ``weighted``: use ratings instead of 0/1 in ``X``."""

    l2: float = 500.0
    weighted: bool = False

    def __post_init__(self):
        if self.l2 <= 0:
            raise ConfigError(f"EASE l2 must be positive, got {self.l2}")


class EASE(Recommender):
    name = "ease"
    config_class = EASEConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        with progress_bar(desc=f"fit ease l2={self.config.l2:g}", total=2, unit="step") as bar:
            gram = gram_matrix(train, self.config.weighted)
            bar.update()
            self.weights_ = ease_weights(gram, self.config.l2, in_place=True)
            bar.update()

    @classmethod
    def fit_grid(cls, candidates: Sequence[dict[str, Any]], train: Interactions, *,
                 item_features: Features | None = None, user_features: Features | None = None,
                 valid: Interactions | None = None, validation=None) -> Iterator[EASE]:
        """As :meth:`Recommender.fit_grid`, with the Gram matrix built once for all
        candidates that share ``weighted`` (the weights are those ``fit`` gives)."""
        gram, gram_weighted = None, None
        for params in candidates:
            model = cls(**params)
            if gram is None or gram_weighted != model.config.weighted:
                gram = None  # at most one Gram matrix alive
                gram, gram_weighted = gram_matrix(train, model.config.weighted), model.config.weighted
            model._remember(train, item_features, user_features)
            with progress_bar(desc=f"fit ease l2={model.config.l2:g}", total=1, unit="step") as bar:
                model.weights_ = ease_weights(gram, model.config.l2)
                bar.update()
            yield model

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        x = history.to_csr(weighted=self.config.weighted)
        return np.asarray(x @ self.weights_, dtype=np.float32)

    def _get_state(self):
        return {"weights": self.weights_}

    def _set_state(self, state):
        self.weights_ = state["weights"]


def gram_matrix(train: Interactions, weighted: bool) -> torch.Tensor:
    """``X^T X`` as a dense float32 ``(items, items)`` tensor."""
    x = train.to_csr(weighted=weighted)
    return torch.from_numpy((x.T @ x).toarray().astype(np.float32))


def ease_weights(gram: torch.Tensor, l2: float, in_place: bool = False) -> np.ndarray:
    """``B = I - P diag(1 / diag(P))`` with ``P = (gram + l2 I)^-1``, as a contiguous
    float32 array. ``gram`` is left as it was unless ``in_place``: then it becomes ``B``
    (no copy; two item-by-item matrices alive at the peak instead of three)."""
    g = gram if in_place else gram.clone()
    g.diagonal().add_(l2)
    chol = torch.linalg.cholesky(g)
    torch.cholesky_inverse(chol, out=g)  # P = G^-1, in G's memory
    del chol
    g.div_(-g.diagonal().clone())  # B_ij = -P_ij / P_jj (column scaling)
    g.diagonal().zero_()
    return np.ascontiguousarray(g.numpy())
