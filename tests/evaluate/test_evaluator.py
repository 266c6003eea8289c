from dataclasses import dataclass

import numpy as np
import pytest

from recloop.data import Interactions, UserHistories, leave_one_out
from recloop.errors import ConfigError
from recloop.evaluate import EvaluationConfig, Evaluator, mean_confidence_interval, paired_test
from recloop.models import EASE, MostPopular
from recloop.models.base import Recommender


@dataclass(frozen=True)
class FixedConfig:
    pass


class FixedScores(Recommender):
    """Scores from a given matrix: lets tests control the ranking exactly."""

    name = "fixed"
    config_class = FixedConfig
    predicts_ratings = True

    def __init__(self, scores):
        super().__init__()
        self.table = np.asarray(scores, dtype=np.float32)

    def _fit(self, train, valid):
        pass

    def _score(self, user_idx, history: UserHistories):
        return self.table[user_idx]


def tiny():
    # 2 users, 5 items. user 0 trained on item 0; user 1 on item 4.
    train = Interactions.from_ids(["u0", "u1"], ["i0", "i4"], users=None, items=None)
    users, items = train.users, train.items.extend(["i1", "i2", "i3"])
    train = Interactions.from_ids(["u0", "u1"], ["i0", "i4"], users=users, items=items)
    test = Interactions.from_ids(["u0", "u0", "u1"], ["i2", "i3", "i1"], users=users, items=items)
    return train, test


def test_full_ranking_masks_known_items_and_matches_hand_computation():
    train, test = tiny()
    # index order: i0, i4, i1, i2, i3
    scores = [[9.0, 1.0, 5.0, 4.0, 0.0],   # u0: i0 masked -> i1, i2, i4, i3: hit at rank 2 (i2) and 4 (i3)
              [0.0, 9.0, 1.0, 2.0, 3.0]]   # u1: i4 masked -> i3, i2, i1, i0: hit at rank 3 (i1)
    model = FixedScores(scores).fit(train)
    result = Evaluator(k=(1, 3), beyond=()).evaluate(model, test, train)
    np.testing.assert_allclose(result.per_user["hr@3"], [1.0, 1.0])
    np.testing.assert_allclose(result.per_user["recall@3"], [0.5, 1.0])
    np.testing.assert_allclose(result.per_user["ndcg@3"],
                               [(1 / np.log2(3)) / (1 + 1 / np.log2(3)), 1 / np.log2(4)])
    np.testing.assert_allclose(result.per_user["hr@1"], [0.0, 0.0])
    assert result.recommendations[0, :3].tolist() == [2, 3, 1]


def test_batch_size_does_not_change_results(synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=50).fit(parts.train)
    a = Evaluator(batch_size=7).evaluate(model, parts.test, parts.history("test"))
    b = Evaluator(batch_size=1000).evaluate(model, parts.test, parts.history("test"))
    for name in a.per_user:
        np.testing.assert_allclose(a.per_user[name], b.per_user[name])
    assert a.summary() == pytest.approx(b.summary())


def test_personalised_model_beats_popularity_with_significance(synthetic):
    parts = leave_one_out(synthetic.interactions)
    evaluator = Evaluator(k=(10,))
    ease = evaluator.evaluate(EASE(l2=50).fit(parts.train), parts.test, parts.history("test"))
    pop = evaluator.evaluate(MostPopular().fit(parts.train), parts.test, parts.history("test"))
    assert ease["ndcg@10"] > pop["ndcg@10"]
    test = ease.compare(pop, "ndcg@10")
    assert test.difference.mean > 0 and test.t_pvalue < 0.05
    assert pop["popularity@10"] > ease["popularity@10"]  # popularity bias, measured
    assert ease["coverage@10"] > pop["coverage@10"]
    interval = ease.interval("ndcg@10")
    assert interval.low < ease["ndcg@10"] < interval.high


def test_sampled_protocol_is_explicit_and_inflates_metrics(synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=50).fit(parts.train)
    full = Evaluator(k=(10,), beyond=()).evaluate(model, parts.test, parts.history("test"))
    sampled = Evaluator(k=(10,), beyond=(), protocol="sampled", n_negatives=20).evaluate(
        model, parts.test, parts.history("test"))
    assert sampled["hr@10"] > full["hr@10"]
    # Only the target and 20 negatives can be ranked
    assert (sampled.recommendations[:, :10] >= 0).all()


def test_config_errors_name_the_closest_metric():
    with pytest.raises(ConfigError, match="did you mean 'ndcg'"):
        EvaluationConfig(metrics=("ndgc",))
    with pytest.raises(ConfigError, match="protocol"):
        EvaluationConfig(protocol="uni100")


def test_confidence_interval_and_paired_test_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    interval = mean_confidence_interval(values)
    # t_{0.975, 3} = 3.182446
    half = 3.182446 * values.std(ddof=1) / 2
    assert interval.mean == pytest.approx(2.5)
    assert interval.high - interval.mean == pytest.approx(half, rel=1e-5)
    test = paired_test(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert test.difference.mean == pytest.approx(1.25)
    assert test.t_pvalue < 0.05


def test_rating_errors_need_a_rating_predictor(synthetic):
    parts = leave_one_out(synthetic.interactions)
    with pytest.raises(ConfigError, match="does not predict ratings"):
        Evaluator().evaluate_ratings(MostPopular().fit(parts.train), parts.test)


def test_rating_errors_by_hand():
    train, test = tiny()
    test = Interactions(test.user_idx, test.item_idx, test.users, test.items, rating=np.array([4.0, 2.0, 5.0]))
    model = FixedScores([[0, 0, 0, 3.0, 3.0], [0, 0, 4.0, 0, 0]]).fit(train)
    # predictions: u0/i2 -> 3 (true 4), u0/i3 -> 3 (true 2), u1/i1 -> 4 (true 5)
    errors = Evaluator().evaluate_ratings(model, test)
    assert errors["rmse"] == pytest.approx(1.0) and errors["mae"] == pytest.approx(1.0)
