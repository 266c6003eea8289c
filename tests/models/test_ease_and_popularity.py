import numpy as np
import pytest
import torch

from recloop.artifact import load_model
from recloop.data import UserHistories, leave_one_out
from recloop.errors import ConfigError, NotFittedError
from recloop.models import EASE, UNKNOWN_USER, MostPopular
from recloop.models.ease import available_memory_bytes, ease_weights, gram_matrix


def test_ease_matches_the_closed_form_in_float64(synthetic):
    train = synthetic.interactions
    model = EASE(l2=25.0).fit(train)
    x = train.to_csr().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 25.0 * np.eye(x.shape[1]))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_, expected, atol=2e-5, rtol=1e-3)
    assert np.all(np.diag(model.weights_) == 0)


def test_popularity_scores_count_distinct_users(synthetic):
    train = synthetic.interactions
    model = MostPopular().fit(train)
    np.testing.assert_array_equal(model.score([0])[0], train.item_counts())


@pytest.mark.parametrize("make", [lambda: MostPopular(), lambda: EASE(l2=30.0)])
def test_recommend_excludes_known_and_listed_items(synthetic, make):
    train = synthetic.interactions
    model = make().fit(train)
    users = np.array([0, 5, 9])
    items, scores = model.recommend(users, k=20)
    for row, user in enumerate(users):
        known = set(train.histories([user]).row(0))
        assert not known & set(items[row])
        assert np.all(np.diff(scores[row]) <= 0)
    blocked = items[:, :3]
    again, _ = model.recommend(users, k=20, exclude=blocked)
    for row in range(len(users)):
        assert not set(blocked[row]) & set(again[row])


def test_batch_scores_equal_single_user_scores(synthetic):
    model = EASE(l2=30.0).fit(synthetic.interactions)
    batch = model.score(np.arange(10))
    for user in range(10):
        np.testing.assert_array_equal(batch[user], model.score([user])[0])


def test_save_and_load_give_identical_scores(tmp_path, synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=30.0).fit(parts.train, item_features=synthetic.item_features)
    model.save(tmp_path / "ease", metrics={"ndcg@10": 0.5})
    again = load_model(tmp_path / "ease")
    assert isinstance(again, EASE) and again.config == model.config
    np.testing.assert_array_equal(again.score(np.arange(20)), model.score(np.arange(20)))
    assert again.items_ == model.items_ and again.item_features_.texts() == synthetic.item_features.texts()
    assert not list(tmp_path.glob("*.pkl")) and (tmp_path / "ease" / "state.safetensors").exists()


def test_unknown_user_is_scored_from_history(synthetic):
    model = EASE(l2=30.0).fit(synthetic.interactions)
    history = model.history_.histories([3])
    np.testing.assert_allclose(model.score([UNKNOWN_USER], history), model.score([3]), rtol=1e-6)
    with pytest.raises(ValueError, match="explicit history"):
        model.score([UNKNOWN_USER])


def test_similar_items_come_from_the_same_cluster(synthetic):
    model = EASE(l2=30.0).fit(synthetic.interactions)
    genre = synthetic.item_features.categorical["genre"].matrix.toarray().argmax(1)
    items, _ = model.similar_items(0, k=5)
    assert 0 not in items
    assert np.mean(genre[items] == genre[0]) >= 0.8


def test_errors_name_the_fix():
    with pytest.raises(NotFittedError, match=r"EASE is not fitted; call fit\(\)"):
        EASE().recommend([0])
    with pytest.raises(ConfigError, match="did you mean 'l2'"):
        EASE(l3=1.0)
    with pytest.raises(ConfigError, match="l2 must be a number"):
        EASE(l2="big")
    with pytest.raises(ConfigError, match="positive"):
        EASE(l2=-1.0)


def test_recommend_pads_when_catalog_runs_out():
    from recloop.data import Interactions

    train = Interactions.from_ids(["a", "a", "b"], ["x", "y", "x"])
    items, scores = MostPopular().fit(train).recommend([0], k=3)
    assert items[0].tolist() == [-1, -1, -1] and np.isneginf(scores[0]).all()
    history = UserHistories.from_lists([[0]], 2)
    items, _ = MostPopular().fit(train).recommend([UNKNOWN_USER], k=3, history=history)
    assert items[0].tolist() == [1, -1, -1]


