"""Privacy a user can exercise: erasure, access, retention and pseudonyms (docs/privacy.md).

* **Erasure** (``DELETE /users/{id}``, ``recloop forget USER``): the user's rows are
  deleted from every table that holds user ids (:data:`USER_TABLES`) in one transaction
  that also records a *tombstone* (the SHA-256 of the stored id, never the id itself) in
  the ``erasures`` table, then the freed bytes are scrubbed (SQLite ``secure_delete`` and
  a WAL checkpoint; PostgreSQL ``VACUUM``). The service forgets the user's live state at
  once (every process within ``follow_seconds``); an artifact given to ``recloop forget
  --artifact`` is refitted without the user (their id, history and features are gone,
  and so is their influence on every weight), and every later ``retrain`` drops the rows
  of erased users from the artifact it starts from. Events that arrive for the same id
  *after* the erasure are new data of a returning user and are kept (or refused with
  ``refuse_erased``).
* **Access** (``GET /users/{id}/data``): everything stored about the user: their rows in
  the store, their live state, their training history in the served model.
* **Retention** (``retention_days``): events received longer ago are deleted, by a sweep
  when the service starts and every ``sweep_seconds`` (and ``recloop forget --expired``).
* **Pseudonyms** (``pseudonym_key_env``): user ids are replaced at ingestion by
  ``HMAC-SHA256(key, id)`` with a key from the environment, so raw ids never reach the
  disk; every lookup by raw id (recommend, export, delete) applies the same function.

The store's tables belong to :mod:`recloop.serve.store`; the tombstone table and the SQL
here are this module's, written with ``?`` placeholders for both backends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.errors import ConfigError, RecloopError
from recloop.serve.events import Event, StoredEvent
from recloop.serve.store import EventStore, PostgresEventStore, SQLiteEventStore

log = logging.getLogger("recloop.serve")

#: Tables of the store holding a user id, and the column: what erasure, export and the
#: verify scan cover. A module that adds a table with user ids registers it here.
USER_TABLES: dict[str, str] = {"events": "user_id",
                               # the answers a user was shown and the events attributed to them
                               # (recloop.serve.impressions), created when impressions are logged
                               "impressions": "user_id", "impression_events": "user_id"}
#: ``extra.json`` key of an artifact: how many tombstones of its store it has applied.
ERASURES_APPLIED = "erasures_applied"
ERASURES_SCHEMA = {
    "sqlite": """CREATE TABLE IF NOT EXISTS erasures (
        id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL, erased REAL NOT NULL,
        through_event INTEGER NOT NULL, rows INTEGER NOT NULL)""",
    "postgres": """CREATE TABLE IF NOT EXISTS erasures (
        id BIGSERIAL PRIMARY KEY, digest TEXT NOT NULL, erased DOUBLE PRECISION NOT NULL,
        through_event BIGINT NOT NULL, rows BIGINT NOT NULL)""",
}


class ErasedUserError(RecloopError):
    """An event for a user who asked to be forgotten, refused (``refuse_erased``)."""


@dataclass(frozen=True)
class PrivacySettings:
    """``[privacy]`` of a serve config.

    ``retention_days``: delete events received longer ago than this (0: keep them).
    ``sweep_seconds``: how often the service sweeps (it also sweeps when it starts).
    ``pseudonym_key_env``: the name of an environment variable holding the HMAC key;
    when set, user ids are pseudonymised before they are stored (empty: raw ids).
    ``refuse_erased``: refuse events for an erased id (default: a returning user's new
    events are stored as new data). ``follow_seconds``: how often a worker checks for
    erasures made by another process.
    """

    retention_days: float = 0.0
    sweep_seconds: float = 3600.0
    pseudonym_key_env: str = ""
    refuse_erased: bool = False
    follow_seconds: float = 1.0

    def __post_init__(self):
        if not (self.retention_days >= 0 and math.isfinite(self.retention_days)):
            raise ConfigError(f"privacy.retention_days must be 0 (keep) or more, got {self.retention_days}")
        if not self.sweep_seconds > 0 or not self.follow_seconds > 0:
            raise ConfigError("privacy.sweep_seconds and privacy.follow_seconds must be positive")


# --- pseudonyms ----------------------------------------------------------------------------------
PSEUDONYM_PREFIX = "h:"


class Pseudonyms:
    """``key(user_id)``: the id as it is stored: ``h:`` + the first 32 hex digits of
    HMAC-SHA256(key, id), or the id itself without a key. Keyed, so that nobody without
    the key can recompute it from a guessed id (a plain hash of a small id space can be
    reversed by trying every id)."""

    def __init__(self, key: bytes | None = None):
        self._key = key

    @classmethod
    def from_settings(cls, settings: PrivacySettings, environ: Mapping[str, str] | None = None) -> Pseudonyms:
        name = settings.pseudonym_key_env
        if not name:
            return cls(None)
        environ = os.environ if environ is None else environ
        value = environ.get(name, "")
        if len(value) < 16:
            raise ConfigError(f"privacy.pseudonym_key_env names ${name}, which is "
                              f"{'unset' if not value else 'shorter than 16 characters'}: set it to a long random "
                              "secret (e.g. `openssl rand -hex 32`); raw user ids are never stored without it")
        return cls(value.encode("utf-8"))

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def key(self, user_id: str) -> str:
        if self._key is None:
            return user_id
        digest = hmac.new(self._key, str(user_id).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def events(self, events: Sequence[Event]) -> list[Event]:
        if self._key is None:
            return list(events)
        return [dataclasses.replace(e, user_id=self.key(e.user_id)) for e in events]


def digest(stored_key: str) -> str:
    """The tombstone of a stored user key: its SHA-256 (the key itself is erased)."""
    return hashlib.sha256(str(stored_key).encode("utf-8", "surrogatepass")).hexdigest()


# --- store operations (both backends) ------------------------------------------------------------
@dataclass(frozen=True)
class Erasure:
    """What one erasure did."""

    erasure_id: int
    deleted: dict[str, int]  # table -> rows deleted
    through_event: int  # the last event id when it ran: later events are new data
    scrubbed: bool  # freed bytes overwritten and the WAL emptied (SQLite) / vacuumed (PostgreSQL)


def _backend(store: EventStore) -> str:
    if isinstance(store, SQLiteEventStore):
        return "sqlite"
    if isinstance(store, PostgresEventStore):
        return "postgres"
    raise ConfigError(f"privacy operations support the SQLite and PostgreSQL stores, not {type(store).__name__}")


def ensure_schema(store: EventStore) -> None:
    """Create the tombstone table if the store has none (idempotent)."""
    backend = _backend(store)
    if getattr(store, "_privacy_schema", False):
        return
    with store._lock:
        if backend == "sqlite":
            store._reader.execute(ERASURES_SCHEMA["sqlite"])
        else:
            with store._reader.transaction():
                store._reader.execute("SELECT pg_advisory_xact_lock(%s)", (store.WRITE_LOCK,))
                store._reader.execute(ERASURES_SCHEMA["postgres"])
    store._privacy_schema = True


def _transaction(store: EventStore, body):
    """Run ``body(execute)`` in one transaction holding the store's write lock (no event
    commits in between); ``execute(sql, params)`` takes ``?`` placeholders and returns
    the cursor. Returns what ``body`` returns."""
    backend = _backend(store)
    with store._lock:
        connection = store._reader
        if backend == "sqlite":
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = body(lambda sql, params=(): connection.execute(sql, params))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return result
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (store.WRITE_LOCK,))
            return body(lambda sql, params=(): connection.execute(sql.replace("?", "%s"), params))


def scrub(store: EventStore) -> bool:
    """Overwrite what deleted rows left on disk. SQLite: with ``secure_delete`` the freed
    pages were zeroed by the delete itself; the checkpoint copies them into the database
    file and truncates the WAL, which still held the rows' older page images.
    PostgreSQL: ``VACUUM`` reclaims the dead tuples (their bytes are reused, not zeroed:
    see docs/privacy.md). False when another connection kept the checkpoint from
    finishing (it completes at the next checkpoint)."""
    backend = _backend(store)
    with store._lock:
        if backend == "sqlite":
            busy, _, _ = store._reader.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        for table in USER_TABLES:
            store._reader.execute(f"VACUUM {table}")  # autocommit connection: outside a transaction
        return True


def _secure_delete(store: EventStore) -> None:
    if isinstance(store, SQLiteEventStore):
        with store._lock:
            store._reader.execute("PRAGMA secure_delete = ON")


def erase_user(store: EventStore, stored_key: str) -> Erasure:
    """Delete every row of ``stored_key`` (the id as stored: after pseudonymisation) from
    the :data:`USER_TABLES` and record its tombstone, in one transaction; then scrub."""
    ensure_schema(store)
    _secure_delete(store)
    tables = [t for t in USER_TABLES if _has_table(store, t)]

    def body(execute):
        deleted = {t: execute(f"DELETE FROM {t} WHERE {USER_TABLES[t]} = ?", (stored_key,)).rowcount for t in tables}
        through = int(execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        row = execute("INSERT INTO erasures (digest, erased, through_event, rows) VALUES (?, ?, ?, ?) RETURNING id",
                      (digest(stored_key), time.time(), through, sum(deleted.values()))).fetchone()
        return deleted, through, int(row[0])

    deleted, through, erasure_id = _transaction(store, body)
    return Erasure(erasure_id, deleted, through, scrub(store))


def _has_table(store: EventStore, table: str) -> bool:
    if isinstance(store, SQLiteEventStore):
        return bool(store._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)))
    return bool(store._query("SELECT 1 FROM information_schema.tables WHERE table_name = ?", (table,)))


def user_rows(store: EventStore, stored_key: str) -> dict[str, list[dict]]:
    """Every row of ``stored_key`` in the :data:`USER_TABLES`, as JSON-ready dicts."""
    out = {}
    for table, column in USER_TABLES.items():
        if not _has_table(store, table):
            continue
        names = [r[0] for r in _columns(store, table)]
        rows = store._query(f"SELECT {', '.join(names)} FROM {table} WHERE {column} = ? ORDER BY id", (stored_key,))
        out[table] = [{n: (v if not isinstance(v, (bytes, memoryview)) else bytes(v).hex()) for n, v in zip(names, r)}
                      for r in rows]
    return out


def _columns(store: EventStore, table: str) -> list[tuple]:
    if isinstance(store, SQLiteEventStore):
        return [(r[1],) for r in store._query(f"PRAGMA table_info({table})")]
    return store._query("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                        "ORDER BY ordinal_position", (table,))


def stored_events(store: EventStore, stored_key: str, through: int) -> list[StoredEvent]:
    """The events of ``stored_key`` with ``id <= through``, in id order."""
    rows = store._query("SELECT id, user_id, item_id, type, value, time, event_id FROM events "
                        "WHERE user_id = ? AND id <= ? ORDER BY id", (stored_key, int(through)))
    return [StoredEvent(int(r[0]), r[1], r[2], r[3], None if r[4] is None else float(r[4]), float(r[5]), r[6])
            for r in rows]


def erasures_after(store: EventStore, after: int = 0) -> list[tuple[int, str, float, int]]:
    """Tombstones with ``id > after``: ``(id, digest, erased time, through_event)``."""
    ensure_schema(store)
    rows = store._query("SELECT id, digest, erased, through_event FROM erasures WHERE id > ? ORDER BY id", (after,))
    return [(int(r[0]), r[1], float(r[2]), int(r[3])) for r in rows]


def last_erasure(store: EventStore) -> int:
    ensure_schema(store)
    return int(store._query("SELECT COALESCE(MAX(id), 0) FROM erasures")[0][0])


def delete_expired(store: EventStore, retention_days: float, now: float | None = None) -> tuple[int, list[str]]:
    """Delete the events received more than ``retention_days`` ago; ``(rows deleted,
    user keys that lost events)``."""
    if retention_days <= 0:
        return 0, []
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    _secure_delete(store)
    users = [r[0] for r in store._query("SELECT DISTINCT user_id FROM events WHERE received < ?", (cutoff,))]
    if not users:
        return 0, []
    deleted = _transaction(store, lambda execute: execute("DELETE FROM events WHERE received < ?",
                                                          (cutoff,)).rowcount)
    scrub(store)
    return deleted, users


# --- artifacts -----------------------------------------------------------------------------------
def without_users(model, stored_keys: Iterable[str] = (), digests: Iterable[str] = ()):
    """``(history, user_features, n_removed)``: the model's training log and user
    features without the users named by key or by tombstone digest."""
    history = model.history_
    keys, wanted = set(stored_keys), set(digests)
    ids = history.users.to_list()
    drop = np.fromiter((u in keys or (wanted and digest(u) in wanted) for u in ids), dtype=bool, count=len(ids))
    if not drop.any():
        return history, model.user_features_, 0
    keep = np.flatnonzero(~drop)
    log = history.remap(keep, np.arange(history.n_items))
    features = model.user_features_
    if features is not None:
        features = features.aligned_to(history.users).take(keep)
    return log, features, int(drop.sum())


def refit_without(artifact: str | Path, store: EventStore | None, stored_keys: Iterable[str] = (),
                  output: str | Path | None = None) -> tuple[Path, int]:
    """Rewrite ``artifact`` (or write ``output``) refitted without the users ``stored_keys``
    and without every user erased in ``store`` since the artifact was written: same model
    class, same hyperparameters and seed, the remaining log. ``(path, users removed)``;
    an artifact holding none of them is left as it is."""
    from recloop.artifact import load_artifact

    loaded = load_artifact(Path(artifact))
    model = loaded.model
    pending, mark = [], int(loaded.extra.get(ERASURES_APPLIED, 0))
    if store is not None:
        tombstones = erasures_after(store, _applied(loaded.extra, store))
        pending = [t[1] for t in tombstones]
        mark = last_erasure(store)
    log, user_features, removed = without_users(model, stored_keys, pending)
    extra = dict(loaded.extra)
    if store is not None:
        extra[ERASURES_APPLIED] = mark
        extra["erasures_store"] = store.store_id
    target = Path(output or artifact)
    if removed == 0:
        if target.resolve() != Path(artifact).resolve():
            shutil.copytree(artifact, target, dirs_exist_ok=True)
        _write_extra(target, extra)
        return target, 0
    fresh = type(model)(model.config)
    fresh.fit(log, item_features=model.item_features_, user_features=user_features)
    extra.pop("retrain", None)  # it named the source store and artifact; the refit is described here
    extra["forget"] = {"users_removed": removed, "interactions": len(log), "time": time.time()}
    from recloop.serve.retrain import carried_metrics

    path = fresh.save(target, metrics=carried_metrics(loaded.metrics, artifact), extra=extra)
    return path, removed


def _applied(extra: dict, store: EventStore) -> int:
    """The tombstones of ``store`` an artifact has applied (0 for another store's mark)."""
    if extra.get("erasures_store") not in (None, store.store_id):
        return 0
    return int(extra.get(ERASURES_APPLIED, 0))


def _write_extra(path: Path, extra: dict) -> None:
    file = path / "extra.json"
    handle, temp = tempfile.mkstemp(dir=path, prefix=".extra-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(extra, out, indent=2)
    os.replace(temp, file)


def apply_erasures(model, store: EventStore, extra: dict) -> tuple[int, int]:
    """Drop from ``model.history_`` (and its user features) every user erased in
    ``store`` after the artifact ``extra`` came from: what ``retrain`` starts from.
    Returns ``(users removed, the new erasure mark)`` for the new artifact's extra."""
    tombstones = erasures_after(store, _applied(extra, store))
    mark = tombstones[-1][0] if tombstones else _applied(extra, store)
    if not tombstones:
        return 0, mark
    log, features, removed = without_users(model, (), [t[1] for t in tombstones])
    if removed:
        model.history_, model.user_features_ = log, features
    return removed, mark


# --- verification --------------------------------------------------------------------------------
@dataclass
class Trace:
    """One place the user was still found."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


#: Ids shorter than this are searched for by structure only (users.json entries, table
#: rows): as raw bytes a short id ("196") turns up inside unrelated numbers.
MIN_BYTE_SCAN = 6


def verify(user_id: str, store: EventStore | None, artifacts: Sequence[str | Path] = (),
           pseudonyms: Pseudonyms | None = None) -> list[Trace]:
    """Every trace of ``user_id`` (raw, and its pseudonym) left in ``store`` and the
    ``artifacts``: rows in the user tables, the id in an artifact's users, history or
    user features, and (for ids of :data:`MIN_BYTE_SCAN` characters or more) the id's
    bytes anywhere in the SQLite files or the artifact files."""
    pseudonyms = pseudonyms or Pseudonyms(None)
    keys = list(dict.fromkeys([str(user_id), pseudonyms.key(str(user_id))]))
    traces: list[Trace] = []
    if store is not None:
        for key in keys:
            for table, rows in user_rows(store, key).items():
                if rows:
                    traces.append(Trace(f"store table {table}", f"{len(rows)} rows of user {key!r}"))
        if isinstance(store, SQLiteEventStore):
            scrub(store)
            for file in (store.path, Path(f"{store.path}-wal")):
                traces += _byte_traces(file, keys, "store file")
    for artifact in artifacts:
        traces += _artifact_traces(Path(artifact), keys)
    return traces


def _byte_traces(file: Path, keys: Sequence[str], label: str) -> list[Trace]:
    if not file.is_file():
        return []
    data = file.read_bytes()
    out = []
    for key in keys:
        if len(key) >= MIN_BYTE_SCAN:
            count = data.count(key.encode("utf-8", "surrogatepass"))
            if count:
                out.append(Trace(f"{label} {file}", f"the bytes of {key!r} occur {count} times"))
    return out


def _artifact_traces(path: Path, keys: Sequence[str]) -> list[Trace]:
    out = []
    users_file = path / "users.json"
    if users_file.is_file():
        users = json.loads(users_file.read_text())
        for key in keys:
            if key in users:
                out.append(Trace(f"artifact {path}", f"users.json lists {key!r} (with its training history)"))
    features = path / "user_features.json"
    if features.is_file():
        ids = json.loads(features.read_text()).get("ids", [])
        for key in keys:
            if key in ids:
                out.append(Trace(f"artifact {path}", f"user_features.json has a row for {key!r}"))
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        out += _byte_traces(file, keys, "artifact file")
    return out


# --- the command line ------------------------------------------------------------------------------
def forget_command(user: str | None, db: str | None, artifacts: Sequence[str], verify_only: bool = False,
                   expired: bool = False, retention_days: float = 0.0, pseudonym_key_env: str = "",
                   out=None) -> int:
    """``recloop forget``: erase ``user`` (store, then each artifact refitted without
    them), ``--verify`` (report every trace; 1 if any), or ``--expired`` (retention)."""
    import sys

    from recloop.serve.store import default_db_path, open_store

    out = out or sys.stderr
    if expired == bool(user):
        raise ConfigError("give a USER to erase or verify, or --expired (with --retention-days), not both")
    if verify_only and not user:
        raise ConfigError("--verify needs the USER to look for")
    if expired and retention_days <= 0:
        raise ConfigError("--expired needs --retention-days N (N > 0)")
    url = db or (default_db_path(artifacts[0]) if artifacts else None)
    if url is None:
        raise ConfigError("give --db (the service's event store) or an --artifact whose default store to use")
    if "://" not in str(url) and not Path(url).is_file():
        raise ConfigError(f"no event store at {url}: give the --db that `recloop serve` wrote to")
    pseudonyms = Pseudonyms.from_settings(PrivacySettings(pseudonym_key_env=pseudonym_key_env))
    with open_store(url) as store:
        if expired:
            deleted, users = delete_expired(store, retention_days)
            print(f"deleted {deleted} events older than {retention_days:g} days ({len(users)} users)", file=out)
            return 0
        if verify_only:
            traces = verify(user, store, artifacts, pseudonyms)
            for trace in traces:
                print(f"trace: {trace}", file=out)
            print(f"{len(traces)} traces of user {user!r} in the store and {len(artifacts)} artifacts", file=out)
            return 1 if traces else 0
        key = pseudonyms.key(user)
        erasure = erase_user(store, key)
        print(f"erased user {user!r} from the store: {erasure.deleted} rows deleted (erasure {erasure.erasure_id}"
              f"{'' if erasure.scrubbed else '; the WAL checkpoint is pending: another process reads the store'})",
              file=out)
        for artifact in artifacts:
            path, removed = refit_without(artifact, store, list(dict.fromkeys([key, user])))  # raw too
            print(f"{path}: " + (f"refitted without {removed} erased users" if removed else "did not hold the user"),
                  file=out)
        traces = verify(user, store, artifacts, pseudonyms)
        for trace in traces:
            print(f"trace left: {trace}", file=out)
        return 1 if traces else 0


# --- the service's side ----------------------------------------------------------------------------
class PrivacyGuard:
    """What a :class:`~recloop.serve.service.RecommendationService` needs: pseudonyms at
    ingestion and lookup, erasure and export against its live state, the retention sweep
    and following other processes' erasures."""

    def __init__(self, settings: PrivacySettings, store: EventStore, environ: Mapping[str, str] | None = None):
        self.settings, self.store = settings, store
        self.pseudonyms = Pseudonyms.from_settings(settings, environ)
        ensure_schema(store)
        self._seen_erasure = last_erasure(store)
        self._next_follow = 0.0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.swept = 0  # events deleted by retention sweeps of this process

    # --- ids -----------------------------------------------------------------------------------
    def key(self, user_id: str) -> str:
        """The id as the store and the live state hold it."""
        return self.pseudonyms.key(str(user_id))

    def ingest(self, events: Sequence[Event]) -> list[Event]:
        """Events as they are stored: pseudonymised; refused for erased users when configured."""
        stored = self.pseudonyms.events(events)
        if self.settings.refuse_erased and stored:
            gone = {t[1] for t in erasures_after(self.store, 0)}
            for raw, event in zip(events, stored):
                if digest(event.user_id) in gone:
                    raise ErasedUserError(f"user {raw.user_id!r} was erased at their request; events for this id "
                                          "are refused (privacy.refuse_erased)")
        return stored

    # --- erasure and access ----------------------------------------------------------------------
    def forget(self, state, user_id: str) -> dict:
        """Erase ``user_id`` from the store and from ``state`` (the live state) at once."""
        key = self.key(user_id)
        erasure = erase_user(self.store, key)
        with self._lock:
            state.hide_model_users([key])
            self.rebuild(state, [key])
            self._seen_erasure = max(self._seen_erasure, erasure.erasure_id)
        log.info("erased a user: %s rows (erasure %d)", erasure.deleted, erasure.erasure_id)
        return {"user_id": str(user_id), "deleted": erasure.deleted, "erasure_id": erasure.erasure_id,
                "through_event": erasure.through_event, "scrubbed": erasure.scrubbed,
                "in_model": key in state.model.users_}

    def follow(self, state) -> None:
        """Apply erasures made by other processes to ``state`` (at most every
        ``follow_seconds``; tombstones carry digests, so model users are matched by digest)."""
        now = time.monotonic()
        if now < self._next_follow:
            return
        self._next_follow = now + self.settings.follow_seconds
        latest = last_erasure(self.store)
        if latest <= self._seen_erasure:
            return
        with self._lock:
            tombstones = erasures_after(self.store, self._seen_erasure)
            wanted = {t[1] for t in tombstones}
            live = [key for key in list(state.users) if digest(key) in wanted]
            self.hide_erased(state, wanted)
            self.rebuild(state, live)
            self._seen_erasure = max(self._seen_erasure, latest)

    def on_new_state(self, state) -> None:
        """A freshly loaded state: hide the model users erased after its artifact was written
        (the live users were replayed from the store, where their erased events are gone)."""
        pending = erasures_after(self.store, _applied(state.artifact.extra, self.store))
        if pending:
            self.hide_erased(state, {t[1] for t in pending})

    @staticmethod
    def hide_erased(state, digests: set[str]) -> None:
        state.hide_model_users([u for u in state.model.users_.to_list() if digest(u) in digests])

    def rebuild(self, state, keys: Iterable[str]) -> None:
        """Rebuild the live state of ``keys`` from what the store holds now."""
        through = state.last_event_id
        for key in keys:
            state.rebuild_user(key, stored_events(self.store, key, through))

    def export(self, state, user_id: str) -> dict:
        """Everything stored about ``user_id`` (see the module docstring)."""
        key = self.key(user_id)
        rows = user_rows(self.store, key)
        model = state.model
        in_model = key in model.users_ and key not in state.hidden_users
        history = []
        if in_model:
            items = model.history_.histories(np.asarray([model.users_.index(key)])).item_idx
            history = model.items_.ids[items].tolist()
        features = {}
        if in_model and model.user_features_ is not None and key in model.user_features_.ids:
            row = model.user_features_.ids.index(key)
            features = {name: model.user_features_.categorical[name].labels(row)
                        for name in model.user_features_.categorical}
        live = state.users.get(key)
        catalog = state.catalog
        return {"user_id": str(user_id), "stored_as": key, "pseudonymised": self.pseudonyms.enabled,
                "store": rows,
                "live": None if live is None else {
                    "events": live.n_events, "positives": [catalog.id(i) for i in live.positives],
                    "known_items": sorted(catalog.id(i) for i in live.known)},
                "model": {"artifact": str(state.path), "in_training_data": in_model, "history": history,
                          "features": features}}

    # --- retention -------------------------------------------------------------------------------
    def start(self, service) -> None:
        """Sweep now and then every ``sweep_seconds`` (when a retention period is set)."""
        if self.settings.retention_days <= 0:
            return
        self.sweep(service)
        self._sweeper = threading.Thread(target=self._sweep_loop, args=(service,), name="recloop-retention",
                                         daemon=True)
        self._sweeper.start()

    def sweep(self, service) -> int:
        deleted, users = delete_expired(self.store, self.settings.retention_days)
        if deleted:
            state = service.state
            with self._lock:
                self.rebuild(state, users)
            self.swept += deleted
            log.info("retention: deleted %d events older than %g days", deleted, self.settings.retention_days)
        return deleted

    def _sweep_loop(self, service) -> None:
        while not self._closed.wait(self.settings.sweep_seconds):
            try:
                self.sweep(service)
            except Exception:
                log.exception("retention sweep failed; retrying at the next one")

    def close(self) -> None:
        self._closed.set()


__all__ = [
    "ERASURES_APPLIED",
    "USER_TABLES",
    "ErasedUserError",
    "Erasure",
    "PrivacyGuard",
    "PrivacySettings",
    "Pseudonyms",
    "Trace",
    "apply_erasures",
    "delete_expired",
    "digest",
    "erase_user",
    "refit_without",
    "user_rows",
    "verify",
]
