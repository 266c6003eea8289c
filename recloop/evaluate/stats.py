"""Confidence intervals and paired significance tests over per-user metric values."""

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
