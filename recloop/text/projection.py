"""A learned map from text space into a model's item space, for items never trained on.

Ridge regression from the text embeddings of warm items to the item vectors a model
learned for them (the "content-to-collaborative" mapping of e.g. Gantner et al., "Learning
Attribute-to-Feature Mappings for Cold-Start Recommendations", ICDM 2010). Closed form with
an intercept: ``W = (Xc^T Xc + l2 I)^-1 Xc^T Yc`` on centred ``X`` and ``Y``, so a cold item's
vector is ``mean(Y) + (x - mean(X)) W``. Items can be weighted (e.g. by how many
interactions back their learned vector, since vectors of rare items are mostly noise).
"""

from __future__ import annotations

import numpy as np

from recloop.errors import ConfigError, NotFittedError


class RidgeProjection:
    """``fit(text, targets)`` then ``transform(text)``; state is two plain arrays."""

    def __init__(self, l2: float = 1.0):
        if l2 < 0:
            raise ConfigError(f"RidgeProjection l2 must be non-negative, got {l2}")
        self.l2 = float(l2)

    def fit(self, text: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray | None = None) -> RidgeProjection:
        """Learn ``text (n, d_text) -> targets (n, d_item)``; returns ``self``."""
        x = np.asarray(text, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ValueError(f"RidgeProjection.fit needs (n, d) text and targets with the same n; "
                             f"got {x.shape} and {y.shape}")
        if len(x) == 0:
            raise ValueError("RidgeProjection.fit got no rows to learn from")
        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w = w / w.sum()
        x_mean, y_mean = w @ x, w @ y
        xc, yc = x - x_mean, y - y_mean
        gram = (xc * w[:, None]).T @ xc
        gram[np.diag_indices_from(gram)] += self.l2 / len(x)  # l2 per row, like an unweighted ridge
        weights = np.linalg.solve(gram, (xc * w[:, None]).T @ yc)
        self.weights_ = weights.astype(np.float32)  # (d_text, d_item)
        self.bias_ = (y_mean - x_mean @ weights).astype(np.float32)  # (d_item,)
        return self

    def transform(self, text: np.ndarray) -> np.ndarray:
        """Item-space vectors of ``text (n, d_text)``: float32 ``(n, d_item)``."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("RidgeProjection is not fitted; call fit() before transform()")
        text = np.asarray(text, dtype=np.float32)
        if text.ndim != 2 or text.shape[1] != self.weights_.shape[0]:
            raise ValueError(f"RidgeProjection expects text embeddings of width {self.weights_.shape[0]}, "
                             f"got shape {text.shape}")
        return text @ self.weights_ + self.bias_

    def get_state(self, prefix: str = "projection.") -> dict[str, np.ndarray]:
        return {f"{prefix}weights": self.weights_, f"{prefix}bias": self.bias_}

    def set_state(self, state: dict[str, np.ndarray], prefix: str = "projection.") -> RidgeProjection:
        self.weights_, self.bias_ = state[f"{prefix}weights"], state[f"{prefix}bias"]
        return self
