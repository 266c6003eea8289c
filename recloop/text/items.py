"""Text embeddings of the rows of a :class:`~recloop.data.Features` table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recloop.data.features import Features
from recloop.text.encoder import TextEncoder


def embed_features(features: Features, encoder: TextEncoder | None = None,
                   fields: Sequence[str] | None = None) -> np.ndarray:
    """One vector per row of ``features``: ``encoder.encode(features.texts(fields))``.

    Returns float32 ``(len(features.ids), d)``. Rows with no text at all (an item the
    catalog has no metadata for) get a zero vector rather than the embedding of the
    empty string, so they carry no spurious similarity.
    """
    encoder = encoder or TextEncoder()
    texts = features.texts(fields or None)
    present = np.asarray([bool(t.strip()) for t in texts])
    vectors = encoder.encode([t for t, p in zip(texts, present) if p])
    out = np.zeros((len(texts), vectors.shape[1] if len(vectors) else encoder.dim), dtype=np.float32)
    out[present] = vectors
    return out
