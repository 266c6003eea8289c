"""Re-ranking algorithms: MMR (hand-checked), category cap, composition."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.data.features import CategoricalFeature, Features
from recloop.data.ids import IdMap
from recloop.errors import ConfigError, UnknownIdError
from recloop.rank.rerank import (
    MMR,
    CategoryCap,
    CategorySimilarity,
    ItemCategories,
    VectorSimilarity,
    chain,
)


@pytest.fixture()
def genres() -> ItemCategories:
    rows = [["A"], ["A"], ["A"], ["B"], ["A", "B"], ["C"], []]
    features = Features(IdMap([f"i{i}" for i in range(len(rows))], "item"),
                        {"genre": CategoricalFeature.from_lists(rows, ["A", "B", "C"])})
    return ItemCategories.from_features(features, "genre")


def scored(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n), np.linspace(1.0, 0.1, n).astype(np.float32)


# --- MMR -----------------------------------------------------------------------------------------
# Four items: 0 and 1 identical, 2 orthogonal to them, 3 in between (cos 0.6 to 0/1, 0.8 to 2).
VECTORS = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
SCORES = np.array([1.0, 0.9, 0.5, 0.0], dtype=np.float32)


def test_mmr_hand_checked_four_items():
    # rel = [1, .9, .5, 0]. Pick 0; then 0.5*rel - 0.5*max_sim = [-, -.05, .25, -.3] -> 2;
    # then max_sim = [1, 1, 1, .8]: item 1 -.05 beats item 3 -.4 -> 1, then 3.
    items, scores = MMR(VectorSimilarity(VECTORS), lambda_=0.5)(np.arange(4), SCORES)
    np.testing.assert_array_equal(items, [0, 2, 1, 3])
    np.testing.assert_array_equal(scores, SCORES[[0, 2, 1, 3]])  # model scores travel with items
    items, _ = MMR(VectorSimilarity(VECTORS), lambda_=1.0)(np.arange(4), SCORES)
    np.testing.assert_array_equal(items, [0, 1, 2, 3])  # lambda 1: relevance order
    # lambda 0.9: redundancy costs 0.1 * 1 and the duplicate (rel .9 -> .81 - .1) still beats item 2 (.45)
    items, _ = MMR(VectorSimilarity(VECTORS), lambda_=0.9)(np.arange(4), SCORES)
    np.testing.assert_array_equal(items, [0, 1, 2, 3])


def test_mmr_k_positions_then_incoming_order():
    items, _ = MMR(VectorSimilarity(VECTORS), lambda_=0.3, k=2)(np.array([0, 1, 3, 2]), SCORES[[0, 1, 3, 2]])
    np.testing.assert_array_equal(items, [0, 2, 1, 3])  # 2 promoted; 1 and 3 follow as they came


def reference_mmr(items, scores, sim, lam, k):
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    chosen, rest = [], list(range(len(items)))
    while len(chosen) < k:
        best = max(rest, key=lambda i: lam * rel[i] - (1 - lam) * max((sim[i, j] for j in chosen), default=0.0))
        chosen.append(best)
        rest.remove(best)
    return items[chosen + rest]


def test_mmr_matches_a_plain_loop_implementation():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    items = rng.permutation(300)[:120]
    scores = np.sort(rng.normal(size=120))[::-1].astype(np.float32)
    similarity = VectorSimilarity(vectors)
    for lam in (0.2, 0.7):
        got, _ = MMR(similarity, lambda_=lam, k=15)(items, scores)
        np.testing.assert_array_equal(got, reference_mmr(items, scores, similarity(items), lam, 15))


def test_mmr_with_genre_similarity_spreads_genres(genres):
    items, _ = MMR(CategorySimilarity(genres), lambda_=0.5, k=3)(*scored(6))
    # Items 0-2 are all genre A: after 0, the B and C items come before more A.
    assert items[0] == 0 and set(items[1:3]) == {3, 5}


def test_mmr_rejects_bad_lambda():
    with pytest.raises(ConfigError, match="lambda_"):
        MMR(VectorSimilarity(VECTORS), lambda_=1.5)


# --- category cap --------------------------------------------------------------------------------
def test_category_cap_holds_back_over_cap_items(genres):
    items, scores = CategoryCap(genres, max_per_value=2, k=4)(*scored(7))
    # A, A accepted; 2 (A) held; 3 (B) in; 4 (A+B): A at cap, held; 5 (C) in -> top 4 = 0, 1, 3, 5.
    np.testing.assert_array_equal(items, [0, 1, 3, 5, 2, 4, 6])
    np.testing.assert_allclose(scores, scored(7)[1][[0, 1, 3, 5, 2, 4, 6]])
    top = genres.rows(items[:4]).sum(axis=0)
    assert top.max() <= 2


def test_category_cap_multi_genre_and_ungenred_items(genres):
    items, _ = CategoryCap(genres, max_per_value=1, k=3)(np.array([4, 0, 3, 6, 5]), np.ones(5))
    # 4 (A+B) takes both A and B: 0 (A) and 3 (B) are held; 6 has no genre and is never capped.
    np.testing.assert_array_equal(items, [4, 6, 5, 0, 3])


def test_category_cap_strict_drops_held_items(genres):
    items, _ = CategoryCap(genres, max_per_value=1, k=4, strict=True)(*scored(4))
    np.testing.assert_array_equal(items, [0, 3])  # only two items satisfy the cap


# --- categories ----------------------------------------------------------------------------------
def test_item_categories_rows_and_unknown_values(genres):
    assert genres.rows(np.array([99])).sum() == 0  # an item added later has no genre
    np.testing.assert_array_equal(genres.items_with_any(["c"]), [5])  # case-insensitive fallback
    with pytest.raises(UnknownIdError, match=r"unknown genre 'Z'; genre values are \['A', 'B', 'C'\]"):
        genres.value_mask(["Z"])
    with pytest.raises(ConfigError, match="genre"):
        ItemCategories.from_features(Features(IdMap(["x"])), "genre")


def test_chain_composes_stages(genres):
    stages = chain(MMR(CategorySimilarity(genres), lambda_=1.0, k=3), CategoryCap(genres, max_per_value=1, k=3))
    items, _ = stages(np.array([0, 1, 3, -1, 5]), np.array([5, 4, 3, -np.inf, 1], dtype=np.float32))
    np.testing.assert_array_equal(items, [0, 3, 5, 1])  # padding dropped, then the cap holds 1 back
