"""The event store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from recloop.errors import ConfigError, DataError
from recloop.serve.events import Event
from recloop.serve.store import ItemExistsError, NewItem, SQLiteEventStore, open_store


def test_append_then_read_back_in_order(store_url):
    with open_store(store_url) as store:
        assert store.count() == 0 and store.head().last_event_id == 0
        new = store.append([Event("u1", "i1", "click", time=10.0), Event("u1", "i2", "rate", 4.5, time=11.0)])
        assert new == 2
        store.append([Event("u2", "i1", "skip")])
        rows = store.events_after(0)
        assert [(r.user_id, r.item_id, r.type, r.value) for r in rows] == [
            ("u1", "i1", "click", None), ("u1", "i2", "rate", 4.5), ("u2", "i1", "skip", None)]
        assert rows[0].time == 10.0 and rows[2].time > 1e9  # server clock when none given
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        assert [r.id for r in store.events_after(rows[0].id)] == [rows[1].id, rows[2].id]
        assert store.head().last_event_id == rows[-1].id
        assert list(store.iter_events(0, batch=2)) == rows


def test_event_id_makes_retries_idempotent(store_url):
    with open_store(store_url) as store:
        assert store.append([Event("u", "a", "click", event_id="e1"), Event("u", "b", "click", event_id="e2")]) == 2
        assert store.append([Event("u", "a", "click", event_id="e1"), Event("u", "c", "click", event_id="e3")]) == 1
        assert store.append([Event("u", "a", "click"), Event("u", "a", "click")]) == 2  # no key: every event counts
        assert store.count() == 5


def test_data_survives_reopening(store_url):
    with open_store(store_url) as store:
        store.append([Event("u", "i", "purchase", 2.0)])
        store.add_item(NewItem("new", "a new item", {"genre": ["Comedy"]}, np.arange(4, dtype=np.float32), "New"))
        store.set_meta("artifact", "/a/b", bump_generation=True)
    with open_store(store_url) as store:
        assert [(e.user_id, e.type, e.value) for e in store.events_after(0)] == [("u", "purchase", 2.0)]
        (item,) = store.items_after(0)
        assert (item.item_id, item.text, item.features, item.title) == ("new", "a new item", {"genre": ["Comedy"]}, "New")
        np.testing.assert_array_equal(item.embedding, np.arange(4, dtype=np.float32))
        assert store.get_meta("artifact") == "/a/b" and store.get_meta("missing") is None
        assert store.head().generation == 1


def test_items_are_unique_and_tailable(store_url):
    with open_store(store_url) as store:
        first = store.add_item(NewItem("x", "text x"))
        with pytest.raises(ItemExistsError, match="'x' already exists"):
            store.add_item(NewItem("x", "again"))
        second = store.add_item(NewItem("y", "text y"))
        assert [i.item_id for i in store.items_after(first)] == ["y"] and store.head().last_item_id == second
        assert store.items_after(0)[0].embedding is None


def test_generation_counts_reloads(store_url):
    with open_store(store_url) as store:
        assert store.head().generation == 0
        assert store.set_meta("artifact", "a", bump_generation=True) == 1
        assert store.set_meta("artifact", "b", bump_generation=True) == 2
        assert store.set_meta("note", "no bump") == 2
        assert store.get_meta("artifact") == "b"


def test_concurrent_appends_are_group_committed_and_all_durable(store_url):
    with open_store(store_url) as store:
        errors = []

        def writer(t):
            try:
                for i in range(50):
                    assert store.append([Event(f"u{t}", f"i{i}", "click", event_id=f"{t}-{i}")]) == 1
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        rows = store.events_after(0, limit=10_000)
        assert len(rows) == 400 and len({r.event_id for r in rows}) == 400
    with open_store(store_url) as store:
        assert store.count() == 400


def test_a_second_process_sees_commits_in_id_order(store_url):
    """Two handles on one store (as two server processes): the tail never skips a row."""
    with open_store(store_url) as a, open_store(store_url) as b:
        seen, last = [], 0
        for round_ in range(5):
            fa, fb = a.submit([Event("u", f"a{round_}", "click")]), b.submit([Event("u", f"b{round_}", "click")])
            fa.result(), fb.result()
            rows = a.events_after(last)
            seen += rows
            last = rows[-1].id
        assert len(seen) == 10 and len({r.item_id for r in seen}) == 10


def test_sqlite_is_in_wal_mode(tmp_path):
    with SQLiteEventStore(tmp_path / "e.db") as store:
        assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert open_store(f"sqlite:///{tmp_path}/f.db").path == tmp_path / "f.db"


def test_bad_urls_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="unsupported event store URL 'mysql://x'"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="synchronous"):
        open_store(tmp_path / "x.db", synchronous="sometimes")


def test_a_restarted_postgres_costs_only_the_requests_in_flight(postgres_url):
    """Connections dropped by the server (as on a restart) are replaced: the failed
    append is reported (not acknowledged), the next ones and the reads succeed."""
    import psycopg

    with open_store(postgres_url) as store:
        store.append([Event("u", "a", "click")])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        try:
            store.append([Event("u", "b", "click")])  # may fail: its connection was cut
        except psycopg.OperationalError:
            pass
        store.append([Event("u", "c", "click")])
        assert {e.item_id for e in store.events_after(0)} >= {"a", "c"}


@pytest.mark.parametrize("bad, message", [
    (Event("u", "i", "click", time=float("nan")), "event time must be Unix seconds"),
    (Event("u", "i", "click", time=float("inf")), "event time must be Unix seconds"),
    (Event("u", "i", "click", time=1e300), "event time must be Unix seconds"),
    (Event("u", "i", "click", time=-1e308), "event time must be Unix seconds"),
    (Event("u", "i", "rate", value=1e308), "float32 range"),
    (Event("u", "i", "rate", value=float("nan")), "float32 range"),
    (Event("\ud800", "i", "click"), "lone surrogate"),
    (Event(" ", "i", "click"), "user_id must be a non-blank string"),
    (Event("u", "i", "clik"), "unknown event type 'clik'"),
])
def test_bad_events_are_refused_before_they_are_queued(tmp_path, bad, message):
    with open_store(tmp_path / "e.db") as store:
        with pytest.raises(DataError, match=message):
            store.submit([Event("u", "i", "click"), bad])
        assert store.append([Event("u", "i", "click")]) == 1 and store.count() == 1  # nothing of it was stored


def _poison(store) -> None:
    """A row the database itself refuses (as a constraint or a trigger would): the case
    that checking before queueing cannot catch."""
    with store._lock:
        store._reader.execute("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'poison' "
                              "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END")


def test_a_failed_group_commit_fails_only_the_request_at_fault(tmp_path):
    from concurrent.futures import Future

    with SQLiteEventStore(tmp_path / "e.db") as store:
        _poison(store)
        batch = [([Event("a", "i1", "click"), Event("a", "i2", "click")], Future()),
                 ([Event("poison", "i1", "click")], Future()),
                 ([Event("b", "i1", "click", event_id="k1")], Future())]
        store._writer._commit(batch)  # the three requests as one group commit
        assert batch[0][1].result() == 2 and batch[2][1].result() == 1
        with pytest.raises(Exception, match="poisoned row"):
            batch[1][1].result()
        assert sorted(e.user_id for e in store.events_after(0)) == ["a", "a", "b"]


def test_concurrent_writers_lose_nothing_to_a_poisoned_neighbour(tmp_path):
    with SQLiteEventStore(tmp_path / "e.db") as store:
        _poison(store)
        failures, refused, stop = [], [0], threading.Event()

        def good(t):
            for i in range(40):
                try:
                    store.append([Event(f"u{t}", f"i{i}", "click", event_id=f"{t}-{i}")])
                except sqlite3.Error as error:  # a good event refused: the bug under test
                    failures.append(error)

        def bad():
            while not stop.is_set():
                try:
                    store.append([Event("poison", "i1", "click")])
                except sqlite3.Error:
                    refused[0] += 1

        spoiler = threading.Thread(target=bad)
        spoiler.start()
        threads = [threading.Thread(target=good, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        spoiler.join()
        assert not failures and refused[0] > 0
        assert store.count() == 320


def test_the_default_database_lives_in_a_data_directory(monkeypatch, tmp_path):
    from recloop.serve.store import default_db_path

    monkeypatch.setenv("RECLOOP_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "events.db"
    monkeypatch.delenv("RECLOOP_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "recloop" / "events.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = default_db_path()
    assert path == tmp_path / "user" / ".local" / "share" / "recloop" / "events.db"
    with open_store(path) as store:  # the folder is created on demand
        assert store.append([Event("u", "i", "click")]) == 1
    assert path.is_file()


def test_event_databases_are_ignored_by_git():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("recloop-events.db", "events.db-wal", "x/events.db-shm"):
        done = subprocess.run(["git", "check-ignore", "-q", name], cwd=root, check=False)
        assert done.returncode == 0, f"{name} is not ignored by .gitignore"
