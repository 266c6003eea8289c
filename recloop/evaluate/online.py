"""Statistics of online experiments from per-user counts (arrays in, numbers out).

Users, not impressions, are the independent units: one user's impressions share their
taste and their habit of clicking, so treating each impression as independent makes
intervals too narrow and tests too eager. Every function here therefore takes one value
per user and aggregates over users.

* A/B: a click-through rate is a ratio of per-user sums, ``CTR = sum_u c_u / sum_u n_u``
  (``c_u`` clicked impressions, ``n_u`` impressions of user ``u``). Its standard error is
  the delta-method (cluster-robust) one, ``se^2 = U / (U - 1) * sum_u (c_u - CTR n_u)^2 /
  (sum_u n_u)^2`` (Deng et al., "Applying the Delta Method in Metric Analytics", KDD
  2018); the two arms are compared with the z test of the difference of two such
  proportions, ``z = (CTR_B - CTR_A) / sqrt(se_A^2 + se_B^2)``, and a per-user
  bootstrap gives a second interval of the difference that assumes no normality.
* Interleaving: each user prefers the ranker whose team won more of their impressions
  (or neither); a two-sided sign test (exact binomial, ``p = 1/2`` under "no
  preference") on the users with a preference. The share of those users preferring B
  comes with a Wilson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from recloop.evaluate.stats import Interval


def _z(level: float) -> float:
    return float(stats.norm.ppf((1 + level) / 2))


def ratio_interval(numerators: np.ndarray, denominators: np.ndarray, level: float = 0.95) -> tuple[Interval, float]:
    """``sum(numerators) / sum(denominators)`` over users with its delta-method normal
    interval (see the module docstring); also returns the standard error."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    users, total = len(num), float(den.sum())
    if users == 0 or total == 0:
        return Interval(float("nan"), float("nan"), float("nan"), users), float("nan")
    ratio = float(num.sum()) / total
    if users < 2:
        return Interval(ratio, ratio, ratio, users), float("nan")
    se = math.sqrt(users / (users - 1) * float(((num - ratio * den) ** 2).sum())) / total
    half = _z(level) * se
    return Interval(ratio, ratio - half, ratio + half, users), se


@dataclass(frozen=True)
class ABTest:
    """Arm B against arm A: ``difference`` is ``CTR_B - CTR_A`` with its delta-method
    interval, ``bootstrap`` the per-user bootstrap interval of the same difference."""

    difference: Interval
    bootstrap: Interval
    z: float
    pvalue: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.pvalue < alpha


def ab_test(clicks_a: np.ndarray, impressions_a: np.ndarray, clicks_b: np.ndarray, impressions_b: np.ndarray,
            level: float = 0.95, resamples: int = 2000, seed: int = 0) -> ABTest:
    """Two-proportion z test of per-user clicked impressions over impressions (one
    entry per user in each array) with delta-method standard errors, plus a per-user
    bootstrap interval of the difference."""
    a, se_a = ratio_interval(clicks_a, impressions_a, level)
    b, se_b = ratio_interval(clicks_b, impressions_b, level)
    diff = b.mean - a.mean
    se = math.sqrt(se_a ** 2 + se_b ** 2) if math.isfinite(se_a) and math.isfinite(se_b) else float("nan")
    if not math.isfinite(se) or se == 0:
        z, p = 0.0, 1.0
        half = float("nan")
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
        half = _z(level) * se
    return ABTest(Interval(diff, diff - half, diff + half, a.n + b.n),
                  _bootstrap_difference(clicks_a, impressions_a, clicks_b, impressions_b, level, resamples, seed),
                  float(z), p)


def _bootstrap_difference(clicks_a, impressions_a, clicks_b, impressions_b, level: float, resamples: int,
                          seed: int) -> Interval:
    """Resample users with replacement within each arm; percentile interval of the
    difference of the ratios (NaN with ``resamples = 0``)."""
    ca, na = np.asarray(clicks_a, np.float64), np.asarray(impressions_a, np.float64)
    cb, nb = np.asarray(clicks_b, np.float64), np.asarray(impressions_b, np.float64)
    if len(ca) < 2 or len(cb) < 2 or na.sum() == 0 or nb.sum() == 0 or resamples == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, len(ca) + len(cb))
    rng = np.random.default_rng(seed)
    pick_a = rng.integers(0, len(ca), (resamples, len(ca)))
    pick_b = rng.integers(0, len(cb), (resamples, len(cb)))
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = cb[pick_b].sum(1) / nb[pick_b].sum(1) - ca[pick_a].sum(1) / na[pick_a].sum(1)
    diffs = diffs[np.isfinite(diffs)]
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(cb.sum() / nb.sum() - ca.sum() / na.sum()), float(low), float(high), len(ca) + len(cb))


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> Interval:
    """The Wilson score interval of a binomial proportion."""
    if trials == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
    z = _z(level)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), trials)


@dataclass(frozen=True)
class SignTest:
    """Users preferring A, preferring B, and with no preference; ``share_b`` is the
    share of B among users with a preference (Wilson interval)."""

    prefer_a: int
    prefer_b: int
    ties: int
    share_b: Interval
    pvalue: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.pvalue < alpha


def sign_test(prefer_a: int, prefer_b: int, ties: int = 0, level: float = 0.95) -> SignTest:
    """Two-sided exact binomial test of ``prefer_b`` among ``prefer_a + prefer_b`` at 1/2."""
    decided = prefer_a + prefer_b
    p = float(stats.binomtest(prefer_b, decided, 0.5).pvalue) if decided else 1.0
    return SignTest(prefer_a, prefer_b, ties, wilson_interval(prefer_b, decided, level), p)


def user_preferences(user_wins_a: np.ndarray, user_wins_b: np.ndarray) -> tuple[int, int, int]:
    """``(prefer_a, prefer_b, ties)`` from per-user counts of impressions won by each team."""
    a = np.asarray(user_wins_a)
    b = np.asarray(user_wins_b)
    return int((a > b).sum()), int((b > a).sum()), int((a == b).sum())
