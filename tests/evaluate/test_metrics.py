"""Every metric against values computed by hand."""

import math

import numpy as np
import pytest

from recloop.evaluate import metrics as M

# One user, list of 5, relevant items at ranks 1 and 3; 4 relevant items in total.
HITS = np.array([[True, False, True, False, False]])
N_REL = np.array([4])


def test_hit_rate():
    assert M.hit_rate(HITS, N_REL, 2)[0] == 1.0
    assert M.hit_rate(np.array([[False, False, True]]), N_REL, 2)[0] == 0.0


def test_recall_and_precision():
    assert M.recall(HITS, N_REL, 3)[0] == pytest.approx(2 / 4)
    assert M.precision(HITS, N_REL, 5)[0] == pytest.approx(2 / 5)
    assert M.precision(HITS, N_REL, 2)[0] == pytest.approx(1 / 2)


def test_ndcg():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, 5))  # min(4 relevant, k=5) = 4
    assert M.ndcg(HITS, N_REL, 5)[0] == pytest.approx(dcg / idcg)
    # one relevant item at rank 2: 1/log2(3)
    assert M.ndcg(np.array([[False, True]]), np.array([1]), 2)[0] == pytest.approx(1 / math.log2(3))
    # ideal list scores 1 even when the user has more relevant items than k
    assert M.ndcg(np.array([[True, True]]), np.array([10]), 2)[0] == pytest.approx(1.0)


def test_mrr():
    assert M.mrr(np.array([[False, False, True]]), np.array([1]), 3)[0] == pytest.approx(1 / 3)
    assert M.mrr(np.array([[False, False, True]]), np.array([1]), 2)[0] == 0.0


def test_average_precision():
    # P@1 * 1 + P@3 * 1 = 1 + 2/3, divided by min(4, 5) = 4
    assert M.average_precision(HITS, N_REL, 5)[0] == pytest.approx((1 + 2 / 3) / 4)
    assert M.average_precision(np.array([[True, True]]), np.array([2]), 2)[0] == pytest.approx(1.0)


def test_coverage_and_gini():
    lists = np.array([[0, 1], [0, 2]])
    assert M.catalog_coverage(lists, 4) == pytest.approx(3 / 4)
    # exposure counts sorted: 0, 1, 1, 2 over n = 4, total 4
    expected = ((2 * 1 - 5) * 0 + (2 * 2 - 5) * 1 + (2 * 3 - 5) * 1 + (2 * 4 - 5) * 2) / (4 * 4)
    assert M.exposure_gini(lists, 4) == pytest.approx(expected)
    assert M.gini(np.array([5, 5, 5])) == pytest.approx(0.0)


def test_intra_list_diversity():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # pairs (0,1): cos 1, (0,2): 0, (1,2): 0 -> mean distance 1 - 1/3
    assert M.intra_list_diversity(np.array([[0, 1, 2]]), vectors)[0] == pytest.approx(2 / 3)
    assert M.intra_list_diversity(np.array([[0, -1, -1]]), vectors)[0] == 0.0


def test_novelty_popularity_long_tail():
    counts = np.array([8, 2, 1, 1, 0])
    lists = np.array([[0, 1]])
    assert M.novelty(lists, counts, n_users=8)[0] == pytest.approx((-math.log2(1.0) - math.log2(2 / 8)) / 2)
    assert M.average_popularity(lists, counts)[0] == pytest.approx(5.0)
    # head = the top 20% of 5 items, rounded up: item 0 only
    assert M.long_tail_share(lists, counts)[0] == pytest.approx(0.5)


def test_rating_errors():
    assert M.rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(math.sqrt((1 + 4) / 2))
    assert M.mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)