def test_bias_predictor_by_hand_and_rmse(ml100k):
    from recloop.data import Interactions, ratio_split
    from recloop.evaluate import Evaluator
    from recloop.models import Bias

    log = Interactions.from_ids(["a", "a", "b"], ["x", "y", "x"], rating=np.array([5.0, 3.0, 4.0]))
    model = Bias(user_damping=0.0, item_damping=0.0, iterations=1).fit(log)
    # mu = 4; b_x = mean(1, 0) = 0.5, b_y = -1; b_a = mean(5-4-0.5, 3-4+1) = 0.25, b_b = 4-4-0.5 = -0.5
    np.testing.assert_allclose(model.score([0, 1]), [[4.75, 3.25], [4.0, 2.5]], rtol=1e-6)
    parts = ratio_split(ml100k.interactions, 0.2, seed=1)
    errors = Evaluator().evaluate_ratings(Bias().fit(parts.train), parts.test)
    assert 0.85 < errors["rmse"] < 1.0 and errors["mae"] < errors["rmse"]  # ~0.94 is typical on ml-100k


def test_fit_grid_gives_the_models_fit_gives(synthetic):
    train = synthetic.interactions
    candidates = [{"l2": 10.0}, {"l2": 50.0}, {"l2": 50.0, "weighted": True}, {"l2": 400.0}]
    grid = list(EASE.fit_grid(candidates, train))
    assert [m.config.l2 for m in grid] == [10.0, 50.0, 50.0, 400.0]
    for params, model in zip(candidates, grid):
        alone = EASE(**params).fit(train)
        np.testing.assert_array_equal(model.weights_, alone.weights_)  # the same solve, the Gram built once
        np.testing.assert_array_equal(model.score([0, 3]), alone.score([0, 3]))
        assert model.history_ is train and model.is_fitted
    assert not np.array_equal(grid[0].weights_, grid[1].weights_)


def test_fit_grid_weights_match_a_float64_direct_solve(synthetic):
    train = synthetic.interactions
    x = train.to_csr().toarray().astype(np.float64)
    for model in EASE.fit_grid([{"l2": 5.0}, {"l2": 300.0}], train):
        p = np.linalg.solve(x.T @ x + model.config.l2 * np.eye(x.shape[1]), np.eye(x.shape[1]))
        expected = -p / np.diag(p)
        np.fill_diagonal(expected, 0.0)
        np.testing.assert_allclose(model.weights_, expected, atol=2e-5, rtol=1e-3)


def test_fit_refuses_past_its_memory_budget_and_names_the_alternatives(synthetic):
    train = synthetic.interactions
    need_gb = 2 * train.n_items**2 * 4 / 1e9  # the Gram matrix and its Cholesky factor
    with pytest.raises(ConfigError) as refused:
        EASE(l2=30.0, memory_budget_gb=need_gb / 2).fit(train)
    message = str(refused.value)
    assert f"on {train.n_items:,} items needs" in message and "memory budget is" in message
    assert "'itemknn'" in message and "'als'" in message and "most popular items" in message
    with pytest.raises(ConfigError, match="EASE grid on"):  # a grid keeps one more matrix
        next(EASE.fit_grid([{"l2": 30.0, "memory_budget_gb": need_gb * 1.2}], train))
    fitted = EASE(l2=30.0, memory_budget_gb=need_gb * 1.2).fit(train)  # enough for a fit
    np.testing.assert_array_equal(fitted.weights_, EASE(l2=30.0).fit(train).weights_)
    with pytest.raises(ConfigError, match="memory_budget_gb must be positive"):
        EASE(memory_budget_gb=0)


def test_default_budget_is_half_the_available_memory(synthetic, monkeypatch):
    train = synthetic.interactions
    monkeypatch.setattr("recloop.models.ease.available_memory_bytes", lambda: 3 * train.n_items**2 * 4)
    with pytest.raises(ConfigError, match="half of the"):  # needs 2 matrices, budget 1.5
        EASE(l2=30.0).fit(train)
    monkeypatch.setattr("recloop.models.ease.available_memory_bytes", lambda: 5 * train.n_items**2 * 4)
    EASE(l2=30.0).fit(train)
    assert available_memory_bytes() is None or available_memory_bytes() > 0


