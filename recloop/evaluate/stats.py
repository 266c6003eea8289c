"""Confidence intervals and significance tests over per-user metric values: paired (two
runs on the same users) and independent (two groups of users, one run)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_confidence_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Mean with a Student-t confidence interval: ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return Interval(mean, mean, mean, n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class PairedTest:
    """Run A against run B on the same users: ``difference`` is mean(A - B)."""

    metric: str
    difference: Interval
    t_statistic: float
    t_pvalue: float
    wilcoxon_pvalue: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.t_pvalue < alpha

    def __str__(self) -> str:
        d = self.difference
        return (f"{self.metric}: A - B = {d.mean:+.4f} (95% CI {d.low:+.4f} .. {d.high:+.4f}, n={d.n}), "
                f"paired t p={self.t_pvalue:.3g}, Wilcoxon p={self.wilcoxon_pvalue:.3g}")


def paired_test(a: np.ndarray, b: np.ndarray, metric: str = "metric", level: float = 0.95) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of per-user values ``a`` vs ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must cover the same users; got {a.shape} and {b.shape}")
    diff = a - b
    if np.allclose(diff, 0):
        return PairedTest(metric, mean_confidence_interval(diff, level), 0.0, 1.0, 1.0)
    t = stats.ttest_rel(a, b)
    wilcoxon = stats.wilcoxon(a, b, zero_method="wilcox")
    return PairedTest(metric, mean_confidence_interval(diff, level), float(t.statistic), float(t.pvalue),
                      float(wilcoxon.pvalue))


@dataclass(frozen=True)
class GroupTest:
    """Group A against group B (different users, one run): ``difference`` is
    mean(A) - mean(B) with a Welch interval."""

    metric: str
    difference: Interval
    t_statistic: float
    t_pvalue: float
    mannwhitney_pvalue: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.t_pvalue < alpha


def welch_test(a: np.ndarray, b: np.ndarray, metric: str = "metric", level: float = 0.95) -> GroupTest:
    """Welch's t-test (unequal variances) and the Mann-Whitney U test of two independent
    samples. The interval of the difference is ``d +- t_{(1+level)/2, nu} * se`` with
    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)`` and Welch-Satterthwaite degrees of freedom ``nu``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a group test needs at least 2 values per group; got {len(a)} and {len(b)}")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    n = len(a) + len(b)
    if se == 0:
        return GroupTest(metric, Interval(diff, diff, diff, n), 0.0, 1.0 if diff == 0 else 0.0, 1.0)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + level) / 2, dof) * se)
    t = stats.ttest_ind(a, b, equal_var=False)
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    return GroupTest(metric, Interval(diff, diff - half, diff + half, n), float(t.statistic), float(t.pvalue),
                     float(u.pvalue))
