"""Erasure, access, retention and pseudonyms (recloop.serve.privacy), over HTTP on both
store backends: after ``DELETE /users/{id}`` no trace of the user is left in the store,
the live service or the next artifact, and every other user's events are untouched."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.cli import main as cli
from recloop.serve.app import create_app
from recloop.serve.privacy import PrivacySettings, Pseudonyms, delete_expired, verify
from recloop.serve.retrain import retrain
from recloop.serve.settings import ServeSettings
from recloop.serve.store import open_store

KEY = "admin-key"
ADMIN = {"X-API-Key": KEY}
MODEL_USER = "u7"  # in the synthetic artifact's training data
NEW_USER = "erase-me-alice@example.com"  # only in live events (long enough for the byte scan)
OTHER = "u8"


def _events(user, items, kind="click"):
    return [{"user_id": user, "item_id": item, "type": kind} for item in items]


def _client(artifact, db, **options):
    return TestClient(create_app(ServeSettings(artifact=str(artifact), db=str(db), api_key=KEY, **options),
                                 service_factory=fast_service))


def _rows(url, user):
    with open_store(url) as store:
        return [(e.id, e.user_id, e.item_id, e.type) for e in store.iter_events() if e.user_id == user]


def test_delete_leaves_no_trace_in_store_live_service_or_next_artifact(synthetic_artifact, store_url, tmp_path,
                                                                      capsys):
    artifact = shutil.copytree(synthetic_artifact, tmp_path / "served")
    with _client(artifact, store_url) as client:
        for user in (MODEL_USER, NEW_USER, OTHER, "u9"):
            assert client.post("/events", json=_events(user, ["i1", "i2", "i3"]), headers=ADMIN).status_code == 200
        others_before = {u: _rows(store_url, u) for u in (OTHER, "u9")}

        data = client.get(f"/users/{MODEL_USER}/data", headers=ADMIN).json()
        assert [e["item_id"] for e in data["store"]["events"]] == ["i1", "i2", "i3"]
        assert data["live"]["events"] == 3 and data["model"]["in_training_data"] and data["model"]["history"]

        assert client.delete(f"/users/{MODEL_USER}").status_code == 401  # an admin endpoint
        shown = client.post("/recommend", json={"user_id": MODEL_USER, "k": 5}).json()  # an impression is logged
        click = {"user_id": MODEL_USER, "item_id": shown["items"][0]["item_id"], "type": "click",
                 "request_id": shown["request_id"]}
        assert client.post("/events", json=click, headers=ADMIN).status_code == 200  # and attributed
        for user, rows in ((MODEL_USER, {"events": 4, "impressions": 1, "impression_events": 1}),
                           (NEW_USER, {"events": 3, "impressions": 0, "impression_events": 0})):
            answer = client.delete(f"/users/{user}", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            assert answer.json()["deleted"] == rows
        assert answer.json()["scrubbed"] is True

        # The live service: a new visitor (404 until they send events), nothing to export.
        for user in (MODEL_USER, NEW_USER):
            assert client.post("/recommend", json={"user_id": user, "k": 5}).status_code == 404
            data = client.get(f"/users/{user}/data", headers=ADMIN).json()
            assert data["store"] and all(rows == [] for rows in data["store"].values()) and data["live"] is None
            assert data["model"]["in_training_data"] is False and data["model"]["history"] == []
        assert client.post("/recommend", json={"user_id": OTHER, "k": 5}).status_code == 200
    assert {u: _rows(store_url, u) for u in (OTHER, "u9")} == others_before  # untouched, same ids

    # The store is clean; the served artifact still holds the model user until it is refitted.
    with open_store(store_url) as store:
        assert verify(NEW_USER, store) == []
        assert [t.where for t in verify(MODEL_USER, store, [artifact])] == [f"artifact {artifact}"]
    assert cli(["forget", "--verify", MODEL_USER, "--db", store_url, "--artifact", str(artifact)]) == 1
    assert cli(["forget", MODEL_USER, "--db", store_url, "--artifact", str(artifact)]) == 0
    assert "refitted without 1 erased users" in capsys.readouterr().err
    assert cli(["forget", "--verify", MODEL_USER, "--db", store_url, "--artifact", str(artifact)]) == 0
    users = json.loads((artifact / "users.json").read_text())
    assert MODEL_USER not in users and OTHER in users

    # The next retrain from an artifact written before the erasure leaves the user out too.
    with open_store(store_url) as store:
        path, _ = retrain(synthetic_artifact, store, tmp_path / "retrained")
        assert verify(MODEL_USER, store, [path]) == [] and verify(NEW_USER, store, [path]) == []
        assert OTHER in json.loads((path / "users.json").read_text())


def test_erased_bytes_are_gone_from_the_sqlite_files(synthetic_artifact, tmp_path):
    db = tmp_path / "events.db"
    with _client(synthetic_artifact, db) as client:
        client.post("/events", json=_events(NEW_USER, ["i1", "i2"]) + _events(OTHER, ["i4"]), headers=ADMIN)
        assert NEW_USER.encode() in db.read_bytes() + (tmp_path / "events.db-wal").read_bytes()
        client.delete(f"/users/{NEW_USER}", headers=ADMIN)
        files = db.read_bytes() + (tmp_path / "events.db-wal").read_bytes()
        assert NEW_USER.encode() not in files and OTHER.encode() in files


def test_events_after_an_erasure_are_a_returning_users_new_data(synthetic_artifact, tmp_path):
    db = tmp_path / "events.db"
    with _client(synthetic_artifact, db) as client:
        client.post("/events", json=_events(MODEL_USER, ["i1"]), headers=ADMIN)
        client.delete(f"/users/{MODEL_USER}", headers=ADMIN)
        client.post("/events", json=_events(MODEL_USER, ["i5"]), headers=ADMIN)
        data = client.get(f"/users/{MODEL_USER}/data", headers=ADMIN).json()
        assert [e["item_id"] for e in data["store"]["events"]] == ["i5"]
        assert data["live"]["positives"] == ["i5"] and data["model"]["history"] == []
        assert client.post("/recommend", json={"user_id": MODEL_USER, "k": 5}).status_code == 200
    with open_store(db) as store:  # a retrain keeps the new event, not the training history
        path, _ = retrain(synthetic_artifact, store, tmp_path / "retrained")
    from recloop.artifact import load_model

    model = load_model(path)
    history = model.history_.histories([model.users_.index(MODEL_USER)])
    assert model.items_.ids[history.item_idx].tolist() == ["i5"]


def test_erased_users_can_be_refused(synthetic_artifact, tmp_path):
    with _client(synthetic_artifact, tmp_path / "e.db", privacy=PrivacySettings(refuse_erased=True)) as client:
        client.delete(f"/users/{NEW_USER}", headers=ADMIN)
        answer = client.post("/events", json=_events(NEW_USER, ["i1"]), headers=ADMIN)
        assert answer.status_code == 400 and "erased" in answer.json()["detail"]


def test_another_worker_drops_the_erased_users_live_state(synthetic_artifact, tmp_path, make_service):
    db = tmp_path / "events.db"
    fast = PrivacySettings(follow_seconds=0.01)
    first, second = make_service(synthetic_artifact, db, privacy=fast), make_service(synthetic_artifact, db,
                                                                                     privacy=fast)
    from recloop.serve.events import Event

    first.record_events([Event(NEW_USER, "i1", "click"), Event(MODEL_USER, "i2", "click")])
    assert second.recommend(NEW_USER, k=3).items
    first.forget_user(NEW_USER)
    first.forget_user(MODEL_USER)
    time.sleep(0.02)
    from recloop.errors import UnknownIdError

    for user in (NEW_USER, MODEL_USER):
        with pytest.raises(UnknownIdError):
            second.recommend(user, k=3)


def test_pseudonyms_keep_raw_ids_off_the_disk(synthetic_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PSEUDONYM_KEY", "0123456789abcdef0123456789abcdef")
    db = tmp_path / "events.db"
    settings = PrivacySettings(pseudonym_key_env="TEST_PSEUDONYM_KEY")
    with _client(synthetic_artifact, db, privacy=settings) as client:
        assert client.post("/events", json=_events(NEW_USER, ["i1", "i2"]), headers=ADMIN).status_code == 200
        assert client.post("/recommend", json={"user_id": NEW_USER, "k": 3}).status_code == 200  # raw id lookup
        client.app.state.router.log.flush()  # the answer's impression is on disk too
        data = client.get(f"/users/{NEW_USER}/data", headers=ADMIN).json()
        assert data["pseudonymised"] and data["stored_as"].startswith("h:")
        assert [e["user_id"] for e in data["store"]["events"]] == [data["stored_as"]] * 2
        assert [e["user_id"] for e in data["store"]["impressions"]] == [data["stored_as"]]
        files = db.read_bytes() + (tmp_path / "events.db-wal").read_bytes()
        assert NEW_USER.encode() not in files and data["stored_as"].encode() in files
        deleted = client.delete(f"/users/{NEW_USER}", headers=ADMIN).json()["deleted"]
        assert deleted["events"] == 2 and deleted["impressions"] == 1
        assert client.post("/recommend", json={"user_id": NEW_USER, "k": 3}).status_code == 404
    assert cli(["forget", "--verify", NEW_USER, "--db", str(db), "--pseudonym-key-env", "TEST_PSEUDONYM_KEY"]) == 0


def test_pseudonyms_need_a_key_in_the_environment():
    from recloop.errors import ConfigError

    with pytest.raises(ConfigError, match="PSEUDO_KEY"):
        Pseudonyms.from_settings(PrivacySettings(pseudonym_key_env="PSEUDO_KEY"), environ={})
    key = Pseudonyms.from_settings(PrivacySettings(pseudonym_key_env="K"), environ={"K": "x" * 32})
    other = Pseudonyms.from_settings(PrivacySettings(pseudonym_key_env="K"), environ={"K": "y" * 32})
    assert key.key("alice") == key.key("alice") != other.key("alice")


def test_retention_sweeps_old_events_on_start_and_on_command(synthetic_artifact, tmp_path):
    db = tmp_path / "events.db"
    with _client(synthetic_artifact, db) as client:
        client.post("/events", json=_events(NEW_USER, ["i1", "i2"]) + _events(OTHER, ["i3"]), headers=ADMIN)
    old = time.time() - 40 * 86400
    with sqlite3.connect(db) as connection:  # as if received 40 days ago
        connection.execute("UPDATE events SET received = ? WHERE user_id = ?", (old, NEW_USER))
    with _client(synthetic_artifact, db, privacy=PrivacySettings(retention_days=30)) as client:
        assert client.post("/recommend", json={"user_id": NEW_USER, "k": 3}).status_code == 404  # swept at start
        assert [e["item_id"] for e in client.get(f"/users/{OTHER}/data", headers=ADMIN).json()["store"]["events"]] \
            == ["i3"]
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE events SET received = ?", (old,))
    assert cli(["forget", "--expired", "--retention-days", "30", "--db", str(db)]) == 0
    with open_store(db) as store:
        assert store.count() == 0 and delete_expired(store, 30) == (0, [])


def test_forget_explains_bad_invocations(tmp_path, capsys):
    assert cli(["forget", "--db", str(tmp_path / "missing.db"), "someone"]) == 2
    assert "no event store" in capsys.readouterr().err
    assert cli(["forget", "--expired", "--db", str(tmp_path / "x.db")]) == 2
    assert "--retention-days" in capsys.readouterr().err


def test_a_running_two_worker_server_forgets_a_user_in_every_worker(synthetic_artifact, tmp_path):
    """Real HTTP to a `recloop serve` process with two workers: after DELETE, both
    workers answer as for a new visitor (the other worker follows within follow_seconds)."""
    import httpx
    from serve_helpers import free_port, start_server, stop_server, wait_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(synthetic_artifact, tmp_path / "events.db", port, "--workers", "2", "--api-key", KEY,
                           log_path=tmp_path / "server.log")
    try:
        wait_healthy(process, url)
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/events", json=_events(NEW_USER, ["i1", "i2"]), headers=ADMIN).status_code == 200
            assert all(http.post("/recommend", json={"user_id": NEW_USER}).status_code == 200 for _ in range(8))
            answer = http.delete(f"/users/{NEW_USER}", headers=ADMIN)
            assert answer.status_code == 200 and answer.json()["deleted"]["events"] == 2
            assert sum(v for t, v in answer.json()["deleted"].items() if "impressions" in t) == 8  # every answer's
            time.sleep(1.5)  # PrivacySettings.follow_seconds (1 s) for the other worker
            assert [http.post("/recommend", json={"user_id": NEW_USER}).status_code for _ in range(12)] == [404] * 12
            data = http.get(f"/users/{NEW_USER}/data", headers=ADMIN).json()
            assert data["store"] and all(rows == [] for rows in data["store"].values()) and data["live"] is None
    finally:
        stop_server(process)
    with open_store(tmp_path / "events.db") as store:
        assert verify(NEW_USER, store) == []
