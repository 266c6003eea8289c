import numpy as np
import pytest
import torch

from recloop.artifact import load_model
from recloop.data import UserHistories
from recloop.errors import ConfigError
from recloop.models import BPR, MODELS, UNKNOWN_USER, MostPopular
from recloop.models.bpr import sample_negatives

PARAMS = {"factors": 16, "lr": 0.1, "l2": 1e-2, "epochs": 5, "batch_size": 1024}


@pytest.fixture(scope="module")
def model(fit_log) -> BPR:
    return BPR(**PARAMS, seed=1).fit(fit_log)


def test_registered():
    assert MODELS["bpr"] is BPR


def test_negatives_are_never_known_items(fit_log):
    x = fit_log.to_csr()
    users = np.repeat(np.arange(fit_log.n_users), np.diff(x.indptr))
    known = users * fit_log.n_items + x.indices
    negatives = sample_negatives(users, known, fit_log.n_items, np.random.default_rng(0))
    assert not np.isin(users * fit_log.n_items + negatives, known).any()
    # uniform over each user's unknown items: every item shows up
    assert len(np.unique(negatives)) == fit_log.n_items


def test_a_user_with_all_but_one_item_gets_that_one():
    users = np.zeros(50, dtype=np.int64)
    known = np.array([0, 1, 2, 4])  # user 0 knows items 0, 1, 2, 4 of 5
    assert (sample_negatives(users, known, 5, np.random.default_rng(0)) == 3).all()


def test_beats_most_popular(model, fit_log, test_ndcg):
    bpr = test_ndcg(model)
    popular = test_ndcg(MostPopular().fit(fit_log))
    assert bpr > popular + 0.1, (bpr, popular)


def test_same_seed_same_scores(model, fit_log):
    users = np.arange(fit_log.n_users)
    scores = model.score(users)
    assert scores.dtype == np.float32
    state = torch.random.get_rng_state()
    again = BPR(**PARAMS, seed=1)
    again.fit(fit_log)
    again.fit(fit_log)  # every fit starts from scratch
    np.testing.assert_array_equal(again.score(users), scores)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    assert not np.array_equal(BPR(**PARAMS, seed=2).fit(fit_log).score(users), scores)


def test_unknown_user_is_folded_in_from_history(model, fit_log):
    history = UserHistories.from_lists([[3, 5, 8], []], fit_log.n_items)
    scores = model.score([UNKNOWN_USER, UNKNOWN_USER], history)
    expected = model.item_embeddings_[[3, 5, 8]].mean(0) @ model.item_embeddings_.T + model.item_bias_
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores[1], model.item_bias_)  # nothing known: the item bias alone
    # known users keep their learned embeddings, alongside unknown ones in one batch
    mixed = model.score([4, UNKNOWN_USER], UserHistories.from_lists([fit_log.histories([4]).row(0), [3, 5, 8]],
                                                                      fit_log.n_items))
    np.testing.assert_allclose(mixed[0], model.score([4])[0], rtol=1e-5, atol=1e-6)  # BLAS may sum
    np.testing.assert_allclose(mixed[1], scores[0], rtol=1e-5, atol=1e-6)  # differently per batch


def test_unknown_user_gets_their_cluster(synthetic, cluster_precision):
    assert cluster_precision(BPR(**PARAMS).fit(synthetic.interactions)) > 0.8


def test_recommend_excludes_known_items(model, fit_log):
    users = np.arange(50)
    items, _ = model.recommend(users, k=10)
    history = fit_log.histories(users)
    for r in range(len(users)):
        assert not set(items[r]) & set(history.row(r))


def test_save_load_round_trip(tmp_path, model, fit_log):
    model.save(tmp_path / "a")
    loaded = load_model(tmp_path / "a")
    assert isinstance(loaded, BPR) and loaded.config == model.config
    users = np.arange(fit_log.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    history = UserHistories.from_lists([[1, 2]], fit_log.n_items)
    np.testing.assert_array_equal(loaded.score([UNKNOWN_USER], history), model.score([UNKNOWN_USER], history))
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())


@pytest.mark.parametrize("bad", [{"factors": 0}, {"epochs": 0}, {"batch_size": 10.0}, {"lr": 0.0},
                                 {"l2": -1.0}, {"seed": 1.5}, {"learning_rate": 0.1}])
def test_bad_hyperparameters(bad):
    with pytest.raises(ConfigError):
        BPR(**bad)


def test_similar_items_by_cosine(model, fit_log):
    items, scores = model.similar_items(3, k=fit_log.n_items + 1)
    assert 3 not in items[:-2] and items[-2:].tolist() == [-1, -1]  # itself left out, then padding
    assert np.all(np.diff(scores[:-2]) <= 0)
