"""Closing the loop offline: fold the event log into the training data and refit.

``recloop retrain ARTIFACT --db URL --output NEW`` reads the events the artifact has
not seen yet (those after its ``events_through`` mark), turns the positive ones into
interactions with the same :class:`~recloop.serve.events.EventPolicy` the live service
uses (click and purchase; rate at or above the threshold; views and skips are not
positives), appends them to the artifact's training log, and refits the same model
class with the same hyperparameters. New users extend the user vocabulary; items
added with ``POST /items`` that received at least one positive extend the item
vocabulary, with their title and categorical features (items without positives stay
cold: a column of zeros teaches a model nothing). The new artifact records the last
event id it folded in (``extra.json``: ``events_through``), so a service that loads it
replays only later events, and the next retrain starts from there.

Event times become interaction timestamps (Unix seconds, truncated), so in a log with
timestamps the new events sort after the user's older ones; in a log without
timestamps they are appended after it. Positive events without a value carry
``EventPolicy.interaction_value`` as their rating when the log has ratings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.artifact import load_artifact
from recloop.data.features import Features
from recloop.data.interactions import Interactions
from recloop.serve.events import EventPolicy
from recloop.serve.state import EVENTS_THROUGH
from recloop.serve.store import EventStore, StoredItem


@dataclass(frozen=True)
class FoldStats:
    """What :func:`fold_events` did."""

    events: int  # events read (after the artifact's mark)
    positives: int  # of which became interactions
    skipped_unknown_items: int  # positives naming an item neither in the model nor in the store
    new_users: int
    new_items: int
    events_through: int  # the last event id read

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fold_events(model, store: EventStore, policy: EventPolicy = EventPolicy(),
                after_id: int = 0) -> tuple[Interactions, Features | None, Features | None, FoldStats]:
    """The model's training log plus the positive events with ``id > after_id``.

    Returns ``(interactions, item_features, user_features, stats)`` over vocabularies
    extended with the new users and items.
    """
    base: Interactions = model.history_
    events = list(store.iter_events(after_id))
    last_id = events[-1].id if events else after_id
    positives = [e for e in events if policy.is_positive(e.type, e.value)]
    stored_items: dict[str, StoredItem] = {i.item_id: i for i in store.items_after(0)}

    known_items = base.items
    usable = [e for e in positives if e.item_id in known_items or e.item_id in stored_items]
    skipped = len(positives) - len(usable)
    users = base.users.extend(e.user_id for e in usable)
    items = known_items.extend(e.item_id for e in usable)
    new_item_ids = items.to_list()[len(known_items):]

    user_idx = users.indices([e.user_id for e in usable])
    item_idx = items.indices([e.item_id for e in usable])
    rating = timestamp = None
    if base.has_rating:
        rating = np.concatenate([base.rating, np.asarray([policy.interaction_value(e.type, e.value) for e in usable],
                                                         dtype=np.float32)])
    if base.has_timestamp:
        timestamp = np.concatenate([base.timestamp, np.asarray([int(e.time) for e in usable], dtype=np.int64)])
    # Rows are given as (base, then events): with no timestamps that order is kept.
    log = Interactions(np.concatenate([base.user_idx, user_idx]), np.concatenate([base.item_idx, item_idx]),
                       users, items, rating, timestamp)

    item_features = model.item_features_
    if item_features is not None and new_item_ids:
        new = [stored_items[i] for i in new_item_ids]
        categorical = {name: [list(item.features.get(name, [])) for item in new] for name in item_features.categorical}
        text = {}
        if "title" in item_features.text:
            text["title"] = [item.title or item.text for item in new]
        item_features = item_features.aligned_to(known_items).append(new_item_ids, categorical, text)
    user_features = model.user_features_
    if user_features is not None and len(users) > len(base.users):
        user_features = user_features.aligned_to(base.users).append(users.to_list()[len(base.users):])
    stats = FoldStats(len(events), len(usable), skipped, len(users) - len(base.users), len(new_item_ids), last_id)
    return log, item_features, user_features, stats


def retrain(artifact: str | Path, store: EventStore, output: str | Path,
            policy: EventPolicy = EventPolicy()) -> tuple[Path, FoldStats]:
    """Fold the events into ``artifact``'s training log, refit the same model config,
    write the new artifact to ``output`` (atomically; it may be ``artifact`` itself)."""
    loaded = load_artifact(Path(artifact))
    model = loaded.model
    after = int(loaded.extra.get(EVENTS_THROUGH, 0))
    log, item_features, user_features, stats = fold_events(model, store, policy, after)
    fresh = type(model)(model.config)
    start = time.perf_counter()
    fresh.fit(log, item_features=item_features, user_features=user_features)
    seconds = time.perf_counter() - start
    extra = {key: value for key, value in loaded.extra.items() if key not in (EVENTS_THROUGH, "retrain")}
    extra.update({EVENTS_THROUGH: stats.events_through,
                  "retrain": {**stats.to_dict(), "from": str(Path(artifact).resolve()), "store": _safe_url(store),
                              "fit_seconds": seconds, "interactions": len(log), "time": time.time()}})
    path = fresh.save(output, extra=extra)
    return path, stats


def _safe_url(store: EventStore) -> str:
    from recloop.serve.store import _redact

    return _redact(store.url)
