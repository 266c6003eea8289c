"""The user simulator against a real running service (``recloop serve`` under uvicorn):
ml-100k users whose hidden preference is their held-out items click through
interleaved EASE and most-popular lists, and the online report picks EASE."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from serve_helpers import ROOT, free_port, start_server, stop_server, wait_healthy


def load_simulator():
    """benchmarks/online_sim.py by its path (an installed package may be named ``benchmarks``)."""
    spec = importlib.util.spec_from_file_location("online_sim", ROOT / "benchmarks" / "online_sim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("online_sim", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def split_artifacts(ml100k, tmp_path_factory):
    """EASE and most-popular fitted on the training part of the 75/25 split (seed 42),
    and each user's test items: the hidden preferences."""
    from recloop.data.splits import SplitConfig, split
    from recloop.models import EASE, MostPopular

    parts = split(ml100k.interactions, SplitConfig(method="ratio", test_ratio=0.25, seed=42))
    folder = tmp_path_factory.mktemp("online-sim")
    ease = EASE(l2=500.0).fit(parts.train).save(folder / "ease")
    popular = MostPopular().fit(parts.train).save(folder / "popular")
    users, items = ml100k.interactions.users, ml100k.interactions.items
    preferences: dict[str, set[str]] = {}
    for u, i in zip(parts.test.user_idx.tolist(), parts.test.item_idx.tolist()):
        preferences.setdefault(str(users.id(u)), set()).add(str(items.id(i)))
    return ease, popular, {u: frozenset(v) for u, v in preferences.items()}


def test_simulated_users_make_the_interleaving_report_pick_ease(split_artifacts, tmp_path):
    sim = load_simulator()
    ClickModel, decisions, make_users, simulate = sim.ClickModel, sim.decisions, sim.make_users, sim.simulate
    ease, popular, preferences = split_artifacts
    port, db = free_port(), tmp_path / "events.db"
    process = start_server(ease, db, port, "--set", "online.mode=interleave", "--set", f"online.artifact={popular}",
                           "--set", "online.arm_a=ease", "--set", "online.arm_b=popular", "--set", "online.seed=0",
                           log_path=tmp_path / "server.log")
    clicks = ClickModel(propensity_a=8.0, propensity_b=2.0, noise=0.1)  # keen users (mean 0.8): a quick decision
    users = make_users(preferences, clicks, seed=0, limit=60)
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", timeout=300)  # a loaded machine loads two models slowly
        # One user at a time: the server's interleaving coins then fall in a fixed order, so
        # the run is the same every time (with more, the order of requests varies).
        totals = simulate(f"http://127.0.0.1:{port}", users, clicks, sessions=3, k=10, seed=0, concurrency=1)
    finally:
        stop_server(process)
    assert totals["requests"] == 180 and totals["clicks"] > 60
    result = decisions(db, "interleaving", [10, 20, 30, 40, 50, 60], expected="ease")
    report = result["report"]
    assert report["impressions"] == 180 and result["users"] == 60
    section = report["interleaving"]
    assert sum(arm["clicks"] for arm in section["arms"]) == totals["clicks"]  # every click attributed
    test = section["test"]
    assert test["winner"] == "ease" and test["p"] < 0.05
    assert test["impressions_won"]["ease"] > 1.5 * test["impressions_won"]["popular"]
    assert result["users_to_decision"] is not None and result["users_to_decision"] <= 60
