"""What one loaded model knows right now: the artifact, the catalog, and the live
histories built from the event log since the artifact was written.

A :class:`LiveState` is built from an artifact plus the event store (replaying the
events the artifact has not folded in), then kept current by applying new events and
items as the service tails the store. A model reload builds a fresh state off to the
side and swaps it in whole, so a request always sees one consistent state; within a
state, the catalog is an immutable snapshot swapped by reference when an item arrives
(after the item is in the index and the content embeddings), so a request that read
``state.catalog`` once sees one consistent catalog.

Plain data: the artifact, the catalog, the candidate stage's index, the cold-start
embeddings and the live users. The pipeline's stages keep their own caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recloop.artifact import Artifact, load_artifact
from recloop.data.interactions import UserHistories
from recloop.errors import UnknownIdError
from recloop.models.base import UNKNOWN_USER
from recloop.serve.catalog import Catalog
from recloop.serve.coldstart import ColdStart, TextEmbedder
from recloop.serve.events import EventPolicy, StoredEvent
from recloop.serve.retrieval import CandidateStage, RetrievalConfig
from recloop.serve.store import EventStore, StoredItem

#: ``extra.json`` key of an artifact written by ``recloop retrain``: the last event id it folded in.
EVENTS_THROUGH = "events_through"
#: The id of the store that ``events_through`` counts in (``EventStore.store_id``).
EVENTS_STORE = "events_store"
log = logging.getLogger("recloop.serve")


def events_through(extra: dict, store: EventStore) -> int:
    """The last event of ``store`` already folded into an artifact (``extra.json``): its
    ``events_through`` when it was retrained from this very store (or from one it does
    not name: artifacts older than the mark), else 0, so that no event of this store is
    skipped because another store's events had reached the same id."""
    through = int(extra.get(EVENTS_THROUGH, 0))
    recorded = extra.get(EVENTS_STORE)
    if through and recorded is not None and recorded != store.store_id:
        log.warning("the artifact was retrained through event %d of another event store; replaying every event "
                    "of this one", through)
        return 0
    return through


@dataclass
class LiveUser:
    """A user's events since the artifact: positives in time order, and every item met."""

    positives: list[int] = field(default_factory=list)  # catalog indices
    values: list[float] = field(default_factory=list)
    known: set[int] = field(default_factory=set)
    n_events: int = 0


@dataclass(frozen=True)
class UserView:
    """A consistent snapshot of what the service knows of one user (or anonymous list).

    ``user_idx`` is the model's index, or ``UNKNOWN_USER`` when the model must score
    from ``history`` alone: unknown users, anonymous lists, and known users with live
    positives (so factor models fold them in again from the longer history).
    """

    user_id: str | None
    user_idx: int
    history: UserHistories  # one row, model items only, oldest first
    positives: np.ndarray  # catalog indices (model and cold), oldest first
    known: np.ndarray  # catalog indices never to recommend to this user


