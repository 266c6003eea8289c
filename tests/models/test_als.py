import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloop.artifact import load_model
from recloop.errors import ConfigError
from recloop.models import ALS, MODELS, UNKNOWN_USER, MostPopular
from recloop.models.als import conjugate_gradient, row_penalties, solve_users

PARAMS = {"factors": 16, "regularization": 1.0, "alpha": 5.0, "iterations": 8}


def exact_user_step(weights: sp.csr_matrix, other: np.ndarray, regularization: float | np.ndarray) -> np.ndarray:
    """(O^T O + reg_u I + O^T W_u O) x_u = O^T c_u, solved user by user (``regularization``:
    one value, or one per user)."""
    out = []
    penalties = np.broadcast_to(regularization, (weights.shape[0],))
    for u in range(weights.shape[0]):
        w = weights[u].toarray().ravel()
        confidence = np.zeros_like(w)
        confidence[weights[u].indices] = 1 + weights[u].data
        a = other.T @ other + penalties[u] * np.eye(other.shape[1]) + other.T @ (w[:, None] * other)
        out.append(np.linalg.solve(a, other.T @ confidence))
    return np.array(out)


@pytest.fixture()
def tiny_system():
    rng = np.random.default_rng(0)
    weights = sp.random(40, 25, density=0.3, format="csr", random_state=1) * 7.0  # c - 1 on observed pairs
    weights = sp.csr_matrix(weights.toarray() * (np.arange(40) != 5)[:, None])  # user 5 has no history
    return weights, rng.normal(size=(25, 6)), 0.3


def test_registered():
    assert MODELS["als"] is ALS


def test_vectorised_cg_matches_exact_solve(tiny_system):
    weights, other, regularization = tiny_system
    expected = exact_user_step(weights, other, regularization)
    start = torch.from_numpy(np.random.default_rng(2).normal(size=(40, 6)))
    solved = conjugate_gradient(weights, torch.from_numpy(other), start, regularization, steps=20).numpy()
    np.testing.assert_allclose(solved, expected, rtol=1e-9, atol=1e-11)
    # a few steps get close only: warm starts across sweeps do the rest
    rough = conjugate_gradient(weights, torch.from_numpy(other), start, regularization, steps=2).numpy()
    assert 1e-9 < np.abs(rough - expected).max() < np.abs(start.numpy() - expected).max()


def test_batched_exact_solve_matches(tiny_system, monkeypatch):
    weights, other, regularization = tiny_system
    expected = exact_user_step(weights, other, regularization)
    monkeypatch.setattr("recloop.models.als.SOLVE_FLOATS", 30)  # many small padded chunks
    solved = solve_users(weights, torch.from_numpy(other), regularization).numpy()
    np.testing.assert_allclose(solved, expected, rtol=1e-9, atol=1e-11)
    assert not solved[5].any()


