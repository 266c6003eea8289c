"""Impressions, attribution, A/B splits, interleaving and the online report, over HTTP
(TestClient on both event-store backends) and through ``recloop online-report``."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.errors import ConfigError
from recloop.serve.app import create_app
from recloop.serve.impressions import INTERLEAVED, ImpressionLog
from recloop.serve.online import OnlineConfig, bucket
from recloop.serve.settings import ServeSettings
from recloop.serve.store import open_store


@pytest.fixture(scope="session")
def popular_artifact(tmp_path_factory):
    """Most-popular on the same synthetic log as ``synthetic_artifact`` (same ids)."""
    from recloop.data import SyntheticConfig, generate
    from recloop.models import MostPopular

    data = generate(SyntheticConfig(n_users=300, n_items=120, n_clusters=6, mean_interactions=15, seed=1))
    return MostPopular().fit(data.interactions, item_features=data.item_features).save(
        tmp_path_factory.mktemp("artifacts") / "synthetic-popular")


def serve(served, db, **online):
    settings = ServeSettings(artifact=str(served), db=str(db), online=OnlineConfig(**online))
    return TestClient(create_app(settings, service_factory=fast_service))


def test_every_answer_is_logged_and_events_with_its_id_are_attributed(synthetic_artifact, store_url):
    with serve(synthetic_artifact, store_url) as client:
        answer = client.post("/recommend", json={"user_id": "u1", "k": 5}).json()
        assert answer["arm"] == "A" and len(answer["request_id"]) == 32
        again = client.post("/recommend", json={"user_id": "u1", "k": 5}).json()
        assert again["request_id"] != answer["request_id"]
        shown = [item["item_id"] for item in answer["items"]]
        events = [{"user_id": "u1", "item_id": shown[2], "type": "click", "request_id": answer["request_id"],
                   "event_id": "e1"},
                  {"user_id": "u1", "item_id": shown[2], "type": "click", "request_id": answer["request_id"],
                   "event_id": "e1"},  # a retry: stored once
                  {"user_id": "u1", "item_id": shown[4], "type": "view", "request_id": answer["request_id"]},
                  {"user_id": "u1", "item_id": shown[0], "type": "click"}]  # no request id: not attributed
        assert client.post("/events", json=events).json() == {"accepted": 4, "new": 3}
        report = client.get("/online-report").json()
    arm = report["split"]["arms"][0]
    assert report["impressions"] == 2 and report["split"]["kind"] == "single"
    assert (arm["arm"], arm["users"], arm["impressions"], arm["clicks"], arm["clicked_impressions"]) == ("A", 1, 2, 1, 1)
    assert arm["clicks_at"] == [0, 0, 1, 0, 0] and arm["ctr"] == 0.5
    with open_store(store_url) as store, ImpressionLog(store) as log:
        logged = log.impressions()
        assert [i.request_id for i in logged] == [answer["request_id"], again["request_id"]]
        assert list(logged[0].items) == shown and logged[0].user_id == "u1" and logged[0].model == "ease"
        assert [(a.item_id, a.type) for a in log.attributions()] == [(shown[2], "click"), (shown[4], "view")]
        assert log.erase_user("u1") == 4 and log.impressions() == []


def test_ab_split_is_stable_per_user_and_follows_the_share(synthetic_artifact, popular_artifact, tmp_path):
    users = [f"u{i}" for i in range(300)]
    with serve(synthetic_artifact, tmp_path / "events.db", mode="ab", artifact=str(popular_artifact),
               arm_a="ease", arm_b="pop", share=0.3, salt="s1") as client:
        arms = {}
        for user in users:
            answer = client.post("/recommend", json={"user_id": user, "k": 3}).json()
            arms[user] = answer["arm"]
            assert answer["model"] == ("popular" if answer["arm"] == "pop" else "ease")
            if answer["arm"] == "pop":
                client.post("/events", json={"user_id": user, "item_id": answer["items"][0]["item_id"],
                                             "type": "click", "request_id": answer["request_id"]})
        for user in users[:30]:  # a user stays in the arm
            assert client.post("/recommend", json={"user_id": user, "k": 3}).json()["arm"] == arms[user]
        report = client.get("/online-report").json()["split"]
    expected = {u: "pop" if bucket("s1", u) < 0.3 else "ease" for u in users}
    assert arms == expected
    assert 60 <= sum(a == "pop" for a in arms.values()) <= 120  # 0.3 of 300, well within binomial bounds
    assert [a["arm"] for a in report["arms"]] == ["ease", "pop"]  # control first
    pop = report["arms"][1]
    assert pop["ctr"] == pytest.approx(pop["users"] / pop["impressions"]) and pop["clicks_at"][0] == pop["users"]
    test = report["test"]
    assert report["kind"] == "ab" and test["winner"] == "pop" and test["p"] < 1e-6 and test["difference"] > 0


def test_interleaving_merges_both_lists_and_credits_the_clicked_team(synthetic_artifact, popular_artifact,
                                                                     tmp_path):
    with serve(synthetic_artifact, tmp_path / "events.db", mode="interleave", artifact=str(popular_artifact),
               seed=0) as client:
        for i in range(40):
            user = f"u{i}"
            ease = client.app.state.router.arms[0].service.recommend(user_id=user, k=6)
            popular = client.app.state.router.arms[1].service.recommend(user_id=user, k=6)
            answer = client.post("/recommend", json={"user_id": user, "k": 6}).json()
            assert answer["arm"] == INTERLEAVED and answer["model"] == "ease+popular"
            shown = [item["item_id"] for item in answer["items"]]
            assert len(set(shown)) == 6 and set(shown) <= {r.item_id for r in ease.items + popular.items}
            # the user clicks every item the popularity ranker placed
            picked_b = [x for x in shown if x in {r.item_id for r in popular.items}
                        and x not in {r.item_id for r in ease.items}]
            if picked_b:
                client.post("/events", json=[{"user_id": user, "item_id": x, "type": "click",
                                              "request_id": answer["request_id"]} for x in picked_b])
        section = client.get("/online-report").json()["interleaving"]
    test = section["test"]
    assert test["impressions_won"]["A"] == 0 and test["impressions_won"]["B"] > 20
    assert test["users_prefer"]["B"] == test["impressions_won"]["B"] and test["winner"] == "B" and test["p"] < 1e-5
    assert section["arms"][0]["clicks"] == 0 and section["arms"][1]["impressions"] == 40


def test_online_report_command_and_the_admin_rule(synthetic_artifact, tmp_path, capsys):
    from recloop.cli import main

    db = tmp_path / "events.db"
    settings = ServeSettings(artifact=str(synthetic_artifact), db=str(db), api_key="secret")
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        answer = client.post("/recommend", json={"user_id": "u3", "k": 4}).json()
        client.post("/events", headers={"X-API-Key": "secret"},
                    json={"user_id": "u3", "item_id": answer["items"][1]["item_id"], "type": "purchase",
                          "request_id": answer["request_id"]})
        assert client.get("/online-report").status_code == 401
        served = client.get("/online-report", headers={"X-API-Key": "secret"}).json()
    assert main(["online-report", "--db", str(db), "--json", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == served and printed["split"]["arms"][0]["clicks_at"] == [0, 1, 0, 0]
    assert main(["online-report", "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "answers by one arm" in table and "A " in table
    assert main(["online-report", "--db", str(tmp_path / "missing.db")]) != 0


def test_online_settings_are_checked():
    with pytest.raises(ConfigError, match="needs online.artifact"):
        OnlineConfig(mode="ab")
    with pytest.raises(ConfigError, match="mode must be one of"):
        OnlineConfig(mode="bandit")
    with pytest.raises(ConfigError, match="different"):
        OnlineConfig(arm_a="x", arm_b="x")
    with pytest.raises(ConfigError, match="share"):
        OnlineConfig(share=1.5)
    assert bucket("s", "u1") == bucket("s", "u1") != bucket("t", "u1")