def test_gram_matrix_in_column_blocks_equals_the_whole_product(synthetic, monkeypatch):
    x = synthetic.interactions.to_csr(weighted=True)
    monkeypatch.setattr("recloop.models.ease.GRAM_BLOCK_FLOATS", 3 * x.shape[1])  # blocks of 3 columns
    gram = gram_matrix(synthetic.interactions, weighted=True).numpy()
    np.testing.assert_allclose(gram, (x.T @ x).toarray(), rtol=1e-6)


def test_max_items_fits_the_most_popular_and_ranks_the_rest_by_popularity(synthetic, tmp_path):
    train = synthetic.interactions
    x = train.to_csr()
    users_per_item = np.diff(x.tocsc().indptr)
    model = EASE(l2=30.0, max_items=10).fit(train)
    kept = np.sort(np.lexsort((np.arange(train.n_items), -users_per_item))[:10])
    np.testing.assert_array_equal(model.kept_items_, kept)
    assert model.weights_.shape == (10, 10)
    # the kept items' scores are those of EASE on those columns alone
    expected = ease_weights(torch.from_numpy((x[:, kept].T @ x[:, kept]).toarray().astype(np.float32)), 30.0)
    users = np.arange(20)
    scores = model.score(users)
    np.testing.assert_allclose(scores[:, kept], np.asarray(x[users][:, kept] @ expected), rtol=1e-5, atol=1e-6)
    # every other item ranks below every kept item, in popularity order
    rest = np.setdiff1d(np.arange(train.n_items), kept)
    assert (scores[:, rest].max(axis=1) < scores[:, kept].min(axis=1)).all()
    by_popularity = rest[np.argsort(-users_per_item[rest], kind="stable")]
    assert (np.diff(scores[0, by_popularity]) <= 0).all()
    # a budget too small for every item is enough for the kept ones, and the refusal says so
    budget_gb = 2 * 10**2 * 4 / 1e9 * 1.5
    with pytest.raises(ConfigError, match=r"max_items=\d+ fits"):
        EASE(l2=30.0, memory_budget_gb=budget_gb).fit(train)
    EASE(l2=30.0, max_items=10, memory_budget_gb=budget_gb).fit(train)
    # a grid gives what fit gives, and the artifact keeps the fallback
    (grid,) = EASE.fit_grid([{"l2": 30.0, "max_items": 10}], train)
    np.testing.assert_array_equal(grid.score(users), scores)
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").score(users), scores)
    assert EASE(l2=30.0, max_items=train.n_items).fit(train).kept_items_ is None  # nothing to restrict
    with pytest.raises(ConfigError, match="max_items must be a positive integer"):
        EASE(max_items=0)


def test_edlae_dropout_is_a_popularity_scaled_penalty_in_the_closed_form(synthetic):
    # Steck (NeurIPS 2020), full rank: Lambda = l2 I + p / (1 - p) diagMat(diag(X^T X))
    train = synthetic.interactions
    model = EASE(l2=25.0, dropout=0.25).fit(train)
    x = train.to_csr().toarray().astype(np.float64)
    gram = x.T @ x
    p = np.linalg.inv(gram + np.diag(25.0 + 0.25 / 0.75 * np.diag(gram)))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_, expected, atol=2e-5, rtol=1e-3)
    assert not np.allclose(model.weights_, EASE(l2=25.0).fit(train).weights_, atol=1e-3)
    # dropout 0 is EASE bit for bit; a grid mixing both shares its Gram matrix untouched
    np.testing.assert_array_equal(EASE(l2=25.0, dropout=0.0).fit(train).weights_, EASE(l2=25.0).fit(train).weights_)
    grid = list(EASE.fit_grid([{"l2": 25.0, "dropout": 0.25}, {"l2": 25.0}], train))
    np.testing.assert_array_equal(grid[0].weights_, model.weights_)
    np.testing.assert_array_equal(grid[1].weights_, EASE(l2=25.0).fit(train).weights_)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="dropout"):
            EASE(dropout=bad)
