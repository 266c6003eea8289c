"""Accuracy by user group: is the model as good for every kind of user?

Groups come from the users' categorical features (ml-100k: gender, age band,
occupation from ``u.user``) and, for every dataset, from how active the user was:
quintiles of the interactions before the evaluated period. For each attribute,
:func:`group_report` gives every group's mean with its 95% Student-t interval
(:func:`recloop.evaluate.stats.mean_confidence_interval`), then tests the gap between the
best and the worst group with Welch's t-test and the Mann-Whitney U test
(:func:`recloop.evaluate.stats.welch_test`), and all groups at once with the
Kruskal-Wallis H test. Groups smaller than ``min_size`` users are listed but take no part
in the tests (a 5-user occupation would otherwise decide the "worst group").
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from recloop.data.features import Features
from recloop.evaluate.stats import mean_confidence_interval, welch_test

UNKNOWN = "(unknown)"
ACTIVITY = "activity"


def activity_groups(history_lengths: np.ndarray, n_groups: int = 5) -> np.ndarray:
    """Label per user: its quintile (``n_groups``-ile) of ``history_lengths``, as
    ``"Q1: 20-33"`` (lowest activity first; bounds are the interactions before the
    evaluated period; equal bounds merge groups)."""
    lengths = np.asarray(history_lengths)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_groups + 1)))
    if len(edges) < 2:
        return np.full(len(lengths), f"Q1: {int(edges[0])}-{int(edges[0])}", dtype=object)
    bucket = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2)
    names = np.array([f"Q{b + 1}: {int(edges[b])}-{int(edges[b + 1])}" for b in range(len(edges) - 1)], dtype=object)
    return names[bucket]


def feature_groups(features: Features, users: np.ndarray) -> dict[str, np.ndarray]:
    """Label per user for each categorical user feature; a user with no value (or
    several) is ``(unknown)`` (or the values joined by ``+``)."""
    out = {}
    for name, feature in features.categorical.items():
        matrix = feature.matrix[np.asarray(users)].tocsr()
        labels = np.empty(len(users), dtype=object)
        for row in range(len(users)):
            values = [feature.values[j] for j in matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]]]
            labels[row] = "+".join(values) if values else UNKNOWN
        out[name] = labels
    return out


def group_report(values: np.ndarray, groups: dict[str, np.ndarray], metric: str, min_size: int = 20) -> dict:
    """JSON-able accuracy by group for each attribute in ``groups`` (labels aligned with
    ``values``, one per user); see the module docstring."""
    values = np.asarray(values, dtype=np.float64)
    report = {}
    for attribute, labels in groups.items():
        rows = []
        for label in sorted(set(labels), key=str):
            member = values[labels == label]
            interval = mean_confidence_interval(member)
            rows.append({"group": str(label), "n": len(member), "mean": interval.mean,
                         "ci95": [interval.low, interval.high]})
        tested = [r for r in rows if r["n"] >= min_size]
        entry: dict = {"metric": metric, "groups": rows, "min_size": min_size}
        if len(tested) >= 2:
            best = max(tested, key=lambda r: r["mean"])
            worst = min(tested, key=lambda r: r["mean"])
            test = welch_test(values[labels == best["group"]], values[labels == worst["group"]], metric)
            d = test.difference
            entry["gap"] = {"best": best["group"], "worst": worst["group"], "difference": d.mean,
                            "ci95": [d.low, d.high], "welch_t": test.t_statistic, "welch_p": test.t_pvalue,
                            "mannwhitney_p": test.mannwhitney_pvalue,
                            "relative": d.mean / best["mean"] if best["mean"] else 0.0}
            samples = [values[labels == r["group"]] for r in tested]
            entry["kruskal_p"] = (float(stats.kruskal(*samples).pvalue)
                                  if len({float(v) for s in samples for v in s}) > 1 else 1.0)
        report[attribute] = entry
    return report


def user_fairness(per_user: dict[str, np.ndarray], users: np.ndarray, history_lengths: np.ndarray,
                  user_features: Features | None, metric: str, min_size: int = 20) -> dict:
    """:func:`group_report` of ``per_user[metric]`` over the user features' groups (if
    any) and activity quintiles: what ``EvaluationResult.extra["user_groups"]`` holds."""
    groups = feature_groups(user_features, users) if user_features is not None else {}
    groups[ACTIVITY] = activity_groups(history_lengths)
    return group_report(per_user[metric], groups, metric, min_size)
