"""The event store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recloop.errors import ConfigError
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
            except BaseException as error:  # reported below
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
