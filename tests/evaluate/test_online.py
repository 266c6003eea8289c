"""Online-experiment statistics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from recloop.evaluate.online import ab_test, ratio_interval, sign_test, user_preferences, wilson_interval


def test_ratio_interval_is_the_delta_method_by_hand():
    # CTR = 3 / 6 = 0.5; residuals c - 0.5 n = 0, -1, 1; se^2 = 3/2 * 2 / 36
    interval, se = ratio_interval([1, 0, 2], [2, 2, 2])
    assert interval.mean == 0.5 and interval.n == 3
    assert math.isclose(se, math.sqrt(3) / 6)
    assert math.isclose(interval.high - interval.mean, 1.959964 * math.sqrt(3) / 6, rel_tol=1e-5)


def test_one_heavy_user_widens_the_interval_over_the_per_impression_one():
    """Clustering: 500 impressions of one user who always clicks, 500 users who never do.
    Counting impressions as independent gives se ~ 0.016; the per-user one is ~ 0.5."""
    clicks = np.r_[500, np.zeros(500)]
    impressions = np.r_[500, np.ones(500)]
    _, se = ratio_interval(clicks, impressions)
    naive = math.sqrt(0.5 * 0.5 / 1000)
    assert se > 10 * naive


def test_ab_test_finds_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = np.full(400, 5)
    low, high = rng.binomial(5, 0.2, 400), rng.binomial(5, 0.3, 400)
    test = ab_test(low, n, high, n)
    assert test.pvalue < 1e-4 and test.difference.mean > 0
    assert test.difference.low < test.difference.mean < test.difference.high
    assert test.bootstrap.low < test.difference.mean < test.bootstrap.high
    # the z statistic is the difference over the root of the summed variances
    _, se_a = ratio_interval(low, n)
    _, se_b = ratio_interval(high, n)
    assert math.isclose(test.z, test.difference.mean / math.hypot(se_a, se_b))
    same = ab_test(low, n, low, n)
    assert same.pvalue == 1.0 and same.difference.mean == 0.0


def test_sign_test_and_wilson_interval():
    test = sign_test(1, 9, ties=4)
    assert math.isclose(test.pvalue, stats.binomtest(9, 10).pvalue) and math.isclose(test.pvalue, 22 / 1024)
    assert test.share_b.mean == 0.9 and test.ties == 4
    assert sign_test(0, 0).pvalue == 1.0
    w = wilson_interval(9, 10)
    assert math.isclose(w.low, 0.5958, abs_tol=1e-4) and math.isclose(w.high, 0.9821, abs_tol=1e-4)
    assert user_preferences([3, 0, 1, 2], [1, 2, 1, 0]) == (2, 1, 1)
