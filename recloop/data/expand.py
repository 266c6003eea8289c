"""Fractal (Kronecker) expansion of a real interaction log into a large, realistic one.

After F. Belletti, K. Lakshmanan, W. Krichene, Y.-F. Chen and J. Anderson, "Scalable
Realistic Recommendation Datasets through Fractal Expansions" (arXiv:1901.08910, 2019)
and its follow-up "Scaling Up Collaborative Filtering Data Sets through Randomized Fractal
Expansions" (same authors, 2019). The source's user x item matrix ``R`` (``m x n``) is reduced
to a small pattern ``P`` (``m' x n'``); the expansion is the Kronecker product
``P (x) R``: block ``(a, b)`` is a copy of ``R`` in which every interaction is kept with
probability ``P[a, b]`` (the paper's stochastic dropout). Expanded user ``a*m + u`` is
source user ``u`` seen through block row ``a``, so its activity is ``deg(u)`` scaled by
the row's weight; item popularity likewise. The fat tails of user activity and item
popularity, and (up to the dropout's noise) the singular value spectrum, the products of
both factors' spectra, carry over; the count of interactions is ``len(R) * sum(P)`` in expectation.

The pattern comes from a random low-rank reduction: a rank-``k`` SVD ``R ~ U S V^T``,
whose rows of ``U`` (users) and ``V`` (items) are averaged over ``m'`` and ``n'`` random
groups, so that ``P ~ U' S V'^T`` holds the density of the low-rank approximation over
each (user group, item group) block. Choices made here rather than taken from the paper
(which fixes the pattern's size and lets the count follow): ``P`` is divided by its
maximum and then scaled (clipped at 1) so that the expected count hits the requested
``n_interactions``; the block shape ``m' x n'`` is chosen from the target (square, with a
mean keep probability near ``block_density``); and both expanded vocabularies are shuffled by one seeded permutation each so that ids
do not reveal the block structure. Every copy keeps its source row's rating and
timestamp, so a user's sequence follows its source user's order.

Rows are generated one block row at a time (``n'`` blocks, about ``n_interactions / m'``
rows) and written as Parquet shards in which each user's rows are contiguous and in time
order (users themselves are not in id order); all interactions of a user sit in one
shard, and memory is bounded by one shard, not by ``n_interactions``.
Each block draws from its own generator seeded by ``(seed, a, b)``, so the output is the
same for a seed whatever the shard size. ``manifest.json`` beside the shards records the
source, seed, target, counts, pattern and the SHA-256 of each shard.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse.linalg as spla

from recloop.data.download import sha256_of
from recloop.data.interactions import Interactions
from recloop.errors import ConfigError, DataError

MANIFEST = "manifest.json"
FORMAT = "recloop-fractal-expansion/1"


@dataclass(frozen=True)
class ExpansionConfig:
    """How the expansion is shaped and written.

    ``block_density`` is the mean keep probability aimed at in the pattern: lower gives
    more blocks, hence more users and items with fewer interactions each. ``rank`` caps
    the SVD rank used for the pattern. ``shard_rows`` is the size at which a shard is
    closed (at a block-row boundary, so a shard may exceed it by one block row).
    """

    block_density: float = 0.1
    rank: int = 8
    shard_rows: int = 4_000_000
    compression: str = "zstd"

    def __post_init__(self):
        if not 0.0 < self.block_density <= 1.0:
            raise ConfigError(f"ExpansionConfig.block_density is {self.block_density}; it must be in (0, 1]")
        if self.rank < 1:
            raise ConfigError(f"ExpansionConfig.rank is {self.rank}; it must be at least 1")
        if self.shard_rows < 1:
            raise ConfigError(f"ExpansionConfig.shard_rows is {self.shard_rows}; it must be at least 1")


def expand(source_interactions: Interactions, n_interactions: int, output_dir: str | Path, seed: int = 0, *,
           config: ExpansionConfig = ExpansionConfig(), source_name: str = "interactions") -> dict:
    """Write a fractal expansion of ``source_interactions`` with about ``n_interactions`` rows.

    Shards ``part-00000.parquet``, ... (columns ``user_id``, ``item_id`` as int32, then
    ``timestamp`` int64 and ``rating`` float32 when the source has them) and
    ``manifest.json`` go to ``output_dir``, which must be empty or absent. Returns the
    manifest. Read it back with ``load_dataset(output_dir, columns=ColumnMapping(
    rating="rating", timestamp="timestamp"))``.
    """
    log = source_interactions
    if len(log) == 0:
        raise DataError(f"cannot expand {source_name!r}: it has no interactions")
    if n_interactions < len(log):
        raise DataError(f"n_interactions is {n_interactions} but {source_name!r} already has {len(log)}; "
                        "expansion only grows a log: ask for at least as many as the source has")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise DataError(f"{output_dir} is not empty; give a new folder for the expansion (shards are never overwritten)")
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    pattern = reduced_pattern(log, n_interactions, config, rng)
    n_users, n_items = log.n_users * pattern.shape[0], log.n_items * pattern.shape[1]
    if max(n_users, n_items) > np.iinfo(np.int32).max:
        raise DataError(f"the expansion would have {n_users} users and {n_items} items, past int32 ids; "
                        "ask for fewer interactions or raise block_density")
    user_perm = rng.permutation(n_users).astype(np.int32)
    item_perm = rng.permutation(n_items).astype(np.int32)

    user_seen = np.zeros(n_users, dtype=bool)
    item_seen = np.zeros(n_items, dtype=bool)
    shards: list[dict] = []
    buffer: list[tuple[int, np.ndarray, np.ndarray]] = []  # (block row, source row, block column)
    buffered = 0
    for a in range(pattern.shape[0]):
        kept = []
        for b in range(pattern.shape[1]):
            block_rng = np.random.default_rng(np.random.SeedSequence([seed, 1, a, b]))
            kept.append(np.flatnonzero(block_rng.random(len(log), dtype=np.float32) < pattern[a, b]).astype(np.int32))
        row = np.concatenate(kept)
        column = np.repeat(np.arange(pattern.shape[1], dtype=np.int32), [len(k) for k in kept])
        # The source is in canonical order (user, time), so its row number is a sort key for
        # "by user, then time"; a stable sort merges the sorted blocks and keeps block order on ties.
        order = np.argsort(row, kind="stable")
        buffer.append((a, row[order], column[order]))
        buffered += len(row)
        if buffered >= config.shard_rows or (a == pattern.shape[0] - 1 and buffered):
            table = _shard_table(log, buffer, user_perm, item_perm)
            user_seen[table.column("user_id").to_numpy()] = True
            item_seen[table.column("item_id").to_numpy()] = True
            shards.append(_write_shard(table, output_dir / f"part-{len(shards):05d}.parquet", config.compression))
            buffer, buffered = [], 0

    total = sum(s["rows"] for s in shards)
    manifest = {
        "format": FORMAT,
        "method": "fractal (Kronecker) expansion, Belletti et al. 2019 (arXiv:1901.08910)",
        "source": {"name": source_name, "interactions": len(log), "users": log.n_users, "items": log.n_items,
                   "has_rating": log.has_rating, "has_timestamp": log.has_timestamp},
        "seed": seed,
        "config": asdict(config),
        "target_interactions": int(n_interactions),
        "interactions": int(total),
        "relative_error": (total - n_interactions) / n_interactions,
        "users": int(n_users),
        "items": int(n_items),
        "active_users": int(user_seen.sum()),
        "active_items": int(item_seen.sum()),
        "pattern_shape": list(pattern.shape),
        "pattern": {"min": float(pattern.min()), "mean": float(pattern.mean()), "max": float(pattern.max())},
        "columns": list(shards[0]["columns"]),
        "shards": shards,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def reduced_pattern(log: Interactions, n_interactions: int, config: ExpansionConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """The ``m' x n'`` keep probabilities whose sum is ``n_interactions / len(log)``."""
    factor = n_interactions / len(log)
    side = max(1, math.ceil(math.sqrt(factor / config.block_density)))
    matrix = log.to_csr()
    k = min(config.rank, side, min(matrix.shape) - 1)
    if k < 1:
        raise DataError(f"the source has {matrix.shape[0]} users and {matrix.shape[1]} items; "
                        "expansion needs at least 2 of each")
    u, s, vt = spla.svds(matrix.astype(np.float64), k=k, random_state=rng.integers(2**31))
    user_groups = _group_means(u, side, rng)          # (m', k)
    item_groups = _group_means(vt.T, side, rng)       # (n', k)
    pattern = np.clip((user_groups * s) @ item_groups.T, 0.0, None)  # (m', n')
    if pattern.max() <= 0:
        pattern = np.ones_like(pattern)
    pattern /= pattern.max()
    return _scaled_to_sum(pattern, factor)


def _group_means(rows: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of ``rows`` over ``n_groups`` random, near-equal groups."""
    groups = rng.permutation(len(rows)) % n_groups
    sums = np.zeros((n_groups, rows.shape[1]))
    np.add.at(sums, groups, rows)
    return sums / np.bincount(groups, minlength=n_groups)[:, None]


