"""Fixtures shared by the model tests: a leave-one-out split of the synthetic data with
planted taste clusters, NDCG@10 on it, and a check that anonymous users get their cluster."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from recloop.data import Split, UserHistories, leave_one_out
from recloop.evaluate.evaluator import Evaluator
from recloop.models import UNKNOWN_USER, Recommender


@pytest.fixture(scope="session")
def loo(synthetic) -> Split:
    return leave_one_out(synthetic.interactions)


@pytest.fixture(scope="session")
def fit_log(loo):
    """What models are fitted on before scoring the test targets: train plus valid."""
    return loo.train.concat(loo.valid)


@pytest.fixture(scope="session")
def test_ndcg(loo, fit_log) -> Callable[[Recommender], float]:
    """NDCG@10 of a model fitted on ``fit_log``, full ranking of the test targets."""
    evaluator = Evaluator(k=(10,), metrics=("ndcg",), beyond=())

    def ndcg(model: Recommender) -> float:
        return evaluator.evaluate(model, loo.test, fit_log)["ndcg@10"]

    return ndcg


@pytest.fixture(scope="session")
def item_cluster(synthetic) -> np.ndarray:
    """The planted topic of every item (one genre each)."""
    return synthetic.item_features.categorical["genre"].matrix.indices.astype(np.int64)


@pytest.fixture(scope="session")
def cluster_precision(item_cluster) -> Callable[[Recommender], float]:
    """For each planted cluster, an anonymous user (-1) whose history is five items of
    that cluster; the mean share of their top 10 (history excluded) from the same cluster."""

    def precision(model: Recommender) -> float:
        clusters = np.unique(item_cluster)
        lists = [np.flatnonzero(item_cluster == c)[:5] for c in clusters]
        history = UserHistories.from_lists(lists, len(item_cluster))
        items, _ = model.recommend(np.full(len(clusters), UNKNOWN_USER), 10, history=history)
        return float((item_cluster[items] == clusters[:, None]).mean())

    return precision
