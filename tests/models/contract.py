"""The contract every recloop model passes, as one reusable test class.

Subclass it in a ``test_*.py`` file and say how to build a small model::

    from tests.models.contract import RecommenderContract

    class TestSASRecContract(RecommenderContract):
        min_ndcg = 0.3

        def make_model(self, seed: int) -> Recommender:
            return SASRec(hidden=16, train=dict(epochs=8, seed=seed, num_threads=1, progress=False))

The class fits the model once on planted synthetic data (taste clusters, power-law
popularity and a strong "successor" habit, see :mod:`recloop.data.synthetic`) and checks:
it beats most-popular on the held-out items; batch scores equal one-user scores;
known, listed and non-candidate items are never recommended; a save/load round trip
gives identical scores; the same seed gives the same model; users the model never saw
are scored from their history, and an empty history gives finite scores (the
documented fallback). Keep models tiny: the whole class should run in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from recloop.artifact import load_model
from recloop.data import SyntheticConfig, UserHistories, generate, leave_one_out
from recloop.evaluate import EvaluationConfig, Evaluator
from recloop.experiment import fit
from recloop.models import UNKNOWN_USER, MostPopular, Recommender

CONTRACT_DATA = SyntheticConfig(n_users=400, n_items=100, n_clusters=5, mean_interactions=14,
                                sequential_strength=0.7, seed=3)


class RecommenderContract:
    """Shared model tests; subclasses implement :meth:`make_model`."""

    #: The model's test NDCG@10 must reach at least this, and beat popularity by ``margin``.
    min_ndcg: float = 0.1
    margin: float = 1.5
    #: Whether fit() gets the validation log (early stopping models).
    use_validation: bool = True
    #: False for the reference rankers (popularity, random, biases), which by design
    #: cannot learn the planted pattern; they pass every other part of the contract.
    learns_pattern: bool = True

    def make_model(self, seed: int) -> Recommender:
        raise NotImplementedError

    # --- fixtures (one fit per test class) -------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls):
        return generate(CONTRACT_DATA, name="contract")

    @pytest.fixture(scope="class")
    @classmethod
    def split(cls, dataset):
        return leave_one_out(dataset.interactions)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, dataset, split):
        return cls()._fit(cls().make_model(seed=0), dataset, split)

    def _fit(self, model, dataset, split):
        # The experiment's own fit: early stopping on the evaluator's validation callback.
        fit(model, dataset, split.train, split.valid if self.use_validation else None)
        return model

    def _test_ndcg(self, model, split) -> float:
        evaluator = Evaluator(EvaluationConfig(k=(10,), metrics=("ndcg",), beyond=()))
        return evaluator.evaluate(model, split.test, split.history("test"))["ndcg@10"]

    # --- the contract ---------------------------------------------------------------------------------
    def test_learns_the_planted_pattern(self, fitted, split):
        if not self.learns_pattern:
            pytest.skip(f"{fitted.name} is a reference ranker; it is not meant to learn the pattern")
        popularity = self._test_ndcg(MostPopular().fit(split.history("test")), split)
        ndcg = self._test_ndcg(fitted, split)
        assert ndcg >= self.min_ndcg, f"{fitted.name}: NDCG@10 {ndcg:.3f} < {self.min_ndcg}"
        assert ndcg >= self.margin * popularity, f"{fitted.name}: NDCG@10 {ndcg:.3f} vs popularity {popularity:.3f}"

    def test_scores_have_the_documented_shape(self, fitted):
        scores = fitted.score(np.arange(5))
        assert scores.shape == (5, fitted.n_items) and scores.dtype == np.float32
        assert np.isfinite(scores).all()

    def test_batch_scores_equal_single_user_scores(self, fitted, split):
        users = np.array([3, 0, 17, 42, 99, 7])
        history = split.history("test").histories(users)
        batch = fitted.score(users, history)
        for row, user in enumerate(users):
            single = fitted.score([user], split.history("test").histories([user]))[0]
            np.testing.assert_allclose(batch[row], single, rtol=1e-5, atol=1e-5)

    def test_exclusions_are_honoured(self, fitted, split):
        users = np.array([0, 5, 9, 11])
        history = split.history("test").histories(users)
        items, scores = fitted.recommend(users, k=15, history=history)
        for row in range(len(users)):
            assert not set(history.row(row)) & set(items[row])
            assert np.all(np.diff(scores[row]) <= 0)
        blocked = items[:, :4]
        again, _ = fitted.recommend(users, k=15, history=history, exclude=blocked)
        for row in range(len(users)):
            assert not set(blocked[row]) & set(again[row])
        candidates = np.arange(0, fitted.n_items, 3)
        only, _ = fitted.recommend(users, k=5, history=history, candidates=candidates)
        assert set(only[only >= 0]) <= set(candidates)

    def test_save_and_load_give_identical_scores(self, fitted, split, tmp_path):
        fitted.save(tmp_path / "artifact", metrics={"ndcg@10": 0.0})
        again = load_model(tmp_path / "artifact")
        assert type(again) is type(fitted) and again.config == fitted.config
        users = np.arange(12)
        history = split.history("test").histories(users)
        np.testing.assert_array_equal(again.score(users, history), fitted.score(users, history))
        assert not list((tmp_path / "artifact").glob("*.pkl"))

    def test_same_seed_gives_the_same_model(self, fitted, dataset, split):
        again = self._fit(self.make_model(seed=0), dataset, split)
        users = np.arange(20)
        np.testing.assert_allclose(again.score(users), fitted.score(users), rtol=1e-5, atol=1e-6)

    def test_unknown_users_are_scored_from_their_history(self, fitted, split):
        users = np.array([4, 8])
        history = split.history("test").histories(users)
        known = fitted.score(users, history)
        unknown = fitted.score(np.full(len(users), UNKNOWN_USER), history)
        if getattr(fitted, "scores_depend_on_user_id", False):
            assert np.isfinite(unknown).all()
        else:
            np.testing.assert_allclose(unknown, known, rtol=1e-5, atol=1e-5)

    def test_empty_history_falls_back_to_finite_scores(self, fitted):
        empty = UserHistories.from_lists([[]], fitted.n_items)
        scores = fitted.score([UNKNOWN_USER], empty)
        assert scores.shape == (1, fitted.n_items) and np.isfinite(scores).all()
        items, _ = fitted.recommend([UNKNOWN_USER], k=5, history=empty)
        assert (items >= 0).all()