def _scaled_to_sum(pattern: np.ndarray, target: float) -> np.ndarray:
    """``min(c * pattern, 1)`` with ``c`` chosen (bisection) so that it sums to ``target``."""
    if target > pattern.size:
        raise DataError(f"a {pattern.shape} pattern cannot reach {target:.1f} copies of the source")
    low, high = 0.0, target / pattern.sum() * pattern.size
    for _ in range(100):
        middle = (low + high) / 2
        if np.minimum(middle * pattern, 1.0).sum() < target:
            low = middle
        else:
            high = middle
    return np.minimum(high * pattern, 1.0)


def _shard_table(log: Interactions, block_rows: list[tuple[int, np.ndarray, np.ndarray]],
                 user_perm: np.ndarray, item_perm: np.ndarray) -> pa.Table:
    """The expanded columns of some block rows; each user's rows together, oldest first."""
    a = np.concatenate([np.full(len(rows), a, dtype=np.int64) for a, rows, _ in block_rows])
    row = np.concatenate([rows for _, rows, _ in block_rows])
    b = np.concatenate([columns for _, _, columns in block_rows])
    columns = {"user_id": user_perm[a * log.n_users + log.user_idx[row]],
               "item_id": item_perm[b * log.n_items + log.item_idx[row]]}
    if log.timestamp is not None:
        columns["timestamp"] = log.timestamp[row]
    if log.rating is not None:
        columns["rating"] = log.rating[row]
    return pa.table(columns)


