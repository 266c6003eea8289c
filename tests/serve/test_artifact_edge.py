"""Artifacts at the service's edge: ``/admin/reload`` refuses broken ones with a 4xx and keeps
serving; ``retrain`` survives bad rows in the store and keeps the evaluation's metrics."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from recloop.artifact import load_artifact
from recloop.serve.events import Event
from recloop.serve.retrain import retrain
from recloop.serve.store import open_store


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _spoil(name: str, folder):
    """Break a copy of an artifact the way a crash, a bad copy or a hand edit would."""
    if name == "truncated state":
        _truncate(folder / "state.safetensors")
    elif name == "truncated history":
        _truncate(folder / "history.safetensors")
    elif name == "state is not safetensors":
        (folder / "state.safetensors").write_bytes(b"\x00" * 64)
    elif name == "bad model.json":
        (folder / "model.json").write_text('{"format": "recloop-artifact", "model": ')
    elif name == "model.json names no model":
        (folder / "model.json").write_text(json.dumps({"format": "recloop-artifact", "format_version": 1}))
    elif name == "unknown model":
        header = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps({**header, "model": "nonesuch"}))
    elif name == "missing state file":
        (folder / "state.safetensors").unlink()
    elif name == "missing items.json":
        (folder / "items.json").unlink()
    elif name == "bad items.json":
        (folder / "items.json").write_text("[1, 2,")
    elif name == "model.json is a folder":
        (folder / "model.json").unlink()
        (folder / "model.json").mkdir()
    else:
        raise AssertionError(name)


BROKEN = ["truncated state", "truncated history", "state is not safetensors", "bad model.json",
          "model.json names no model", "unknown model", "missing state file", "missing items.json",
          "bad items.json", "model.json is a folder"]


@pytest.mark.parametrize("broken", BROKEN)
def test_reload_refuses_a_broken_artifact_and_keeps_serving(client, synthetic_artifact, tmp_path, broken):
    folder = tmp_path / "broken"
    shutil.copytree(synthetic_artifact, folder)
    _spoil(broken, folder)
    answer = client.post("/admin/reload", json={"artifact": str(folder)})
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"cannot load the artifact {folder}") and "still serving" in detail
    health = client.get("/health").json()
    assert health["artifact"] == str(synthetic_artifact) and health["generation"] == 0
    assert client.post("/recommend", json={"user_id": "u3", "k": 3}).status_code == 200


@pytest.mark.parametrize("path, reason", [
    ("x" * 5000, "String should have at most 4096 characters"),  # refused by the schema
    ("/tmp/" + "y" * 300, "File name too long"),  # one path component over NAME_MAX
    ("/tmp/" + "/".join(["z" * 200] * 20), ""),  # long but legal components
    ("/nonexistent/artifact", "not a recloop artifact"),
    ("", "at least 1 character"),
    ("rel\x00ative", ""),  # a NUL byte no file system takes
])
def test_reload_refuses_bad_paths(client, synthetic_artifact, path, reason):
    answer = client.post("/admin/reload", json={"artifact": path})
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["detail"] and len(answer.json()["detail"]) < 2000  # a long path is shortened
    assert client.get("/health").json()["artifact"] == str(synthetic_artifact)
    assert client.post("/recommend", json={"user_id": "u3", "k": 3}).status_code == 200


def test_retrain_skips_rows_an_older_server_stored(synthetic_artifact, tmp_path):
    """Rows the old validation let in (infinite or absurd times, a value beyond float32)
    are skipped with a warning that counts them; the good rows are folded in."""
    db = tmp_path / "events.db"
    with open_store(db) as store:
        store.append([Event("fresh1", "i1", "click", time=1_700_000_000.0), Event("fresh2", "i2", "purchase")])
    bad_rows = [("bad1", "i3", "click", None, float("inf")), ("bad2", "i3", "click", None, 1e300),
                ("bad3", "i3", "click", None, -1e308), ("bad4", "i3", "rate", 1e308, 1.0),
                ("bad5", "i3", "rate", float("inf"), 1.0)]
    with sqlite3.connect(db) as connection:  # as a pre-fix server wrote them
        connection.executemany("INSERT INTO events (user_id, item_id, type, value, time, received) "
                               "VALUES (?, ?, ?, ?, ?, 0)", bad_rows)
    with open_store(db) as store, pytest.warns(UserWarning, match=r"skipped 5 of 7 stored events that cannot be"):
        path, stats = retrain(synthetic_artifact, store, tmp_path / "next")
    assert stats.skipped_bad_rows == 5 and stats.events == 7 and stats.positives == 2 and stats.new_users == 2
    model = load_artifact(path).model
    assert "fresh1" in model.users_ and "bad1" not in model.users_ and "bad4" not in model.users_


def test_retrain_keeps_the_evaluation_metrics(synthetic_artifact, tmp_path):
    source = tmp_path / "evaluated"
    model = load_artifact(synthetic_artifact).model
    metrics = {"ndcg@10": 0.25, "recall@10": 0.4, "split": "temporal"}
    model.save(source, metrics=metrics)
    with open_store(tmp_path / "events.db") as store:
        store.append([Event("fresh", "i1", "click")])
        first, _ = retrain(source, store, tmp_path / "first")
        store.append([Event("fresh", "i2", "click")])
        second, _ = retrain(first, store, tmp_path / "second")
    for path in (first, second):
        written = json.loads((path / "metrics.json").read_text())
        assert {k: written[k] for k in metrics} == metrics
        assert written["evaluated"]["artifact"] == str(source.resolve())  # measured on the source's model
        assert "has not been evaluated" in written["evaluated"]["note"]
