"""Maximum inner product search indexes: arrays in, arrays out (no model, no service).

A model with the optional vector capabilities (``item_vectors()`` and
``user_vectors(user_idx, history)``, see :mod:`recloop.models.base`) scores an item by
the dot product of the two. Retrieval is then maximum inner product search (MIPS); the
serving candidate stage (:mod:`recloop.serve.retrieval`) runs these indexes:

* :class:`ExactIndex`: brute force, a batched ``torch`` matrix product and ``topk``.
  Exact; single-query latency grows with the catalog (memory bound: ~1 ms at 12k
  items, ~85 ms at 1M on the shared 2-core machine), so the default switches at 50k.
* :class:`FaissIndex`: approximate search with faiss, for larger catalogs.
  ``"hnsw"``: a navigable small-world graph (Malkov & Yashunin, TPAMI 2018), knobs ``M``
  (links per node: recall and memory) and ``efSearch`` (beam width: recall against
  latency). ``"ivf"``/``"ivfpq"``: an inverted file of ``nlist`` k-means cells of which
  ``nprobe`` are scanned (Jégou et al., TPAMI 2011), the PQ variant with compressed
  codes re-scored exactly on the top ``refine * k``.

:func:`build_index` picks exact search up to ``exact_max_items`` items and faiss above,
and with ``RetrievalConfig.cache_dir`` loads a faiss index built earlier from the same
vectors and settings instead of building it again.
Both kinds support adding item vectors at runtime (cold items) and excluding items per
query (known items): exact search masks them before ``topk``; faiss over-fetches ``k``
plus the longest exclusion list and filters, fetching more if a row comes up short, except
HNSW when that would widen its beam: there faiss skips them while it searches (an ID
selector).
:func:`measure_recall` compares an index against exact search on sampled queries.

Every index keeps a float32 array of the vectors (``index.vectors``: the caller's array
when it is already float32 and contiguous) for exact re-scoring, subset search,
diversity and explanations; a faiss index holds a second copy inside (flat codes), plus
its graph or lists, see ``docs/retrieval.md``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recloop.data.interactions import UserHistories
from recloop.errors import ConfigError
from recloop.utils import make_rng

INDEX_KINDS = ("auto", "exact", "hnsw", "ivf", "ivfpq")
#: Exact search computes at most this many scores per block (64 MB of float32).
BLOCK_FLOATS = 1 << 24

Exclusions = UserHistories | Sequence[Sequence[int]] | None


@dataclass(frozen=True)
class RetrievalConfig:
    """How candidates are retrieved.

    ``index``: ``"auto"`` (exact up to ``exact_max_items`` items, else ``ann``), or one of
    ``"exact"``, ``"hnsw"``, ``"ivf"``, ``"ivfpq"`` to force it.
    ``hnsw_m``, ``hnsw_ef_construction``, ``hnsw_ef_search``: HNSW links per node, build
    beam and search beam (larger: better recall, slower; ``ef_search`` is raised to ``k``
    when smaller).
    ``ivf_nlist`` (0: ``4 * sqrt(n)``), ``ivf_nprobe``: IVF cells and cells scanned;
    ``pq_m``, ``pq_bits``: PQ sub-quantizers (must divide the dimension) and bits each;
    ``refine``: PQ results are re-scored exactly over ``refine * k`` candidates;
    ``train_size``: vectors sampled to train the IVF k-means.
    ``subset_exact_max``: a query restricted to at most this many allowed items is
    answered by exact search over them instead of the index.
    ``threads``: faiss OpenMP threads (0 leaves faiss' default; the setting is global to
    the process). ``seed``: the training sample.
    ``cache_dir``: a folder where :func:`build_index` saves each faiss index it builds,
    named by a hash of the vectors and the build settings, and loads it from instead of
    building again (empty: no cache). A 1M-item HNSW index takes many minutes to build
    and seconds to load, and every serving worker and restart would build its own.
    """

    index: str = "auto"
    exact_max_items: int = 50_000
    ann: str = "hnsw"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 96
    ivf_nlist: int = 0
    ivf_nprobe: int = 32
    pq_m: int = 16
    pq_bits: int = 8
    refine: int = 4
    train_size: int = 200_000
    subset_exact_max: int = 50_000
    threads: int = 0
    seed: int = 0
    cache_dir: str = ""

    def __post_init__(self):
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"RetrievalConfig.index must be one of {INDEX_KINDS}, got {self.index!r}")
        if self.ann not in ("hnsw", "ivf", "ivfpq"):
            raise ConfigError(f"RetrievalConfig.ann must be 'hnsw', 'ivf' or 'ivfpq', got {self.ann!r}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "pq_m", "pq_bits",
                     "refine", "train_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"RetrievalConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("exact_max_items", "ivf_nlist", "subset_exact_max", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"RetrievalConfig.{name} must be >= 0, got {getattr(self, name)}")

    def resolved_kind(self, n_items: int) -> str:
        """The index kind used for a catalog of ``n_items``."""
        if self.index != "auto":
            return self.index
        return "exact" if n_items <= self.exact_max_items else self.ann


# --- small helpers -------------------------------------------------------------------------------
def _as_matrix(vectors: Any, what: str, dim: int | None = None) -> np.ndarray:
    if hasattr(vectors, "detach"):  # a torch tensor
        vectors = vectors.detach().cpu().float().numpy()
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a (n, d) matrix, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{what} have dimension {array.shape[1]}, the index has {dim}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array


def _exclusion_csr(exclude: Exclusions, n_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(indptr, item_idx)`` of per-row exclusions; negative indices are dropped."""
    if exclude is None:
        return None
    if isinstance(exclude, UserHistories):
        indptr, items = np.asarray(exclude.indptr, np.int64), np.asarray(exclude.item_idx, np.int64)
    else:
        lengths = np.fromiter((len(row) for row in exclude), dtype=np.int64, count=len(exclude))
        indptr = np.zeros(len(exclude) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = (np.concatenate([np.asarray(row, dtype=np.int64).reshape(-1) for row in exclude])
                 if indptr[-1] else np.empty(0, np.int64))
    if len(indptr) - 1 != n_rows:
        raise ValueError(f"exclude has {len(indptr) - 1} rows for {n_rows} queries")
    if items.size and items.min() < 0:
        indptr, items = _restrict_csr((indptr, items), items >= 0)
    return indptr, items


def _restrict_csr(csr: tuple[np.ndarray, np.ndarray], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR with only the entries where ``keep`` (aligned with its items) is true."""
    indptr, items = csr
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=len(indptr) - 1)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[keep]


def _exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                  exclude: tuple[np.ndarray, np.ndarray] | None,
                  subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` by inner product, in query blocks of ``BLOCK_FLOATS`` scores.

    With ``subset`` (sorted unique item indices) only those items are scored.
    """
    import torch  # here, not at module level: the settings import this module's config

    from recloop.models.base import mask_items, top_k
    if subset is not None:
        vectors = vectors[subset]
        if exclude is not None:  # exclusions move into subset positions
            indptr, items = exclude
            position = np.searchsorted(subset, items)
            inside = (position < len(subset)) & (subset[np.minimum(position, len(subset) - 1)] == items)
            indptr, _ = _restrict_csr(exclude, inside)
            exclude = (indptr, position[inside])
    n = len(vectors)
    items_out = np.full((len(queries), k), -1, dtype=np.int64)
    scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
    if n == 0:
        return items_out, scores_out
    if exclude is not None:
        inside = exclude[1] < n
        if not inside.all():
            exclude = _restrict_csr(exclude, inside)
    matrix = torch.from_numpy(vectors)
    block = max(1, BLOCK_FLOATS // n)
    for start in range(0, len(queries), block):
        end = min(start + block, len(queries))
        scores = torch.from_numpy(queries[start:end]) @ matrix.T  # (block, n)
        if exclude is not None:
            indptr, excluded = exclude
            mask_items(scores, indptr[start:end + 1] - indptr[start], excluded[indptr[start]:indptr[end]])
        items_out[start:end], scores_out[start:end] = top_k(scores, k)
    if subset is not None:
        found = items_out >= 0
        items_out[found] = subset[items_out[found]]
    return items_out, scores_out


def _allowed_subset(allowed: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray | None:
    if allowed is None:
        return None
    subset = np.unique(np.asarray(allowed, dtype=np.int64).reshape(-1))
    return subset[(subset >= 0) & (subset < n)]


class _VectorStore:
    """A float32 ``(n, d)`` array that grows geometrically, so adding one item is O(d)
    amortised. It starts as the caller's array when that is float32 and contiguous (no
    copy) and never writes into it: the first add moves to a private, larger buffer."""

    def __init__(self, vectors: np.ndarray):
        self._buffer = vectors
        self._n = len(vectors)

    @property
    def array(self) -> np.ndarray:
        return self._buffer[:self._n]

    def append(self, vectors: np.ndarray) -> np.ndarray:
        start, end = self._n, self._n + len(vectors)
        if end > len(self._buffer):
            # Views handed out earlier keep the old buffer alive and stay valid.
            # Grow by 1/4 (not 2x): a 1M-item catalog should not double its memory for one cold item.
            capacity = max(end, len(self._buffer) + len(self._buffer) // 4 + 1024)
            grown = np.empty((capacity, self._buffer.shape[1]), dtype=np.float32)
            grown[:start] = self._buffer[:start]
            self._buffer = grown
        self._buffer[start:end] = vectors
        self._n = end
        return np.arange(start, end, dtype=np.int64)


class _ReadWriteLock:
    """Concurrent searches, exclusive adds (a faiss index must not change while searched).
    Writers take precedence so that a stream of searches cannot starve an add."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


# --- indexes -------------------------------------------------------------------------------------
class _StoredVectors:
    """What every index answers from its own copy of the item vectors (``self._store``)."""

    _store: _VectorStore

    def __len__(self) -> int:
        return len(self._store.array)

    @property
    def dim(self) -> int:
        return self._store.array.shape[1]

    @property
    def vectors(self) -> np.ndarray:
        """The item vectors, ``(n, d)`` float32, row ``i`` for item_idx ``i`` (read only)."""
        return self._store.array


class ExactIndex(_StoredVectors):
    """Exact maximum inner product search over ``vectors`` ``(n, d)``.

    ``search(queries, k)`` returns ``(item_idx, scores)``, each ``(len(queries), k)``,
    best first; slots beyond the available items are ``-1`` with score ``-inf``.
    Thread safe: searches run concurrently, :meth:`add` waits for them.
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self._store = _VectorStore(_as_matrix(vectors, "item vectors"))
        self._lock = _ReadWriteLock()

    def __repr__(self) -> str:
        return f"ExactIndex(n={len(self)}, dim={self.dim})"

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors; returns their new item indices (``n, n+1, ...``)."""
        vectors = _as_matrix(vectors, "new item vectors", self.dim)
        with self._lock.write():
            return self._store.append(vectors)

    def search(self, queries: np.ndarray, k: int, exclude: Exclusions = None,
               allowed: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product for each query row.

        ``exclude``: per query, items never returned (a ``UserHistories`` or lists).
        ``allowed``: if given, only these items (same for every query) are returned.
        """
        queries = _as_matrix(queries, "queries", self.dim)
        _check_k(k)
        exclusions = _exclusion_csr(exclude, len(queries))
        with self._lock.read():
            vectors = self._store.array
            return _exact_search(vectors, queries, k, exclusions, _allowed_subset(allowed, len(vectors)))


class FaissIndex(_StoredVectors):
    """Approximate maximum inner product search with faiss (``kind`` hnsw, ivf or ivfpq).

    Same contract as :class:`ExactIndex`. Exclusions are applied by over-fetching:
    ``k`` plus the longest exclusion list is fetched, excluded items are dropped, and the
    fetch doubles for rows left with fewer than ``k``; for HNSW, exclusions longer than
    its beam allows are an ID selector instead (:meth:`_search_excluding`). The search knobs (``ef_search``,
    ``nprobe``) can be changed on a built index.
    """

    def __init__(self, vectors: np.ndarray, config: RetrievalConfig = RetrievalConfig(),
                 kind: str | None = None, *, _index: Any = None):
        import faiss  # optional dependency (the "serve" extra)

        self._faiss = faiss
        vectors = _as_matrix(vectors, "item vectors")
        self.kind = kind or (config.ann if config.index in ("auto", "exact") else config.index)
        if self.kind not in ("hnsw", "ivf", "ivfpq"):
            raise ConfigError(f"FaissIndex kind must be 'hnsw', 'ivf' or 'ivfpq', got {self.kind!r}")
        self.config = config
        if config.threads:
            faiss.omp_set_num_threads(config.threads)
        self._store = _VectorStore(vectors)
        self._lock = _ReadWriteLock()
        self._index = _index if _index is not None else self._build(vectors)
        self._hnsw_params: dict[int, Any] = {}  # search parameters by beam width (creating one costs ~30 us)
        self.ef_search = config.hnsw_ef_search
        self.nprobe = config.ivf_nprobe

    def _build(self, vectors: np.ndarray) -> Any:
        faiss, config = self._faiss, self.config
        n, dim = vectors.shape
        if n == 0:
            raise ConfigError("FaissIndex needs at least one item vector to build; use ExactIndex for an empty catalog")
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
            index.add(vectors)
            return index
        nlist = config.ivf_nlist or int(np.clip(round(4 * np.sqrt(n)), 1, max(1, n // 39)))
        nlist = min(nlist, n)
        quantizer = faiss.IndexFlatIP(dim)
        if self.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            if dim % config.pq_m:
                raise ConfigError(f"RetrievalConfig.pq_m={config.pq_m} must divide the vector dimension {dim}")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, config.pq_bits, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        sample = vectors
        if n > config.train_size:
            rows = make_rng(config.seed).choice(n, size=config.train_size, replace=False)
            sample = vectors[np.sort(rows)]
        index.train(sample)
        index.add(vectors)
        return index

    def __repr__(self) -> str:
        knobs = (f"M={self.config.hnsw_m}, ef_search={self.ef_search}" if self.kind == "hnsw"
                 else f"nlist={self._index.nlist}, nprobe={self.nprobe}")
        return f"FaissIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, {knobs})"

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise ConfigError(f"ef_search must be at least 1, got {value}")
        with self._lock.write():
            self._ef_search = int(value)
            if self.kind == "hnsw":
                self._index.hnsw.efSearch = self._ef_search

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise ConfigError(f"nprobe must be at least 1, got {value}")
        with self._lock.write():
            self._nprobe = int(value)
            if self.kind != "hnsw":
                self._index.nprobe = self._nprobe

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors (no retraining: IVF cells stay as trained); returns their indices."""
        vectors = _as_matrix(vectors, "new item vectors", self.dim)
        with self._lock.write():
            self._index.add(vectors)
            return self._store.append(vectors)

    def search(self, queries: np.ndarray, k: int, exclude: Exclusions = None,
               allowed: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` by inner product; see :meth:`ExactIndex.search`.

        With ``allowed`` of at most ``config.subset_exact_max`` items the answer is exact
        search over them; a larger allowed set filters the index' results (over-fetching
        by the inverse of the allowed fraction).
        """
        queries = _as_matrix(queries, "queries", self.dim)
        _check_k(k)
        exclusions = _exclusion_csr(exclude, len(queries))
        with self._lock.read():
            n = len(self)
            subset = _allowed_subset(allowed, n)
            if subset is not None and len(subset) <= self.config.subset_exact_max:
                return _exact_search(self._store.array, queries, k, exclusions, subset)
            if (exclusions is not None and subset is None and self.kind == "hnsw"
                    and k + int(np.diff(exclusions[0]).max(initial=0)) > self._ef_search):
                return self._search_excluding(queries, k, exclusions, n)
            return self._search(queries, k, exclusions, subset, n)

    def _search_excluding(self, queries: np.ndarray, k: int, exclusions: tuple[np.ndarray, np.ndarray],
                          n: int) -> tuple[np.ndarray, np.ndarray]:
        """HNSW with more excluded items than the beam holds: an ID selector, one query
        at a time, so that faiss skips the excluded items while it searches and the beam
        stays ``ef_search`` whatever the history's length (over-fetching ``k`` plus a
        long history widens the beam to match, and the latency with it). Shorter
        exclusion lists over-fetch within the beam, which costs nothing extra, while a
        selector slows every step of the search (1e6 items: 0.35 against 0.19 ms at
        ``ef_search`` 128). A row that still comes up short (the beam met too few other
        items) goes through the over-fetch path."""
        faiss = self._faiss
        indptr, excluded = exclusions
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for r in range(len(queries)):
            row = np.ascontiguousarray(excluded[indptr[r]:indptr[r + 1]], dtype=np.int64)
            inner = faiss.IDSelectorBatch(row)
            selector = faiss.IDSelectorNot(inner)  # holds a pointer: `inner` must outlive the search
            params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k), sel=selector)
            found_scores, found = self._index.search(queries[r:r + 1], k, params=params)
            items[r], scores[r] = found[0], found_scores[0]
        scores[items < 0] = -np.inf
        lengths = np.diff(indptr)
        short = np.flatnonzero((items < 0).any(axis=1) & (n - lengths > (items >= 0).sum(axis=1)))
        if len(short):
            kept = (np.concatenate([[0], np.cumsum(lengths[short])]).astype(np.int64),
                    np.concatenate([excluded[indptr[r]:indptr[r + 1]] for r in short]))
            items[short], scores[short] = self._search(queries[short], k, kept, None, n)
        return items, scores

    def _search(self, queries: np.ndarray, k: int, exclusions: tuple[np.ndarray, np.ndarray] | None,
                subset: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        b = len(queries)
        longest = int(np.diff(exclusions[0]).max()) if exclusions is not None and b else 0
        allowed_mask = None
        want = k + longest
        if subset is not None:
            allowed_mask = np.zeros(n, dtype=bool)
            allowed_mask[subset] = True
            want = int(np.ceil(want * n / max(len(subset), 1)))
        refine = self.config.refine if self.kind == "ivfpq" else 1
        fetch = min(n, want * refine)
        while True:
            scores, items = self._raw_search(queries, fetch)
            if exclusions is None and allowed_mask is None and self.kind != "ivfpq":
                # Common case: faiss' answer is ordered and complete, nothing to filter.
                scores[items < 0] = -np.inf
                return _pad(items, scores, k)
            if self.kind == "ivfpq":  # PQ scores are approximate: re-score exactly and re-sort
                scores = np.einsum("bd,bkd->bk", queries, self._store.array[np.maximum(items, 0)])
                scores[items < 0] = -np.inf
                order = np.argsort(-scores, axis=1, kind="stable")
                items, scores = np.take_along_axis(items, order, 1), np.take_along_axis(scores, order, 1)
            drop = items < 0
            if allowed_mask is not None:
                drop |= ~allowed_mask[np.maximum(items, 0)]
            if exclusions is not None:
                indptr, excluded = exclusions
                for r in range(b):
                    row = excluded[indptr[r]:indptr[r + 1]]
                    if len(row):
                        drop[r] |= np.isin(items[r], row)
            exhausted = fetch >= n or (items < 0).any(axis=1).all()
            if exhausted or ((~drop).sum(axis=1) >= k).all():
                break
            fetch = min(n, 2 * fetch)
        # Kept items first, in score order (a stable sort of the drop flags).
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        items = np.take_along_axis(items, order, 1)
        scores = np.take_along_axis(scores, order, 1).astype(np.float32, copy=False)
        dropped = np.take_along_axis(drop, order, 1)
        items[dropped], scores[dropped] = -1, -np.inf
        return _pad(items, scores, k)

    def _raw_search(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss' top-``fetch``: ``(scores, int64 items)``. A beam wider than ``ef_search``
        goes per call (SearchParameters), never into the shared index, so concurrent
        searches do not change each other's beam."""
        params = None
        if self.kind == "hnsw" and fetch > self._ef_search:
            params = self._hnsw_params.get(fetch)
            if params is None:
                if len(self._hnsw_params) > 256:
                    self._hnsw_params.clear()
                params = self._hnsw_params[fetch] = self._faiss.SearchParametersHNSW(efSearch=fetch)
        scores, items = self._index.search(queries, fetch, params=params)
        return scores, items.astype(np.int64, copy=False)

    # --- persistence: faiss' own binary format plus a .npy, no pickle --------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss`` and ``vectors.npy`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            self._faiss.write_index(self._index, str(directory / "index.faiss"))
            np.save(directory / "vectors.npy", self._store.array, allow_pickle=False)
        return directory

    def save_index(self, directory: str | Path) -> Path:
        """Write ``index.faiss`` alone into ``directory`` (the caller keeps the vectors),
        atomically: a concurrent reader (another serving worker) sees all of it or none."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".partial")
        os.close(handle)
        try:
            with self._lock.read():
                self._faiss.write_index(self._index, temporary)
            os.replace(temporary, directory / "index.faiss")
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return directory

    @classmethod
    def load(cls, directory: str | Path, config: RetrievalConfig = RetrievalConfig(),
             kind: str | None = None) -> FaissIndex:
        """Read an index written by :meth:`save` (search knobs come from ``config``)."""
        import faiss

        directory = Path(directory)
        index = faiss.read_index(str(directory / "index.faiss"))
        vectors = np.load(directory / "vectors.npy", allow_pickle=False)
        if index.ntotal != len(vectors):
            raise ConfigError(f"{directory}: index.faiss holds {index.ntotal} vectors, vectors.npy {len(vectors)}")
        if kind is None:
            kind = ("hnsw" if isinstance(index, faiss.IndexHNSW) else
                    "ivfpq" if isinstance(index, faiss.IndexIVFPQ) else "ivf")
        return cls(vectors, config, kind, _index=index)


Index = ExactIndex | FaissIndex


def _pad(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(items, float32 scores)`` cut or padded to ``k`` columns with ``-1``/``-inf``."""
    items, scores = items[:, :k], scores[:, :k].astype(np.float32, copy=False)
    if items.shape[1] < k:
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, scores


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def build_index(vectors: np.ndarray, config: RetrievalConfig = RetrievalConfig()) -> Index:
    """An :class:`ExactIndex` up to ``config.exact_max_items`` vectors, else a
    :class:`FaissIndex` of kind ``config.ann`` (or the kind ``config.index`` forces)."""
    vectors = _as_matrix(vectors, "item vectors")
    kind = config.resolved_kind(len(vectors))
    if kind == "exact" or len(vectors) == 0:
        return ExactIndex(vectors)
    if not config.cache_dir:
        return FaissIndex(vectors, config, kind)
    folder = Path(config.cache_dir) / index_key(vectors, config, kind)
    if (folder / "index.faiss").is_file():
        import faiss

        index = faiss.read_index(str(folder / "index.faiss"))
        if index.ntotal == len(vectors) and index.d == vectors.shape[1]:
            return FaissIndex(vectors, config, kind, _index=index)
    built = FaissIndex(vectors, config, kind)
    built.save_index(folder)
    return built


def index_key(vectors: np.ndarray, config: RetrievalConfig, kind: str) -> str:
    """A name for the faiss index of ``kind`` built from ``vectors`` with ``config``'s
    build settings (search knobs are left out: they are set on a loaded index)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).data)
    if kind == "hnsw":
        settings = (config.hnsw_m, config.hnsw_ef_construction)
    else:
        settings = (config.ivf_nlist, config.pq_m, config.pq_bits, config.train_size, config.seed)
    digest.update(repr((kind, vectors.shape, settings)).encode())
    return f"{kind}-{len(vectors)}x{vectors.shape[1]}-{digest.hexdigest()}"


# --- recall of an approximate index ------------------------------------------------------------
def recall_at_k(approx_items: np.ndarray, exact_items: np.ndarray) -> float:
    """Mean over queries of ``|approx ∩ exact| / |exact|`` (``-1`` slots ignored)."""
    approx_items, exact_items = np.atleast_2d(approx_items), np.atleast_2d(exact_items)
    hits, total = 0, 0
    for approx, exact in zip(approx_items, exact_items, strict=True):
        exact = exact[exact >= 0]
        hits += np.isin(exact, approx[approx >= 0]).sum()
        total += len(exact)
    return float(hits / total) if total else 1.0


def measure_recall(index: Index, queries: np.ndarray, k: int = 10,
                   exclude: Exclusions = None) -> float:
    """Recall@``k`` of ``index.search`` against exact search over the same vectors."""
    queries = _as_matrix(queries, "queries", index.dim)
    exact, _ = _exact_search(index.vectors, queries, k, _exclusion_csr(exclude, len(queries)))
    approx, _ = index.search(queries, k, exclude=exclude)
    return recall_at_k(approx, exact)
