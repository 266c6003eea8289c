"""Exposure-aware re-ranking: Steck calibration (hand-checked), the exposure quota,
popularity tiers, the ranker built from a config, and the offline evaluator path."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.errors import ConfigError, UnknownIdError
from recloop.evaluate.evaluator import Evaluator
from recloop.evaluate.metrics import long_tail_share, miscalibration
from recloop.models import EASE
from recloop.rank.fairness import (
    Calibration,
    ExposureQuota,
    FairnessConfig,
    category_distribution,
    fair_ranker,
    popularity_tiers,
)
from recloop.rank.rerank import ItemCategories
from recloop.utils import kl_divergence

# Six items: 0-2 genre A, 3-4 genre B, 5 both.
GENRES = ItemCategories("genre", ("A", "B"), np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=bool))
SCORES = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], dtype=np.float32)


def test_popularity_tiers_match_the_long_tail_metric():
    counts = np.array([5, 50, 1, 40, 3, 2, 9, 0, 7, 30])
    tiers = popularity_tiers(counts, head_fraction=0.2, n_items=12)
    assert tiers.values == ("head", "tail")
    assert sorted(np.flatnonzero(tiers.matrix[:, 0])) == [1, 3]  # the ceil(0.2 * 10) = 2 most popular
    assert tiers.matrix[10:, 1].all()  # items added after training are tail
    lists = np.array([[1, 3, 0], [2, 4, 5]])
    share = tiers.matrix[lists, 1].mean(axis=1)
    assert np.allclose(share, long_tail_share(lists, counts, 0.2))


def test_kl_divergence_hand_checked():
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    # q~ = 0.99 q + 0.01 p = [0.995, 0.005]
    expected = 0.5 * np.log(0.5 / 0.995) + 0.5 * np.log(0.5 / 0.005)
    assert kl_divergence(p, q) == pytest.approx(expected)
    assert kl_divergence(p, p) == pytest.approx(0.0)
    assert kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(1 / 0.505))


def test_calibration_zero_lambda_keeps_the_model_order():
    items, scores = Calibration(GENRES, 0.0, k=3)(np.arange(6), SCORES, history=np.array([3, 4]))
    assert items.tolist() == [0, 1, 2, 3, 4, 5]
    assert scores.tolist() == SCORES.tolist()


def test_calibration_matches_the_history_mix():
    # History half A, half B; the model ranks all A items first. Full calibration picks
    # a list whose mix is (close to) half and half; the model's scores travel with items.
    # Greedy: item 5 (A and B: mix 50/50) first, then A and B tie on the KL and the
    # better-scored A item 0 wins, then B item 3 brings the mix back to 50/50.
    calibration = Calibration(GENRES, 0.99, k=3)
    items, scores = calibration(np.arange(6), SCORES, history=np.array([0, 3]))
    assert items[:3].tolist() == [5, 0, 3]
    mix = category_distribution(GENRES)[items[:3]].mean(axis=0)
    assert mix == pytest.approx([0.5, 0.5])
    assert items[3:].tolist() == [1, 2, 4]  # the rest follow in their incoming order
    assert np.allclose(scores, SCORES[items])


def test_calibration_greedy_hand_checked_step():
    # lambda = 0.5, history all B. Step 1: candidate 0 (rel 1, A) vs 3 (rel 0.4, B):
    # 0.5*1 - 0.5*KL([0,1] || .99*[1,0] + .01*[0,1]) = 0.5 - 0.5*log(1/0.01) < 0.5*0.4 - 0.
    items, _ = Calibration(GENRES, 0.5, k=1)(np.arange(6), SCORES, history=np.array([3]))
    assert items[0] == 3


def test_calibration_on_popularity_lifts_the_tail_share_for_tail_users():
    counts = np.array([100, 90, 80, 1, 1, 1, 1, 1, 1, 1])
    tiers = popularity_tiers(counts, head_fraction=0.3)  # items 0-2 head
    scores = np.linspace(1, 0.1, 10).astype(np.float32)
    tail_user, _ = Calibration(tiers, 0.9, k=4)(np.arange(10), scores, history=np.array([5, 6, 7, 8]))
    head_user, _ = Calibration(tiers, 0.9, k=4)(np.arange(10), scores, history=np.array([0, 1, 2]))
    assert tiers.matrix[tail_user[:4], 1].sum() == 4
    assert tiers.matrix[head_user[:4], 1].sum() <= 1


def test_quota_places_the_group_at_every_prefix():
    groups = ItemCategories("tier", ("head", "tail"), np.array([[1, 0]] * 6 + [[0, 1]] * 4, dtype=bool))
    scores = np.linspace(1, 0.1, 10).astype(np.float32)
    items, out_scores = ExposureQuota(groups, {"tail": 0.5}, k=4)(np.arange(10), scores)
    # prefix p needs floor(p / 2) tail items: [head 0, tail 6, head 1, tail 7]
    assert items[:4].tolist() == [0, 6, 1, 7]
    assert np.allclose(out_scores, scores[items])
    assert sorted(items.tolist()) == list(range(10))


def test_quota_with_too_few_members_fills_the_list_anyway():
    groups = ItemCategories("tier", ("head", "tail"), np.array([[1, 0]] * 5 + [[0, 1]], dtype=bool))
    items, _ = ExposureQuota(groups, {"tail": 0.5}, k=4)(np.arange(6), SCORES)
    assert items[:4].tolist() == [0, 5, 1, 2]


def test_quota_rejects_impossible_or_unknown_groups():
    with pytest.raises(ConfigError, match="add up"):
        ExposureQuota(GENRES, {"A": 0.6, "B": 0.6}, k=3)
    with pytest.raises(UnknownIdError, match="did you mean 'tail'"):
        fair_ranker(FairnessConfig(min_share={"tial": 0.2}), 10, np.arange(20), {})


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="calibration must be in"):
        FairnessConfig(calibration=1.5)
    with pytest.raises(ConfigError, match="genre"):
        fair_ranker(FairnessConfig(calibration=0.5, calibration_feature="genre"), 10, np.arange(5), {})


def test_ranker_per_call_overrides():
    ranker = fair_ranker(FairnessConfig(), 2, np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), {})  # items 0-1 head
    scores = np.linspace(1, 0.1, 10).astype(np.float32)
    items, _ = ranker(np.arange(10), scores, np.array([0]))
    assert items[:2].tolist() == [0, 1]  # off by default
    items, _ = ranker(np.arange(10), scores, np.array([0]), min_share={"tail": 0.5})
    assert items[:2].tolist() == [0, 2]


def test_miscalibration_metric_hand_checked():
    import scipy.sparse as sp

    history = sp.csr_matrix(np.array([[1, 0, 0, 1, 0, 0], [1, 1, 0, 0, 0, 0]]))
    lists = np.array([[0, 3], [0, 5]])
    values = miscalibration(lists, history, GENRES.matrix)
    assert values[0] == pytest.approx(0.0)  # history 50/50, list 50/50
    # user 2: p = [1, 0]; list q = [0.75, 0.25] -> KL = log(1 / (0.99*0.75 + 0.01))
    assert values[1] == pytest.approx(np.log(1 / (0.99 * 0.75 + 0.01)))


def test_evaluator_reranks_offline_through_the_same_ranker(synthetic):
    from recloop.data.splits import leave_one_out

    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=50.0).fit(parts.train)
    evaluator = Evaluator(k=(10,), beyond=("long_tail", "gini"))
    plain = evaluator.evaluate(model, parts.test, parts.history("test"), train=parts.train)
    # The synthetic catalog's popularity is flat (EASE lists are ~3/4 tail), so the quota
    # asks for the head here: at least half of every list.
    ranker = fair_ranker(FairnessConfig(min_share={"head": 0.5}), 10, parts.train.item_counts(), {})
    fair = evaluator.evaluate(model, parts.test, parts.history("test"), train=parts.train, rerank=ranker.rerank_users,
                              candidates=50)
    assert 1 - plain["long_tail@10"] < 0.5
    assert (long_tail_share(fair.recommendations, parts.train.item_counts()) <= 0.5).all()
    # The two-step path (candidates once, then lists) gives the same result.
    found = evaluator.candidates(model, parts.test, parts.history("test"), 50)
    again = evaluator.evaluate_candidates(found, parts.test, parts.history("test"), parts.train,
                                          rerank=ranker.rerank_users)
    assert np.array_equal(again.recommendations, fair.recommendations)
    assert np.array_equal(again.per_user["ndcg@10"], fair.per_user["ndcg@10"])
    # Without re-ranking the candidates' head is the plain top-k.
    unranked = evaluator.evaluate_candidates(found, parts.test, parts.history("test"), parts.train)
    assert np.array_equal(unranked.recommendations, plain.recommendations)


def test_batch_equals_one_user_at_a_time():
    rng = np.random.default_rng(3)
    n_items, users, n = 60, 25, 15
    genres = ItemCategories("genre", ("A", "B", "C"), rng.random((n_items, 3)) < 0.4)
    ranker = fair_ranker(FairnessConfig(calibration=0.7, calibration_feature="genre", min_share={"tail": 0.3}),
                         6, rng.integers(0, 50, n_items), {"genre": genres})
    items = np.stack([rng.choice(n_items, n, replace=False) for _ in range(users)])
    scores = -np.sort(-rng.random((users, n)), axis=1).astype(np.float32)
    items[3, 10:] = -1  # padding from retrieval: fewer candidates than n
    items[4, 4:] = -1  # fewer candidates than k
    histories = [rng.choice(n_items, rng.integers(0, 8), replace=False) for _ in range(users)]
    indptr = np.concatenate([[0], np.cumsum([len(h) for h in histories])])
    batch_items, batch_scores = ranker.rerank(items, scores, indptr, np.concatenate(histories))
    for u in range(users):
        one_items, one_scores = ranker(items[u], scores[u], histories[u])
        assert batch_items[u, :len(one_items)].tolist() == one_items.tolist()
        assert (batch_items[u, len(one_items):] == -1).all()
        assert np.allclose(batch_scores[u, :len(one_items)], one_scores)
    assert set(batch_items[4, :4].tolist()) == set(items[4, :4].tolist())