def _write_shard(table: pa.Table, path: Path, compression: str) -> dict:
    pq.write_table(table, path, compression=compression)
    return {"file": path.name, "rows": table.num_rows, "sha256": sha256_of(path),
            "columns": {name: str(table.schema.field(name).type) for name in table.column_names}}


def read_manifest(output_dir: str | Path) -> dict:
    """The manifest of an expansion folder."""
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{output_dir}: no {MANIFEST}; it is not the output of recloop.data.expand.expand()")
    return json.loads(path.read_text())


def verify(output_dir: str | Path) -> dict:
    """Check every shard against the manifest's row count and SHA-256; return the manifest."""
    manifest = read_manifest(output_dir)
    for shard in manifest["shards"]:
        path = Path(output_dir) / shard["file"]
        if not path.is_file():
            raise DataError(f"{path}: shard listed in the manifest is missing")
        digest = sha256_of(path)
        if digest != shard["sha256"]:
            raise DataError(f"{path}: SHA-256 {digest[:12]}... differs from the manifest's {shard['sha256'][:12]}...; "
                            "the shard was changed or truncated: expand again")
        if pq.ParquetFile(path).metadata.num_rows != shard["rows"]:
            raise DataError(f"{path}: row count differs from the manifest's {shard['rows']}")
    return manifest
