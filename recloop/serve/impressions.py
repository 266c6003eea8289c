"""The impression log: what every ``/recommend`` answer showed, and the feedback events
that name the answer they came from.

Each answer gets a ``request_id`` (returned to the client) and is logged as one
:class:`Impression`: the user, the arm that answered (or, for an interleaved answer,
the arm that placed each item), the model and its version, and the items in order. A
feedback event sent with that ``request_id`` is recorded as an :class:`Attribution`
next to it, so the online report can say which answer, which arm and which position a
click came from. The events themselves still go to the event log as before (they feed
the live state and ``retrain``); an attribution is the event's link to its answer.

Two tables in the event store's database (SQLite or PostgreSQL), written by their own
:class:`~recloop.serve.store.GroupCommitter` thread. Logging an answer appends it to a
list; every ``linger`` seconds (or at ``max_pending`` impressions) the list goes to the
committer as one transaction. The answer never waits for the commit (impressions lost
in a crash cost rows of a statistic, never an acknowledged event), and the writer
thread wakes a few times a second rather than once per answer: measured on a loaded
2-core machine, handing each answer to the writer at once (a queue put that wakes it,
then its turn on the GIL) doubled the median latency of ``/recommend``
(docs/online-evaluation.md). Attributions are awaited by ``POST /events`` like the
events themselves.

One row per impression (items as a JSON list) rather than one per shown item: ten times
fewer rows to write on the hot path, and the report reads whole lists anyway.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Self

from recloop.errors import DataError
from recloop.serve.events import text_problem
from recloop.serve.store import EventStore, GroupCommitter, PostgresEventStore, SQLiteEventStore

#: ``Impression.arm`` of an interleaved answer (its items name their arms in ``teams``).
INTERLEAVED = "interleaved"


def new_request_id() -> str:
    """A fresh, unguessable request id (32 hex digits)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Impression:
    """One answer of ``/recommend``: ``items`` in the order shown; ``teams`` (interleaved
    answers only) the arm that placed each item. ``user_id`` is ``None`` for an
    anonymous request."""

    request_id: str
    user_id: str | None
    arm: str
    model: str
    generation: int
    items: tuple[str, ...]
    teams: tuple[str, ...] | None = None
    time: float = 0.0


@dataclass(frozen=True)
class Attribution:
    """A feedback event that named the answer (``request_id``) it came from."""

    request_id: str
    user_id: str
    item_id: str
    type: str
    time: float
    event_id: str | None = None


_SCHEMA = {
    "sqlite": (
        """CREATE TABLE IF NOT EXISTS impressions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, user_id TEXT,
            arm TEXT NOT NULL, model TEXT NOT NULL, generation INTEGER NOT NULL, items TEXT NOT NULL,
            teams TEXT, time REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS impression_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, user_id TEXT NOT NULL,
            item_id TEXT NOT NULL, type TEXT NOT NULL, time REAL NOT NULL, event_id TEXT UNIQUE)""",
    ),
    "postgres": (
        """CREATE TABLE IF NOT EXISTS impressions (
            id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, user_id TEXT,
            arm TEXT NOT NULL, model TEXT NOT NULL, generation BIGINT NOT NULL, items TEXT NOT NULL,
            teams TEXT, time DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS impression_events (
            id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, user_id TEXT NOT NULL,
            item_id TEXT NOT NULL, type TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, event_id TEXT UNIQUE)""",
    ),
}
_INDEXES = ("CREATE INDEX IF NOT EXISTS impression_events_request ON impression_events (request_id)",
            "CREATE INDEX IF NOT EXISTS impressions_user ON impressions (user_id)",
            "CREATE INDEX IF NOT EXISTS impression_events_user ON impression_events (user_id)")
_INSERT_IMPRESSION = ("INSERT INTO impressions (request_id, user_id, arm, model, generation, items, teams, time) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")
_INSERT_ATTRIBUTION = ("INSERT INTO impression_events (request_id, user_id, item_id, type, time, event_id) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING")
_SCHEMA_LOCK = 7_240_013  # PostgreSQL advisory lock: workers creating the tables at once


def _impression_row(i: Impression) -> tuple:
    return (i.request_id, i.user_id, i.arm, i.model, int(i.generation), json.dumps(list(i.items)),
            None if i.teams is None else json.dumps(list(i.teams)), i.time or time.time())


def _attribution_row(a: Attribution) -> tuple:
    return (a.request_id, a.user_id, a.item_id, a.type, a.time, a.event_id)


