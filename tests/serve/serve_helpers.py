"""Helpers shared by the serving tests (imported by conftest and test modules)."""

from __future__ import annotations


def hashing_embedder(texts, dim: int = 64):
    """A fast, deterministic stand-in for the language model: bag of hashed words.
    Texts sharing words get similar vectors, which is all the cold-start logic needs."""
    import zlib

    import numpy as np

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in str(text).lower().replace(".", " ").replace(",", " ").split():
            out[row, zlib.crc32(word.encode()) % dim] += 1.0
    return out