def test_user_factors_are_the_exact_user_step(fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    history = fit_log.histories(np.arange(30))
    weights = history.to_csr() * PARAMS["alpha"]
    expected = exact_user_step(weights, model.item_vectors().astype(np.float64), PARAMS["regularization"])
    np.testing.assert_allclose(model.user_factors(history), expected, rtol=1e-3, atol=1e-5)


def test_beats_most_popular(fit_log, test_ndcg):
    als = test_ndcg(ALS(**PARAMS).fit(fit_log))
    popular = test_ndcg(MostPopular().fit(fit_log))
    assert als > popular + 0.1, (als, popular)


def test_same_seed_same_scores(fit_log):
    users = np.arange(fit_log.n_users)
    first = ALS(**PARAMS, seed=3).fit(fit_log).score(users)
    model = ALS(**PARAMS, seed=3)
    model.fit(fit_log)
    model.fit(fit_log)  # every fit starts from scratch
    np.testing.assert_array_equal(model.score(users), first)
    assert first.dtype == np.float32
    assert not np.array_equal(ALS(**PARAMS, seed=4).fit(fit_log).score(users), first)


def test_unknown_user_is_scored_like_a_known_one_with_the_same_history(fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    history = fit_log.histories([7, 8])
    known = model.score([7, 8], history)
    unknown = model.score([UNKNOWN_USER, UNKNOWN_USER], history)
    np.testing.assert_array_equal(known, unknown)


def test_unknown_user_gets_their_cluster(synthetic, cluster_precision):
    model = ALS(**PARAMS).fit(synthetic.interactions)
    assert cluster_precision(model) > 0.8


def test_recommend_excludes_known_items(fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    users = np.arange(50)
    items, _ = model.recommend(users, k=10)
    history = fit_log.histories(users)
    for r in range(len(users)):
        assert not set(items[r]) & set(history.row(r))


def test_save_load_round_trip(tmp_path, fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    model.save(tmp_path / "a")
    loaded = load_model(tmp_path / "a")
    assert isinstance(loaded, ALS) and loaded.config == model.config
    users = np.arange(fit_log.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())


@pytest.mark.parametrize("bad", [{"factors": 0}, {"iterations": 1.5}, {"cg_steps": 0}, {"regularization": 0.0},
                                 {"alpha": -1.0}, {"seed": "a"}, {"factor": 8}])
def test_bad_hyperparameters(bad):
    with pytest.raises(ConfigError):
        ALS(**bad)


def test_similar_items_by_cosine(fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    items, scores = model.similar_items(3, k=5)
    vectors = model.item_vectors() / np.linalg.norm(model.item_vectors(), axis=1, keepdims=True)
    cosine = vectors @ vectors[3]
    cosine[3] = -np.inf
    np.testing.assert_array_equal(items, np.argsort(-cosine)[:5])
    np.testing.assert_allclose(scores, cosine[items], rtol=1e-5)


def test_user_vectors_give_the_scores_so_serving_can_search_an_index(fit_log):
    model = ALS(**PARAMS).fit(fit_log)
    users = np.arange(40)
    np.testing.assert_allclose(model.user_vectors(users) @ model.item_vectors().T, model.score(users),
                               rtol=1e-5, atol=1e-6)
    history = fit_log.histories([3])
    np.testing.assert_array_equal(model.user_vectors([UNKNOWN_USER], history), model.user_vectors([3]))
    # The Gram matrix kept between requests follows the item factors (a refit, a load).
    model.item_factors_ = model.item_factors_ * 2.0
    weights = fit_log.histories(users).to_csr() * PARAMS["alpha"]
    fresh = solve_users(weights, torch.from_numpy(model.item_factors_), PARAMS["regularization"]).numpy()
    np.testing.assert_allclose(model.user_vectors(users), fresh, rtol=1e-5, atol=1e-6)


def test_log_scaled_confidence_is_hu_et_al_eq_6():
    # c - 1 = alpha * log(1 + r / epsilon) on the observed pairs, with r the play count
    model = ALS(alpha=2.0, weighted=True, log_scale=10.0)
    plays = sp.csr_matrix(np.array([[0.0, 10.0, 1000.0]], dtype=np.float32))
    np.testing.assert_allclose(model._weights(plays).toarray(), [[0.0, 2 * np.log(2.0), 2 * np.log(101.0)]],
                               rtol=1e-6)
    # without `weighted` the play count is ignored: every observed pair has r = 1
    binary = ALS(alpha=2.0, log_scale=10.0)
    np.testing.assert_allclose(binary._weights(sp.csr_matrix(np.ones((1, 2), np.float32))).toarray(), [[2.0, 2.0]])
    with pytest.raises(ConfigError, match="log_scale"):
        ALS(log_scale=-1.0)
def test_cg_result_does_not_depend_on_the_thread_count(tiny_system):
    # Each row is solved start to end by one thread, so 1 and 2 threads agree bit for bit.
    weights, other, regularization = tiny_system
    start = torch.from_numpy(np.random.default_rng(2).normal(size=(40, 6)).astype(np.float32))
    other = torch.from_numpy(other.astype(np.float32))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = conjugate_gradient(weights, other, start, regularization, steps=3)
        torch.set_num_threads(2)
        two = conjugate_gradient(weights, other, start, regularization, steps=3)
    finally:
        torch.set_num_threads(threads)
    assert one.dtype == torch.float32
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert not torch.equal(one, start)  # the start is left as it was and the rows moved


def test_importing_the_models_does_not_load_the_compiler():
    # numba (and LLVM, ~120 MB) is loaded to fit ALS, not by a process that only serves.
    import subprocess
    import sys

    code = "import sys, recloop.models, recloop.models.als; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_row_penalties_grow_with_the_rows_confidence_as_rendle_et_al():
    # regularization * (1 + sum_i w_ui / m)^nu: (1 + 6/3)^1 = 3, (1 + 0/3)^1 = 1, (1 + 1.5/3)^1 = 1.5
    weights = sp.csr_matrix(np.array([[2.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]))
    np.testing.assert_allclose(row_penalties(weights, 10.0, 1.0), [30.0, 10.0, 15.0])
    np.testing.assert_allclose(row_penalties(weights, 10.0, 0.5), 10.0 * np.sqrt([3.0, 1.0, 1.5]))
    assert row_penalties(weights, 10.0, 0.0) is None  # nu = 0: one penalty for every row, the plain model


def test_cg_and_batched_solve_with_per_row_penalties_match_the_exact_step(tiny_system, monkeypatch):
    weights, other, regularization = tiny_system
    penalties = regularization * (1.0 + np.arange(40) / 10.0)
    expected = exact_user_step(weights, other, penalties)
    start = torch.from_numpy(np.random.default_rng(2).normal(size=(40, 6)))
    solved = conjugate_gradient(weights, torch.from_numpy(other), start, regularization, 20, penalties).numpy()
    np.testing.assert_allclose(solved, expected, rtol=1e-9, atol=1e-11)
    monkeypatch.setattr("recloop.models.als.SOLVE_FLOATS", 30)
    batched = solve_users(weights, torch.from_numpy(other), regularization, penalties=penalties).numpy()
    np.testing.assert_allclose(batched, expected, rtol=1e-9, atol=1e-11)
    # every row at the common penalty is the plain step, bit for bit
    plain = conjugate_gradient(weights, torch.from_numpy(other), start, regularization, 3)
    same = conjugate_gradient(weights, torch.from_numpy(other), start, regularization, 3, np.full(40, regularization))
    torch.testing.assert_close(same, plain, rtol=0, atol=0)


def test_frequency_scaled_regularization_in_fit_and_scoring(fit_log, tmp_path, test_ndcg):
    params = {**PARAMS, "reg_exponent": 1.0}
    model = ALS(**params).fit(fit_log)
    # scoring solves each user with its own penalty, from the history it is given
    history = fit_log.histories(np.arange(30))
    weights = history.to_csr() * PARAMS["alpha"]
    penalties = PARAMS["regularization"] * (1 + np.asarray(weights.sum(axis=1)).ravel() / fit_log.n_items)
    expected = exact_user_step(weights, model.item_vectors().astype(np.float64), penalties)
    np.testing.assert_allclose(model.user_factors(history), expected, rtol=1e-3, atol=1e-5)
    # a different model from the plain one, still a recommender, and saved with its knob
    users = np.arange(fit_log.n_users)
    assert not np.allclose(model.score(users), ALS(**PARAMS).fit(fit_log).score(users))
    assert test_ndcg(model) > test_ndcg(MostPopular().fit(fit_log)) + 0.1
    model.save(tmp_path / "a")
    loaded = load_model(tmp_path / "a")
    assert loaded.config.reg_exponent == 1.0
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    # the default is the plain model: nu = 0 explicitly gives the same scores bit for bit
    np.testing.assert_array_equal(ALS(**PARAMS, reg_exponent=0.0).fit(fit_log).score(users),
                                  ALS(**PARAMS).fit(fit_log).score(users))
    with pytest.raises(ConfigError, match="reg_exponent"):
        ALS(reg_exponent=-0.5)
