import numpy as np
import pytest
import scipy.sparse as sp

from recloop.artifact import load_model
from recloop.data import Interactions, UserHistories
from recloop.data.ids import IdMap
from recloop.errors import ConfigError
from recloop.models import MODELS, UNKNOWN_USER, ItemKNN, MostPopular
from recloop.models.itemknn import cosine_knn

# 3 users x 4 items; item 3 has no users.
X = np.array([[1, 1, 0, 0],
              [1, 0, 1, 0],
              [1, 1, 1, 0]], dtype=np.float32)


def tiny_log() -> Interactions:
    users, items = np.nonzero(X)
    return Interactions(users, items, IdMap(["a", "b", "c"], "user"), IdMap(["w", "x", "y", "z"], "item"))


def test_registered():
    assert MODELS["itemknn"] is ItemKNN


def test_similarity_by_hand_with_shrinkage():
    # item 0 has 3 users, items 1 and 2 have 2 each; every pair shares the users of the smaller.
    # sim(0,1) = 2 / (sqrt(3) sqrt(2) + 1), sim(1,2) = 1 / (sqrt(2) sqrt(2) + 1) = 1/3.
    s01 = 2 / (np.sqrt(6) + 1)
    expected = np.array([[0, s01, s01, 0],
                         [s01, 0, 1 / 3, 0],
                         [s01, 1 / 3, 0, 0],
                         [0, 0, 0, 0]], dtype=np.float32)
    sim = cosine_knn(sp.csr_matrix(X), k=3, shrink=1.0).toarray()
    np.testing.assert_allclose(sim, expected, rtol=1e-6)
    model = ItemKNN(k=3, shrink=1.0).fit(tiny_log())
    np.testing.assert_allclose(model.neighbours_.toarray(), expected, rtol=1e-6)
    # a user who has item 0 only: score_j = sim(0, j)
    scores = model.score([UNKNOWN_USER], UserHistories.from_lists([[0]], 4))
    np.testing.assert_allclose(scores[0], expected[0], rtol=1e-6)
    assert scores.dtype == np.float32


def test_only_top_k_neighbours_kept():
    sim = cosine_knn(sp.csr_matrix(X), k=1, shrink=1.0)
    assert np.diff(sim.indptr).tolist() == [1, 1, 1, 0]
    # the single neighbour of items 1 and 2 is item 0 (2/(sqrt6+1) = 0.58 > 1/3);
    # item 0's is one of its two equally similar items
    assert sim[1].indices.tolist() == [0] and sim[2].indices.tolist() == [0]
    assert sim[0].indices[0] in (1, 2)
    # scoring uses the candidate's neighbours: item 1 has only item 0, so a user
    # holding item 2 gives item 1 no score, while holding item 0 does.
    model = ItemKNN(k=1, shrink=1.0).fit(tiny_log())
    scores = model.score([UNKNOWN_USER, UNKNOWN_USER], UserHistories.from_lists([[2], [0]], 4))
    assert scores[0, 1] == 0 and scores[1, 1] > 0


def test_similarity_is_blockwise_exact(monkeypatch, synthetic):
    x = synthetic.interactions.to_csr()
    whole = cosine_knn(x, k=10, shrink=5.0)
    monkeypatch.setattr("recloop.models.itemknn.BLOCK_FLOATS", 7 * x.shape[1])  # 7 rows per block
    blocked = cosine_knn(x, k=10, shrink=5.0)
    np.testing.assert_allclose(blocked.toarray(), whole.toarray(), rtol=1e-6)
    assert np.diff(blocked.indptr).max() == 10


def test_beats_most_popular(fit_log, test_ndcg):
    knn = test_ndcg(ItemKNN(k=50, shrink=5.0).fit(fit_log))
    popular = test_ndcg(MostPopular().fit(fit_log))
    assert knn > popular + 0.1, (knn, popular)


def test_unknown_user_gets_their_cluster(synthetic, cluster_precision):
    model = ItemKNN(k=20).fit(synthetic.interactions)
    assert cluster_precision(model) > 0.8


def test_recommend_excludes_known_items(fit_log):
    model = ItemKNN(k=20).fit(fit_log)
    users = np.arange(50)
    items, _ = model.recommend(users, k=10)
    history = fit_log.histories(users)
    for r in range(len(users)):
        assert not set(items[r]) & set(history.row(r))


def test_similar_items_reads_the_neighbours(fit_log):
    model = ItemKNN(k=5).fit(fit_log)
    items, scores = model.similar_items(3, k=8)
    row = model.neighbours_[3]
    assert set(items[:5]) == set(row.indices) and 3 not in items
    assert np.all(np.diff(scores[:5]) <= 0)
    assert items[5:].tolist() == [-1, -1, -1] and np.all(np.isneginf(scores[5:]))


def test_save_load_round_trip(tmp_path, fit_log):
    model = ItemKNN(k=20, shrink=2.0).fit(fit_log)
    model.save(tmp_path / "a")
    loaded = load_model(tmp_path / "a")
    assert isinstance(loaded, ItemKNN) and loaded.config == model.config
    users = np.arange(fit_log.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


@pytest.mark.parametrize("bad", [{"k": 0}, {"k": 2.5}, {"shrink": -1.0}, {"neighbours": 5}])
def test_bad_hyperparameters(bad):
    with pytest.raises(ConfigError):
        ItemKNN(**bad)


def test_blocks_do_not_change_the_neighbours_on_ml100k(ml100k):
    x = ml100k.interactions.to_csr()
    n_items = x.shape[1]
    whole = cosine_knn(x, k=50, shrink=5.0, block_floats=n_items * n_items)  # one block: every row at once
    blocked = cosine_knn(x, k=50, shrink=5.0, block_floats=37 * n_items)  # 37 rows per block, 46 blocks
    assert (whole != blocked).nnz == 0 and whole.nnz == blocked.nnz
    np.testing.assert_array_equal(np.diff(blocked.indptr), np.diff(whole.indptr))
    assert np.diff(whole.indptr).max() == 50
    fitted = ItemKNN(k=50, shrink=5.0).fit(ml100k.interactions)  # the default budget: blocks of BLOCK_FLOATS
    assert (fitted.neighbours_ != whole).nnz == 0
