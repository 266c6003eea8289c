"""The event store: the durable log of feedback events and items added while serving.

Two backends behind one interface: SQLite in WAL mode (embedded, the default) and
PostgreSQL (``postgresql://`` URL, psycopg 3) for deployments that outgrow one machine.
Every statement is parameterised.

Durability contract: :meth:`EventStore.append` returns only after the transaction
holding the events has committed (SQLite ``synchronous=FULL`` by default: the WAL is
fsynced). The service answers 2xx after that, so an acknowledged event survives a
SIGKILL of the server. Writes go through one :class:`GroupCommitter` thread per
process, which puts every append waiting at that moment into one transaction (group
commit): one fsync serves many concurrent requests. Events are checked before they
are queued, and if a shared transaction still fails, each request's events are retried
in a transaction of their own: one request's bad event never fails its neighbours.

The store is also how several server processes stay consistent: event and item ids
only grow, and each process tails both tables (``events_after``, ``items_after``).
To make "only grow" true for readers, inserts are serialised across processes (SQLite's
write lock; a transaction-scoped advisory lock on PostgreSQL), so no row with a smaller
id can commit after a reader has seen a larger one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

import numpy as np

from recloop.errors import ConfigError, DataError
from recloop.serve.events import Event, StoredEvent, check_event

#: Where ``default_db_path`` puts the event databases when ``RECLOOP_HOME`` is set.
HOME_ENV = "RECLOOP_HOME"
#: The ``meta`` key of the store's own random id (see :attr:`EventStore.store_id`).
STORE_ID = "store_id"


def default_db_path(artifact: str | Path | None = None) -> Path:
    """The default SQLite event store of the artifact folder ``artifact``:
    ``events/<folder name>-<hash of its absolute path>.db`` under ``$RECLOOP_HOME``, else
    ``$XDG_DATA_HOME/recloop``, else ``~/.local/share/recloop`` (``events.db`` there
    without an artifact).

    A data directory rather than the working directory, so that serving from a
    checkout never leaves a database in the repository; one store per artifact folder,
    so that the events of one model (one dataset's ids) never reach another's. ``retrain
    ART --output ART`` keeps the folder, hence the store. The folder is created when the
    store opens (not here)."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
    else:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").expanduser() / "recloop"
    if artifact is None:
        return root / "events.db"
    folder = Path(artifact).expanduser().resolve()
    digest = hashlib.sha1(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return root / "events" / f"{folder.name or 'artifact'}-{digest}.db"


@dataclass(frozen=True)
class NewItem:
    """An item added while serving: text for the encoder, categorical features, and the
    text embedding (stored so that every process and ``retrain`` reuse it)."""

    item_id: str
    text: str
    features: dict[str, list[str]] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    title: str | None = None


@dataclass(frozen=True)
class StoredItem(NewItem):
    id: int = 0
    created: float = 0.0


@dataclass(frozen=True)
class StoreHead:
    """Where the tables end now: what a tailing reader compares with its position."""

    last_event_id: int
    last_item_id: int
    generation: int  # bumped by every model reload (cross-process reload signal)


class ItemExistsError(DataError):
    """``POST /items`` for an id the store already holds."""


# --- group commit ----------------------------------------------------------------------------------
class GroupCommitter:
    """One writer thread: appends queued while a commit runs are committed together.

    ``write_batch(events) -> inserted flags`` runs in the thread, inside which the
    backend opens its own connection (``connect``). Each caller's future resolves with
    how many of its events were new (the rest were duplicates of a known ``event_id``)
    once the transaction has committed, or with the error that rolled it back.
    """

    def __init__(self, connect: Callable[[], Any], write_batch: Callable[[Any, list[Event]], list[bool]],
                 max_rows: int = 10_000, name: str = "recloop-event-writer"):
        self._connect, self._write_batch, self._max_rows = connect, write_batch, max_rows
        self._connection = None
        self._queue: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, events: Sequence[Event]) -> Future:
        future: Future = Future()
        if not self._thread.is_alive():
            future.set_exception(RuntimeError("the event store is closed"))
            return future
        self._queue.put((list(events), future))
        return future

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            self._connection = self._connect()
        except BaseException as error:  # noqa: BLE001 - reported to the constructor
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = [first], False
                rows = len(first[0])
                while rows < self._max_rows:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                    rows += len(more[0])
                self._commit(batch)
                if stop:
                    return
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to release
                self._connection.close()
            self._connection = None

    def _write(self, events: list[Event]) -> list[bool]:
        """One transaction; on failure nothing of it is stored and the connection is
        dropped (a broken one is replaced on the next write: a database restart costs
        the requests in flight only)."""
        try:
            if self._connection is None:  # lost with an earlier failure: reconnect
                self._connection = self._connect()
            return self._write_batch(self._connection, events)
        except BaseException:
            self._close_connection()
            raise

    def _commit(self, batch) -> None:
        events = [e for chunk, _ in batch for e in chunk]
        try:
            inserted = self._write(events)
        except BaseException as error:  # noqa: BLE001 - handed to the callers' futures
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            # One request's events may be what the database refused: commit each request
            # alone, so that only the request at fault fails, never its neighbours.
            for chunk, future in batch:
                try:
                    future.set_result(sum(self._write(chunk)))
                except BaseException as alone:  # noqa: BLE001 - handed to this caller's future
                    future.set_exception(alone)
            return
        start = 0
        for chunk, future in batch:
            future.set_result(sum(inserted[start:start + len(chunk)]))
            start += len(chunk)


# --- the interface ---------------------------------------------------------------------------------
class EventStore(ABC):
    """Durable log of events and served-time items; see the module docstring."""

    url: str

    def append(self, events: Sequence[Event], timeout: float | None = 60.0) -> int:
        """Store ``events`` durably; return how many were new. Blocks until committed."""
        return self.submit(events).result(timeout)

    _writer: GroupCommitter

    def submit(self, events: Sequence[Event]) -> Future:
        """Queue ``events`` for the next group commit; the future resolves after it.

        Each event is checked first (:func:`~recloop.serve.events.check_event`: finite
        time and value in range, encodable ids): a bad one raises
        :class:`~recloop.errors.DataError` here, before anything is queued, so it can
        never fail the transaction shared with other requests' events."""
        for event in events:
            check_event(event)
        return self._writer.submit(events)

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a read-only query written with ``?`` placeholders (both backends)."""

    def events_after(self, after_id: int, limit: int = 10_000) -> list[StoredEvent]:
        """Events with ``id > after_id`` in id order, at most ``limit``."""
        rows = self._query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                           (int(after_id), int(limit)))
        return [_row_event(r) for r in rows]

    def count(self) -> int:
        """Number of stored events."""
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def head(self) -> StoreHead:
        """The last event id, last item id and reload generation, in one round trip."""
        row = self._query("SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM items), "
                          "(SELECT value FROM meta WHERE key = ?)", ("generation",))[0]
        return StoreHead(int(row[0]), int(row[1]), int(row[2] or 0))

    @abstractmethod
    def add_item(self, item: NewItem) -> int:
        """Store a new item durably; :class:`ItemExistsError` if its id is taken."""

    def items_after(self, after_id: int) -> list[StoredItem]:
        """Items with ``id > after_id`` in id order."""
        rows = self._query(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id > ? ORDER BY id", (int(after_id),))
        return [_row_item(r) for r in rows]

    @property
    def store_id(self) -> str:
        """A random id given to the store when it was created: an artifact records the id
        of the store its ``events_through`` counts in, so that a service never skips the
        events of another store."""
        return self.get_meta(STORE_ID) or ""

    def get_meta(self, key: str) -> str | None:
        """A small named value (the artifact the service should run, ...)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    @abstractmethod
    def set_meta(self, key: str, value: str, bump_generation: bool = False) -> int:
        """Set a named value; with ``bump_generation`` also increment the reload
        generation in the same transaction and return it."""

    @abstractmethod
    def close(self) -> None:
        """Flush pending writes and release connections."""

    def iter_events(self, after_id: int = 0, batch: int = 50_000):
        """Every event with ``id > after_id``, in id order, read in batches."""
        while True:
            rows = self.events_after(after_id, batch)
            if not rows:
                return
            yield from rows
            after_id = rows[-1].id

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(url: str | Path | None = None, *, synchronous: str = "full") -> EventStore:
    """Open (creating if needed) the store at ``url``.

    ``url``: a file path or ``sqlite:///path/to/events.db`` (SQLite), or
    ``postgresql://user@host:port/db`` (PostgreSQL); None or empty: :func:`default_db_path`. ``synchronous`` applies to
    SQLite: ``full`` (fsync every commit: survives power loss) or ``normal`` (survives
    a killed process, may lose the last commits on power loss; faster).
    """
    text = str(url or default_db_path())
    scheme = urlparse(text).scheme
    if scheme in ("postgresql", "postgres"):
        return PostgresEventStore(text)
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
        if not text.startswith("sqlite:///"):
            raise ConfigError(f"SQLite URL {text!r} must look like sqlite:///relative.db or sqlite:////abs/path.db")
        return SQLiteEventStore(text[len("sqlite:///"):], synchronous=synchronous)
    if scheme and len(scheme) > 1:  # not a Windows drive letter
        raise ConfigError(f"unsupported event store URL {text!r}: use a file path, sqlite:///PATH or "
                          "postgresql://USER@HOST:PORT/DB")
    return SQLiteEventStore(text, synchronous=synchronous)


def _row_event(row) -> StoredEvent:
    return StoredEvent(int(row[0]), row[1], row[2], row[3], None if row[4] is None else float(row[4]),
                       float(row[5]), row[6])


def _row_item(row) -> StoredItem:
    embedding = None
    if row[4] is not None:
        embedding = np.frombuffer(bytes(row[4]), dtype=np.float32).copy()
    return StoredItem(item_id=row[1], text=row[2], features=json.loads(row[3]), embedding=embedding,
                      title=row[5], id=int(row[0]), created=float(row[6]))


def _embedding_bytes(item: NewItem) -> bytes | None:
    return None if item.embedding is None else np.ascontiguousarray(item.embedding, dtype=np.float32).tobytes()


_EVENT_COLUMNS = "id, user_id, item_id, type, value, time, event_id"
_ITEM_COLUMNS = "id, item_id, text, features, embedding, title, created"


# --- SQLite ------------------------------------------------------------------------------------------
class SQLiteEventStore(EventStore):
    """SQLite in WAL mode: readers never block the writer, one fsync per group commit."""

    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL, item_id TEXT NOT NULL, type TEXT NOT NULL,
            value REAL, time REAL NOT NULL, event_id TEXT UNIQUE, received REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS items (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, features TEXT NOT NULL,
            embedding BLOB, title TEXT, created REAL NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    INSERT_EVENT = ("INSERT INTO events (user_id, item_id, type, value, time, event_id, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING")

    def __init__(self, path: str | Path, synchronous: str = "full"):
        if synchronous.lower() not in ("full", "normal", "extra"):
            raise ConfigError(f"SQLite synchronous must be 'full', 'extra' or 'normal', got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path.resolve()}"
        self._synchronous = synchronous.upper()
        self._lock = threading.Lock()
        self._reader = self._connect()
        with self._lock:
            self._reader.execute("PRAGMA journal_mode=WAL")
            for statement in self.SCHEMA:
                self._reader.execute(statement)
            self._reader.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                 (STORE_ID, uuid.uuid4().hex))
        self._writer = GroupCommitter(self._connect, self._write_events)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        return connection

    def _write_events(self, connection: sqlite3.Connection, events: list[Event]) -> list[bool]:
        received = time.time()
        inserted = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for e in events:
                cursor = connection.execute(self.INSERT_EVENT, (e.user_id, e.item_id, e.type, e.value,
                                                                received if e.time is None else e.time,
                                                                e.event_id, received))
                inserted.append(cursor.rowcount == 1)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return inserted

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._reader.execute(sql, params).fetchall()

    def add_item(self, item: NewItem) -> int:
        with self._lock:
            try:
                cursor = self._reader.execute(
                    "INSERT INTO items (item_id, text, features, embedding, title, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (item.item_id, item.text, json.dumps(item.features), _embedding_bytes(item), item.title,
                     time.time()))
            except sqlite3.IntegrityError:
                raise ItemExistsError(f"item id {item.item_id!r} already exists in the event store") from None
            return int(cursor.lastrowid)

    def set_meta(self, key: str, value: str, bump_generation: bool = False) -> int:
        with self._lock:
            self._reader.execute("BEGIN IMMEDIATE")
            try:
                self._reader.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
                if bump_generation:
                    self._reader.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT (key) "
                                         "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
                row = self._reader.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                self._reader.execute("COMMIT")
            except BaseException:
                self._reader.execute("ROLLBACK")
                raise
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._reader.close()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"


# --- PostgreSQL ----------------------------------------------------------------------------------------
def _pg(sql: str) -> str:
    """psycopg's placeholder is ``%s``; the SQL here is written with ``?`` like SQLite's."""
    return sql.replace("?", "%s")


class PostgresEventStore(EventStore):
    """PostgreSQL through psycopg 3; the same tables and the same contract as SQLite."""

    WRITE_LOCK = 7_240_001  # pg_advisory_xact_lock key: serialises inserts so ids commit in order
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS events (
            id BIGSERIAL PRIMARY KEY,
            user_id TEXT NOT NULL, item_id TEXT NOT NULL, type TEXT NOT NULL,
            value DOUBLE PRECISION, time DOUBLE PRECISION NOT NULL, event_id TEXT UNIQUE,
            received DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS items (
            id BIGSERIAL PRIMARY KEY,
            item_id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, features TEXT NOT NULL,
            embedding BYTEA, title TEXT, created DOUBLE PRECISION NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    INSERT_EVENT = _pg("INSERT INTO events (user_id, item_id, type, value, time, event_id, received) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING id")

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("a postgresql:// event store needs psycopg 3: pip install 'psycopg[binary]' "
                              "(or recloop[serve])") from None
        self._psycopg = psycopg
        self.url = url
        self._lock = threading.Lock()
        self._reader = self._connect()
        with self._lock, self._reader.transaction():
            self._reader.execute("SELECT pg_advisory_xact_lock(%s)", (self.WRITE_LOCK,))
            for statement in self.SCHEMA:
                self._reader.execute(statement)
            self._reader.execute("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                                 (STORE_ID, uuid.uuid4().hex))
        self._writer = GroupCommitter(self._connect, self._write_events)

    def _connect(self):
        try:
            return self._psycopg.connect(self.url, autocommit=True)
        except self._psycopg.OperationalError as error:
            raise ConfigError(f"cannot connect to the event store at {_redact(self.url)}: {error}".strip()) from None

    def _write_events(self, connection, events: list[Event]) -> list[bool]:
        received = time.time()
        rows = [(e.user_id, e.item_id, e.type, e.value, received if e.time is None else e.time, e.event_id, received)
                for e in events]
        inserted = []
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.WRITE_LOCK,))
            cursor.executemany(self.INSERT_EVENT, rows, returning=True)
            while True:  # one result set per row: empty where ON CONFLICT skipped it
                inserted.append(cursor.fetchone() is not None)
                if not cursor.nextset():
                    break
        return inserted

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._reader.execute(_pg(sql), params).fetchall()
            except self._psycopg.OperationalError:
                # The server restarted or dropped us: reads are idempotent, retry once.
                self._reader.close()
                self._reader = self._connect()
                return self._reader.execute(_pg(sql), params).fetchall()

    def add_item(self, item: NewItem) -> int:
        with self._lock, self._reader.transaction():
            self._reader.execute("SELECT pg_advisory_xact_lock(%s)", (self.WRITE_LOCK,))
            row = self._reader.execute(_pg(
                "INSERT INTO items (item_id, text, features, embedding, title, created) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (item_id) DO NOTHING RETURNING id"),
                (item.item_id, item.text, json.dumps(item.features), _embedding_bytes(item), item.title,
                 time.time())).fetchone()
        if row is None:
            raise ItemExistsError(f"item id {item.item_id!r} already exists in the event store")
        return int(row[0])

    def set_meta(self, key: str, value: str, bump_generation: bool = False) -> int:
        with self._lock, self._reader.transaction():
            self._reader.execute(_pg("INSERT INTO meta (key, value) VALUES (?, ?) "
                                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value"), (key, value))
            if bump_generation:
                self._reader.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT (key) "
                                     "DO UPDATE SET value = (CAST(meta.value AS BIGINT) + 1)::TEXT")
            row = self._reader.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._reader.close()

    def __repr__(self) -> str:
        return f"PostgresEventStore({_redact(self.url)!r})"


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
