"""Maximum inner product search: exact and faiss indexes, exclusions, runtime adds, recall."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.errors import ConfigError
from recloop.rank.index import (
    ExactIndex,
    FaissIndex,
    RetrievalConfig,
    build_index,
    measure_recall,
    recall_at_k,
)

pytest.importorskip("faiss")


def clustered(n: int, dim: int = 32, n_clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Vectors around cluster centres with varied norms, as trained embeddings look."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    vectors = centres[rng.integers(0, n_clusters, n)] + 0.5 * rng.normal(size=(n, dim))
    return (vectors * rng.lognormal(0, 0.2, size=(n, 1))).astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def catalog():
    both = clustered(5100)  # queries near the same cluster centres, as user vectors are
    return both[:5000], both[5000:]


# --- exact index ---------------------------------------------------------------------------------
def test_exact_index_equals_brute_force_and_batch_equals_single(catalog):
    vectors, queries = catalog
    index = ExactIndex(vectors)
    items, scores = index.search(queries, 10)
    np.testing.assert_array_equal(items, brute_force(vectors, queries, 10))
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, items, 1), rtol=1e-5)
    single, _ = index.search(queries[7], 10)
    np.testing.assert_array_equal(single[0], items[7])


def test_exact_index_exclusions_allowed_and_padding():
    vectors = np.eye(4, dtype=np.float32) * np.array([[4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    index = ExactIndex(vectors)
    query = np.ones((2, 4), dtype=np.float32)
    items, scores = index.search(query, 3, exclude=[[0], [1, 2]])
    np.testing.assert_array_equal(items, [[1, 2, 3], [0, 3, -1]])
    assert scores[1, 2] == -np.inf
    items, _ = index.search(query, 2, allowed=[3, 1, 99], exclude=[[], [1]])
    np.testing.assert_array_equal(items, [[1, 3], [3, -1]])


def test_exact_index_add_makes_items_retrievable(catalog):
    vectors, queries = catalog
    index = ExactIndex(vectors[:100])
    new = index.add(10 * queries[:3])  # far ahead of every other item for its own query
    np.testing.assert_array_equal(new, [100, 101, 102])
    assert len(index) == 103
    items, _ = index.search(queries[:3], 1)
    np.testing.assert_array_equal(items[:, 0], new)
    for _ in range(40):  # many single adds: buffer grows, earlier rows intact
        index.add(vectors[200])
    np.testing.assert_array_equal(index.vectors[:100], vectors[:100])
    assert len(index) == 143


# --- faiss indexes -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_recall_against_exact(catalog, kind):
    vectors, queries = catalog
    index = FaissIndex(vectors, RetrievalConfig(hnsw_m=16, hnsw_ef_search=64, ivf_nlist=64, ivf_nprobe=16), kind)
    recall = measure_recall(index, queries, k=10)
    assert recall >= 0.95
    # A weak setting measurably loses recall: the measurement is not vacuous.
    if kind == "ivf":
        index.nprobe = 1
        assert measure_recall(index, queries, k=10) < min(recall, 0.97)


def test_ivfpq_refines_to_high_recall(catalog):
    vectors, queries = catalog
    index = FaissIndex(vectors, RetrievalConfig(ivf_nlist=64, ivf_nprobe=16, pq_m=8, pq_bits=4, refine=8), "ivfpq")
    assert measure_recall(index, queries, k=10) >= 0.8
    items, scores = index.search(queries[:5], 10)  # re-scored exactly: scores are true dot products
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries[:5], vectors[items]), rtol=1e-4)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_exclusions_are_overfetched(catalog, kind):
    vectors, queries = catalog
    index = FaissIndex(vectors, RetrievalConfig(hnsw_m=16, ivf_nlist=64, ivf_nprobe=16), kind)
    top, _ = index.search(queries[:4], 50)
    exclude = [top[r, :40] for r in range(4)]  # the 40 best of each row are known items
    items, scores = index.search(queries[:4], 10, exclude=exclude)
    assert (items >= 0).all()
    for r in range(4):
        assert not np.isin(items[r], exclude[r]).any()
        np.testing.assert_array_equal(items[r], top[r, 40:50])  # the next best, in order
    assert (np.diff(scores, axis=1) <= 0).all()



@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_rows_left_short_by_exclusions_fall_back_to_overfetching(kind):
    vectors = clustered(300, dim=8, n_clusters=3, seed=1)
    index = FaissIndex(vectors, RetrievalConfig(hnsw_m=4, hnsw_ef_search=10, ivf_nlist=4, ivf_nprobe=4), kind)
    query = vectors[:1] * 3
    everything_but = np.setdiff1d(np.arange(300), [7, 150, 299])  # 3 items left, far apart in the graph
    items, scores = index.search(np.vstack([query, query]), 5, exclude=[everything_but, []])
    assert sorted(items[0, :3]) == [7, 150, 299] and (items[0, 3:] == -1).all() and np.isinf(scores[0, 3:]).all()
    np.testing.assert_array_equal(items[1], brute_force(vectors, query, 5)[0])


def test_faiss_exclusions_keep_recall_with_long_histories(catalog):
    vectors, queries = catalog
    index = FaissIndex(vectors, RetrievalConfig(hnsw_m=16, hnsw_ef_search=64), "hnsw")
    rng = np.random.default_rng(0)
    exclude = [np.concatenate([brute_force(vectors, q[None], 30)[0, ::3], rng.choice(5000, 400)]) for q in queries]
    assert measure_recall(index, queries, 10, exclude=exclude) > 0.95

def test_faiss_allowed_subset_and_add(catalog):
    vectors, queries = catalog
    index = FaissIndex(vectors, RetrievalConfig(hnsw_m=16, subset_exact_max=100))
    allowed = np.arange(0, 5000, 100)
    items, _ = index.search(queries[:3], 5, allowed=allowed)  # small: exact over the subset
    np.testing.assert_array_equal(items, allowed[brute_force(vectors[allowed], queries[:3], 5)])
    allowed = np.arange(0, 5000, 2)  # large: filtered index results
    items, _ = index.search(queries[:3], 5, allowed=allowed)
    assert (items % 2 == 0).all() and (items >= 0).all()
    new = index.add(10 * queries[:2])
    np.testing.assert_array_equal(new, [5000, 5001])
    items, _ = index.search(queries[:2], 1)
    np.testing.assert_array_equal(items[:, 0], new)


def test_faiss_save_load_round_trip(catalog, tmp_path):
    vectors, queries = catalog
    index = FaissIndex(vectors[:1000], RetrievalConfig(ivf_nlist=16), "ivf")
    index.add(vectors[1000:1010])
    loaded = FaissIndex.load(index.save(tmp_path / "ix"), RetrievalConfig(ivf_nprobe=index.nprobe))
    assert loaded.kind == "ivf" and len(loaded) == 1010
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], index.search(queries, 10)[0])


def test_build_index_picks_exact_below_threshold(catalog):
    vectors, _ = catalog
    assert isinstance(build_index(vectors, RetrievalConfig(exact_max_items=5000)), ExactIndex)
    ann = build_index(vectors, RetrievalConfig(exact_max_items=4999, ann="ivf"))
    assert isinstance(ann, FaissIndex) and ann.kind == "ivf"
    assert isinstance(build_index(vectors[:10], RetrievalConfig(index="hnsw")), FaissIndex)



def test_build_index_cache_loads_what_it_built_and_keys_on_vectors_and_settings(catalog, tmp_path, monkeypatch):
    vectors, queries = catalog
    config = RetrievalConfig(index="hnsw", hnsw_m=8, hnsw_ef_construction=20, cache_dir=str(tmp_path))
    built = build_index(vectors, config)
    (folder,) = tmp_path.iterdir()
    assert (folder / "index.faiss").is_file() and not list(folder.glob("*.partial"))

    def no_build(self, vectors):
        raise AssertionError("built again instead of loading the cached index")

    monkeypatch.setattr(FaissIndex, "_build", no_build)
    loaded = build_index(vectors, RetrievalConfig(index="hnsw", hnsw_m=8, hnsw_ef_construction=20,
                                                  hnsw_ef_search=40, cache_dir=str(tmp_path)))
    assert loaded.kind == "hnsw" and loaded.ef_search == 40 and np.shares_memory(loaded.vectors, vectors)
    built.ef_search = 40
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], built.search(queries, 10)[0])
    # Other vectors or other build settings are another index.
    with pytest.raises(AssertionError, match="built again"):
        build_index(vectors * 2, config)
    with pytest.raises(AssertionError, match="built again"):
        build_index(vectors, RetrievalConfig(index="hnsw", hnsw_m=12, cache_dir=str(tmp_path)))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="index"):
        RetrievalConfig(index="annoy")
    with pytest.raises(ConfigError, match="hnsw_m"):
        RetrievalConfig(hnsw_m=0)
    with pytest.raises(ConfigError, match="pq_m"):
        FaissIndex(clustered(500, dim=30), RetrievalConfig(pq_m=8, ivf_nlist=4), "ivfpq")


def test_recall_at_k_counts_overlap():
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [4, 5, 6]])) == pytest.approx(5 / 6)


def test_concurrent_adds_and_searches(catalog):
    import threading

    vectors, queries = catalog
    index = FaissIndex(vectors[:2000], RetrievalConfig(hnsw_m=8), "hnsw")
    errors = []

    def search():
        try:
            for r in range(60):
                items, _ = index.search(queries[r % len(queries)], 10, exclude=[list(range(r))])
                assert (items >= 0).all() and not np.isin(items, np.arange(r)).any()
        except Exception as error:  # noqa: BLE001 - surfaced below: a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for v in vectors[2000:2100]:
        index.add(v)
    for thread in threads:
        thread.join()
    assert not errors and len(index) == 2100 and index._index.ntotal == 2100


def test_the_algorithms_import_no_service_web_or_live_state():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys, recloop.rank.index, recloop.rank.rerank, recloop.rank.bandits, recloop.rank.explain; "
            "print(sorted(m for m in sys.modules if m.startswith(('recloop.serve', 'fastapi', 'starlette'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "[]"