class ImpressionLog:
    """The two tables of the module docstring, in the database of ``store``."""

    def __init__(self, store: EventStore, linger: float = 0.25, max_pending: int = 2000):
        if isinstance(store, SQLiteEventStore):
            self.backend = "sqlite"
        elif isinstance(store, PostgresEventStore):
            self.backend = "postgres"
        else:
            raise DataError(f"impressions need a SQLite or PostgreSQL event store, got {type(store).__name__}")
        self.store = store
        self._lock = threading.Lock()
        self._reader = self._connect()
        self._writer = GroupCommitter(self._connect, self._write, name="recloop-impression-writer")
        self.linger, self.max_pending = linger, max_pending
        self._pending: list[Impression] = []
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="recloop-impression-linger", daemon=True)
        self._ticker.start()

    # --- connections ---------------------------------------------------------------------------
    def _connect(self):
        """A new connection with the tables in place (idempotent, safe across processes)."""
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.store.path, timeout=30.0, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=30000")
            # No fsync per commit: these rows are a statistic, and the event each attribution
            # names is already durable in the event log (at the store's own setting). NORMAL
            # in WAL mode survives a killed process; a power loss may lose the last commits.
            connection.execute("PRAGMA synchronous=NORMAL")
            for statement in (*_SCHEMA["sqlite"], *_INDEXES):
                connection.execute(statement)
            return connection
        import psycopg

        connection = psycopg.connect(self.store.url, autocommit=True)
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in (*_SCHEMA["postgres"], *_INDEXES):
                connection.execute(statement)
        return connection

    def _sql(self, sql: str) -> str:
        return sql if self.backend == "sqlite" else sql.replace("?", "%s")

    def _write(self, connection, records: list) -> list[bool]:
        """One transaction for a batch of impressions and attributions (the committer's
        ``write_batch``); every record counts as written (duplicates are ignored)."""
        impressions = [_impression_row(r) for r in records if isinstance(r, Impression)]
        attributions = [_attribution_row(r) for r in records if isinstance(r, Attribution)]
        if self.backend == "sqlite":
            connection.execute("BEGIN IMMEDIATE")
            try:
                if impressions:
                    connection.executemany(_INSERT_IMPRESSION, impressions)
                if attributions:
                    connection.executemany(_INSERT_ATTRIBUTION, attributions)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        else:
            with connection.transaction(), connection.cursor() as cursor:
                if impressions:
                    cursor.executemany(self._sql(_INSERT_IMPRESSION), impressions)
                if attributions:
                    cursor.executemany(self._sql(_INSERT_ATTRIBUTION), attributions)
        return [True] * len(records)

    # --- writes --------------------------------------------------------------------------------
    def record(self, impression: Impression) -> None:
        """Log one impression: committed within ``linger`` seconds (callers never wait)."""
        with self._pending_lock:
            self._pending.append(impression)
            full = len(self._pending) >= self.max_pending
        if full:
            self._submit_pending()

    def _submit_pending(self) -> Future | None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        return self._writer.submit(batch) if batch else None

    def _tick(self) -> None:
        while not self._closed.wait(self.linger):
            self._submit_pending()

    def attribute(self, attributions: Sequence[Attribution]) -> Future:
        """Queue events that name a request id; the future resolves once committed."""
        for a in attributions:
            problem = text_problem("request_id", a.request_id)
            if problem:
                raise DataError(f"event of user {a.user_id!r} on item {a.item_id!r}: {problem}")
        return self._writer.submit(list(attributions))

    def erase_user(self, user_id: str) -> int:
        """Delete every impression and attribution of ``user_id`` (``user_id`` as stored);
        returns the rows deleted. A privacy erasure (:mod:`recloop.serve.privacy`) deletes
        them with the user's events; this is its second pass, for the impressions other
        processes still had queued at that moment."""
        with self._lock:
            deleted = 0
            if self.backend == "sqlite":
                self._reader.execute("PRAGMA secure_delete = ON")  # per connection: zero the freed bytes
                self._reader.execute("BEGIN IMMEDIATE")
                try:
                    for table in ("impressions", "impression_events"):
                        deleted += self._reader.execute(f"DELETE FROM {table} WHERE user_id = ?",
                                                        (user_id,)).rowcount
                    self._reader.execute("COMMIT")
                except BaseException:
                    self._reader.execute("ROLLBACK")
                    raise
            else:
                with self._reader.transaction():
                    for table in ("impressions", "impression_events"):
                        deleted += self._reader.execute(f"DELETE FROM {table} WHERE user_id = %s",
                                                        (user_id,)).rowcount
        return deleted

    # --- reads ---------------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return list(self._reader.execute(self._sql(sql), params).fetchall())

    def impressions(self) -> list[Impression]:
        """Every impression, in the order they were committed."""
        rows = self._query("SELECT request_id, user_id, arm, model, generation, items, teams, time "
                           "FROM impressions ORDER BY id")
        return [Impression(r[0], r[1], r[2], r[3], int(r[4]), tuple(json.loads(r[5])),
                           None if r[6] is None else tuple(json.loads(r[6])), float(r[7])) for r in rows]

    def attributions(self, types: Sequence[str] | None = None) -> list[Attribution]:
        """Every attributed event (of ``types``, default all), in commit order."""
        sql = "SELECT request_id, user_id, item_id, type, time, event_id FROM impression_events"
        params: tuple = ()
        if types:
            sql += f" WHERE type IN ({', '.join('?' for _ in types)})"
            params = tuple(types)
        rows = self._query(sql + " ORDER BY id", params)
        return [Attribution(r[0], r[1], r[2], r[3], float(r[4]), r[5]) for r in rows]

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM impressions")[0][0])

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything logged so far is committed."""
        self._submit_pending()
        self._writer.submit([]).result(timeout)

    def close(self) -> None:
        self._closed.set()
        self._ticker.join()
        self._submit_pending()
        self._writer.close()
        with self._lock, contextlib.suppress(Exception):
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
