"""Language-model item embeddings: a cached sentence-transformer encoder, helpers to embed
item features, and a ridge projection from text space into a model's item space."""

from recloop.text.encoder import DEFAULT_MODEL, TextEncoder, TextEncoderConfig, default_cache_dir, resolve_model
from recloop.text.items import embed_features
from recloop.text.projection import RidgeProjection

__all__ = ["DEFAULT_MODEL", "RidgeProjection", "TextEncoder", "TextEncoderConfig", "default_cache_dir",
           "embed_features", "resolve_model"]
