"""Fairness across users: group means with intervals, the Welch test of the gap, activity
quintiles, and the JSON results and HTML report of `recloop compare` on ml-100k."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from recloop.cli import main
from recloop.evaluate.groups import activity_groups, group_report
from recloop.evaluate.stats import welch_test


def test_welch_test_hand_checked():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 1.0, 1.0, 3.0])
    test = welch_test(a, b, "m")
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    half = stats.t.ppf(0.975, dof) * np.sqrt(va + vb)
    assert test.difference.mean == pytest.approx(2.5 - 1.0)
    assert (test.difference.low, test.difference.high) == pytest.approx((1.5 - half, 1.5 + half))
    assert test.t_statistic == pytest.approx(1.5 / np.sqrt(va + vb))
    assert test.t_pvalue == pytest.approx(2 * stats.t.sf(test.t_statistic, dof))


def test_activity_quintiles():
    labels = activity_groups(np.arange(1, 101))
    assert len(set(labels)) == 5
    assert labels[0].startswith("Q1: 1-") and labels[-1].startswith("Q5:") and labels[-1].endswith("-100")
    assert (labels == labels[0]).sum() == 20


def test_group_report_finds_a_planted_gap_and_ignores_tiny_groups():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.5, 0.1, 200), rng.normal(0.3, 0.1, 200), [0.0, 0.0, 0.0]])
    labels = np.array(["a"] * 200 + ["b"] * 200 + ["tiny"] * 3, dtype=object)
    report = group_report(values, {"g": labels}, "ndcg@10", min_size=20)["g"]
    groups = {row["group"]: row for row in report["groups"]}
    assert groups["tiny"]["n"] == 3  # listed ...
    assert report["gap"]["worst"] == "b"  # ... but not the "worst group" of the test
    assert report["gap"]["best"] == "a" and report["gap"]["difference"] == pytest.approx(0.2, abs=0.03)
    assert report["gap"]["welch_p"] < 1e-6 and report["kruskal_p"] < 1e-6
    low, high = groups["a"]["ci95"]
    assert low < groups["a"]["mean"] < high


def test_no_gap_is_not_significant():
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.1, 400)
    report = group_report(values, {"g": np.array(["a", "b"] * 200, dtype=object)}, "m")["g"]
    assert report["gap"]["welch_p"] > 0.01


COMPARE = """
name = "fairness-report"
[data]
dataset = "ml-100k"
[split]
method = "ratio"
test_ratio = 0.2
seed = 1
[evaluation]
k = [10]
[[models]]
name = "popular"
[[models]]
name = "ease"
l2 = 500.0
"""


def test_compare_reports_fairness_across_users_on_ml100k(data_dir, tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text(COMPARE)
    out = tmp_path / "run"
    assert main(["compare", str(config), "--output", str(out), "--quiet", "--no-refit-all",
                 "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    for label in ("popular", "ease"):
        record = results["models"][label]
        groups = record["user_groups"]
        assert set(groups) == {"gender", "age", "occupation", "activity"}
        gender = {row["group"]: row for row in groups["gender"]["groups"]}
        assert set(gender) == {"F", "M"} and gender["F"]["n"] + gender["M"]["n"] == record["n_users"]
        assert {"welch_p", "mannwhitney_p", "ci95", "difference"} <= set(groups["gender"]["gap"])
        assert len(groups["activity"]["groups"]) == 5
        assert 0 < record["metrics"]["calibration@10"]  # genre miscalibration, per model
    # Popularity ignores the user's taste: its lists are further from the history's genre mix.
    assert results["models"]["popular"]["metrics"]["calibration@10"] > results["models"]["ease"]["metrics"][
        "calibration@10"]
    assert results["data_quality"]["checks"]["bot users"]["count"] == 0
    report = (out / "report.html").read_text()
    for text in ("Fairness across users", "by gender", "by occupation", "by activity", "Welch p",
                 "calibration@10", "Data quality", "bot users"):
        assert text in report
