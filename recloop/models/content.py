"""Content-based recommender on language-model item embeddings.

The classic content-based filter (Pazzani and Billsus, "Content-Based Recommendation
Systems", The Adaptive Web, 2007) with sentence-transformer embeddings of the item text
(title, genres, tags) in place of TF-IDF vectors (Reimers and Gurevych, EMNLP 2019).

A user's profile is the (recency-weighted) mean of the embeddings of the items in their
history; an item's score is the cosine between the profile and its embedding. Nothing is
learned from interactions except a popularity fallback, so an item with no training
interactions is scored like any other (cold items), and a user never seen in training is
scored from whatever history is passed in (cold users). Departures: embeddings are
centred on the catalog mean before the cosine (sentence embeddings share a large common
direction that otherwise dominates every similarity), and a user with an empty history
gets training popularity instead of all-zero scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import Recommender
from recloop.text.encoder import DEFAULT_MODEL, TextEncoder, TextEncoderConfig
from recloop.text.items import embed_features


@dataclass(frozen=True)
class ContentConfig:
    """Hyperparameters of :class:`ContentBased`.

    ``text_model``: the sentence-transformers model (see :class:`~recloop.text.TextEncoder`).
    ``fields``: the item text fields to encode (empty: all of them, e.g. title, genres, tags).
    ``half_life``: recency weighting of the profile: the ``j``-th most recent item weighs
    ``0.5 ** (j / half_life)``; 0 gives a plain mean.
    ``center``: subtract the catalog's mean embedding before the cosine.
    ``cache_dir``/``device``/``batch_size``: passed to the encoder.
    """

    text_model: str = DEFAULT_MODEL
    fields: tuple[str, ...] = ()
    half_life: float = 0.0
    center: bool = True
    cache_dir: str | None = None
    device: str | None = None
    batch_size: int = 64

    def __post_init__(self):
        if self.half_life < 0:
            raise ConfigError(f"content half_life must be >= 0 (0 = no recency weighting), got {self.half_life}")

    def encoder(self) -> TextEncoder:
        return TextEncoder(TextEncoderConfig(model=self.text_model, device=self.device,
                                             batch_size=self.batch_size, cache_dir=self.cache_dir))


class ContentBased(Recommender):
    name = "content"
    config_class = ContentConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        features = self.item_features_
        if features is None or not (features.text or features.categorical):
            raise ConfigError("ContentBased needs item features with text at fit time: call "
                              "fit(train, item_features=dataset.item_features) on a dataset that has item "
                              "titles or genres (ml-100k, ml-latest-small, synthetic)")
        if features.ids != train.items:
            features = features.aligned_to(train.items)
        embeddings = embed_features(features, self.config.encoder(), self.config.fields or None)
        present = np.abs(embeddings).sum(axis=1) > 0  # items without any text stay zero vectors
        self.mean_ = np.zeros(embeddings.shape[1], np.float32)
        if self.config.center and present.any():
            self.mean_ = embeddings[present].mean(axis=0).astype(np.float32)
        self.item_vectors_ = self.text_to_item_vectors(embeddings)
        counts = train.item_counts().astype(np.float32)
        self.popularity_ = counts / max(1.0, float(counts.max()))

    # --- the optional capabilities of recloop.models.base --------------------------------------
    def text_to_item_vectors(self, text_embeddings: np.ndarray) -> np.ndarray:
        """Items' text embeddings (from the same encoder) to this model's item space:
        centred on the catalog mean and L2-normalised, so any text can be scored."""
        text_embeddings = np.asarray(text_embeddings, dtype=np.float32)
        present = np.abs(text_embeddings).sum(axis=1, keepdims=True) > 0
        vectors = np.where(present, text_embeddings - self.mean_, 0.0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.where(norms > 1e-6, vectors / np.maximum(norms, 1e-6), 0.0).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        self._check_fitted("item_vectors")
        return self.item_vectors_

    def user_vectors(self, user_idx: np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        """Unit-norm profiles (zero for an empty history): ``score = user_vectors @ item_vectors.T``."""
        self._check_fitted("user_vectors")
        user_idx, history = self._query_histories(user_idx, history)
        weights = self._position_weights(history)
        rows = np.repeat(np.arange(len(history)), history.lengths)
        matrix = sp.csr_matrix((weights, (rows, history.item_idx)), shape=(len(history), self.n_items))
        profile = np.asarray(matrix @ self.item_vectors_, dtype=np.float32)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        return np.where(norms > 1e-6, profile / np.maximum(norms, 1e-6), 0.0).astype(np.float32)

    def _position_weights(self, history: UserHistories) -> np.ndarray:
        if self.config.half_life <= 0:
            return np.ones(len(history.item_idx), dtype=np.float32)
        lengths = history.lengths
        # j = 0 for the most recent item of each row (histories are oldest first)
        from_end = np.repeat(history.indptr[1:], lengths) - 1 - np.arange(len(history.item_idx))
        return (0.5 ** (from_end / self.config.half_life)).astype(np.float32)

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        profiles = self.user_vectors(user_idx, history)
        scores = profiles @ self.item_vectors_.T
        empty = history.lengths == 0
        if empty.any():
            scores[empty] = self.popularity_
        return scores

    def _get_state(self):
        return {"item_vectors": self.item_vectors_, "mean": self.mean_, "popularity": self.popularity_}

    def _set_state(self, state):
        self.item_vectors_, self.mean_, self.popularity_ = state["item_vectors"], state["mean"], state["popularity"]