class LiveState:
    """A loaded artifact plus the live log; see the module docstring."""

    def __init__(self, artifact: Artifact, policy: EventPolicy, embedder_factory: Callable[[], TextEmbedder],
                 generation: int = 0, retrieval: RetrievalConfig | None = None):
        self.artifact = artifact
        self.model = artifact.model
        self.policy = policy
        self.generation = generation
        self.events_through = int(artifact.extra.get(EVENTS_THROUGH, 0))
        self.catalog = Catalog(self.model.items_, self.model.item_features_)
        self.cold = ColdStart(self.model, self.catalog.model_texts(), embedder_factory)
        self.retrieval = CandidateStage(self.model, retrieval)
        self.users: dict[str, LiveUser] = {}
        self.last_event_id = self.events_through
        self.last_item_id = 0
        self.skipped_events = 0  # events naming items this state cannot place (should stay 0)
        self.hidden_users: set[str] = set()  # model users erased since the artifact (recloop.serve.privacy)
        self.lock = threading.RLock()
        history = self.model.history_
        self._has_rating = history.has_rating
        self._event_listeners: list[Callable[[LiveState, list[StoredEvent]], None]] = []

    @classmethod
    def load(cls, path: str | Path, store: EventStore, policy: EventPolicy,
             embedder_factory: Callable[[], TextEmbedder], generation: int = 0,
             retrieval: RetrievalConfig | None = None,
             listeners: Iterable[Callable[[LiveState, list[StoredEvent]], None]] = ()) -> LiveState:
        """Load an artifact and bring it up to date with the store (``listeners`` see
        the replayed events too)."""
        state = cls(load_artifact(Path(path)), policy, embedder_factory, generation, retrieval)
        state.events_through = state.last_event_id = events_through(state.artifact.extra, store)
        for listener in listeners:
            state.add_listener(listener)
        state.catch_up(store)
        return state

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def n_model_items(self) -> int:
        return self.catalog.n_model

    def add_listener(self, listener: Callable[[LiveState, list[StoredEvent]], None]) -> None:
        """Called with each batch of applied events (the exploration stage learns from them)."""
        self._event_listeners.append(listener)

    # --- keeping up with the store -----------------------------------------------------------
    def catch_up(self, store: EventStore, head=None) -> bool:
        """Apply items and events added to the store since the last call; True if any."""
        head = head or store.head()
        changed = False
        if head.last_item_id > self.last_item_id:
            self.apply_items(store.items_after(self.last_item_id))
            changed = True
        while head.last_event_id > self.last_event_id:
            rows = store.events_after(self.last_event_id, 50_000)
            if not rows:
                break
            self.apply_events(rows)
            changed = True
        return changed

    def apply_items(self, items: Iterable[StoredItem]) -> None:
        with self.lock:
            for item in items:
                if item.id <= self.last_item_id:
                    continue
                if item.item_id in self.catalog:
                    self.last_item_id = item.id
                    continue  # folded into this model by a retrain: no longer cold
                embedding = item.embedding
                if embedding is None:
                    embedding = self.cold.embed([item.text])[0]
                labels = {k: v for k, v in item.features.items() if k in self.catalog.feature_names}
                vectors = self.cold.add(embedding[None, :])
                if vectors is not None and self.retrieval.uses_vectors:
                    self.retrieval.add_items(vectors)  # same order: catalog index == index position
                # Last, one reference swap: a request holding the old snapshot never sees
                # this item; one reading the new one finds it in the index and embeddings.
                self.catalog = self.catalog.with_item(item.item_id, item.title, labels)
                # Only now: a thread that sees this id as applied (and so skips catching
                # up) must find the item in the catalog it reads next.
                self.last_item_id = item.id

    def apply_events(self, events: list[StoredEvent]) -> None:
        with self.lock:
            fresh = [e for e in events if e.id > self.last_event_id]
            for event in fresh:
                self._apply(event)
            if events:
                self.last_event_id = max(self.last_event_id, events[-1].id)
        for listener in self._event_listeners:
            listener(self, fresh)

    def _apply(self, event: StoredEvent) -> None:
        item = self._item_index(event.item_id)
        if item is None:
            self.skipped_events += 1
            return
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = LiveUser()
        user.n_events += 1
        user.known.add(item)
        if self.policy.is_positive(event.type, event.value):
            user.positives.append(item)
            user.values.append(self.policy.interaction_value(event.type, event.value))

    # --- erasure and retention (recloop.serve.privacy) -------------------------------------------
    def rebuild_user(self, user_id: str, events: list[StoredEvent]) -> None:
        """Replace the live state of ``user_id`` by ``events`` (what the store still holds of
        them, up to ``last_event_id``): none after an erasure, fewer after a retention sweep."""
        with self.lock:
            self.users.pop(user_id, None)
            for event in events:
                if event.id <= self.last_event_id:
                    self._apply(event)

    def hide_model_users(self, user_ids: Iterable[str]) -> None:
        """Serve these users of the model as if it had never seen them (erased since the
        artifact was written): their training history and features are no longer used."""
        with self.lock:
            self.hidden_users.update(u for u in user_ids if u in self.model.users_)

    def _item_index(self, item_id: str) -> int | None:
        try:
            return self.catalog.index(item_id)
        except UnknownIdError:
            return None

    # --- what a request sees -------------------------------------------------------------------
    def knows_user(self, user_id: str) -> bool:
        return (user_id in self.model.users_ and user_id not in self.hidden_users) or user_id in self.users

    def user_view(self, user_id: str) -> UserView:
        """Training history plus live events of ``user_id``; :class:`UnknownIdError` if
        the id is neither in the model nor in any event."""
        model = self.model
        seen_in_model = user_id in model.users_ and user_id not in self.hidden_users
        user_idx = model.users_.index(user_id) if seen_in_model else UNKNOWN_USER
        with self.lock:
            live = self.users.get(user_id)
            if user_idx == UNKNOWN_USER and live is None:
                raise UnknownIdError(f"unknown user id {user_id!r}: not among the model's {model.n_users} users and "
                                     "no event names it yet (POST /events first, or send 'items' instead)")
            live_positives = np.asarray(live.positives if live else [], dtype=np.int64)
            live_values = np.asarray(live.values if live else [], dtype=np.float32)
            live_known = np.fromiter(live.known, dtype=np.int64) if live else np.zeros(0, np.int64)
        if user_idx >= 0:
            base = model.history_.histories(np.asarray([user_idx]))
            base_items, base_rating = base.item_idx, base.rating
        else:
            base_items, base_rating = np.zeros(0, np.int64), (np.zeros(0, np.float32) if self._has_rating else None)
        in_model = live_positives < self.n_model_items
        items = np.concatenate([base_items, live_positives[in_model]])
        rating = None if base_rating is None else np.concatenate([base_rating, live_values[in_model]])
        history = UserHistories(np.asarray([0, len(items)], dtype=np.int64), items, self.n_model_items, rating)
        scored_as = user_idx if not in_model.any() else UNKNOWN_USER
        positives = np.concatenate([base_items, live_positives])
        known = np.union1d(base_items, live_known)
        return UserView(user_id, scored_as, history, positives, known)

    def anonymous_view(self, item_ids: list[str], catalog: Catalog | None = None) -> UserView:
        """An anonymous user whose recent items (oldest first) are ``item_ids`` (ids of
        ``catalog``, by default the current one)."""
        items = (catalog or self.catalog).indices(item_ids)
        in_model = items[items < self.n_model_items]
        rating = np.full(len(in_model), self.policy.interaction_value("click", None), np.float32) \
            if self._has_rating else None
        history = UserHistories(np.asarray([0, len(in_model)], dtype=np.int64), in_model, self.n_model_items, rating)
        return UserView(None, UNKNOWN_USER, history, items, np.unique(items))

    def item_view(self, item_index: int, catalog: Catalog | None = None) -> UserView:
        """An anonymous user whose whole history is one item (the "similar items" query)."""
        catalog = catalog or self.catalog
        return self.anonymous_view([catalog.id(item_index)], catalog)
