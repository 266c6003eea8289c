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

Rows an older server let into the store that no model can learn from (a time that is
not finite or outside 1970-3000, a value outside float32) are skipped with a warning
naming how many (``FoldStats.skipped_bad_rows``), instead of failing every retrain.

The evaluation metrics of the source artifact are carried into the new one
(``metrics.json``), under ``"evaluated"`` marking them as measured on the source
model: the refitted model itself has not been evaluated.

Event times become interaction timestamps (Unix seconds, truncated), so in a log with
timestamps the new events sort after the user's older ones; in a log without
timestamps they are appended after it. Positive events without a value carry
``EventPolicy.interaction_value`` as their rating when the log has ratings.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.artifact import load_artifact
from recloop.data.features import Features
from recloop.data.interactions import Interactions
from recloop.serve.events import EventPolicy, event_problem, text_problem
from recloop.serve.privacy import ERASURES_APPLIED, apply_erasures
from recloop.serve.state import EVENTS_STORE, EVENTS_THROUGH, events_through
from recloop.serve.store import EventStore, StoredItem

logger = logging.getLogger("recloop.serve")

@dataclass(frozen=True)
class FoldStats:
    """What :func:`fold_events` did."""

    events: int  # events read (after the artifact's mark)
    positives: int  # of which became interactions
    skipped_unknown_items: int  # positives naming an item neither in the model nor in the store
    new_users: int
    new_items: int
    events_through: int  # the last event id read
    skipped_bad_rows: int = 0  # rows with a time or value no model can use (see the module docstring)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fold_events(model, store: EventStore, policy: EventPolicy | None = None,
                after_id: int = 0) -> tuple[Interactions, Features | None, Features | None, FoldStats]:
    """The model's training log plus the positive events with ``id > after_id``.

    Returns ``(interactions, item_features, user_features, stats)`` over vocabularies
    extended with the new users and items.
    """
    policy = policy or EventPolicy()
    base: Interactions = model.history_
    events = list(store.iter_events(after_id))
    last_id = events[-1].id if events else after_id
    bad = [e for e in events if _row_problem(e) is not None]
    if bad:
        first = bad[0]
        message = (f"skipped {len(bad)} of {len(events)} stored events that cannot be learned from "
                   f"(e.g. event id {first.id}: {_row_problem(first)})")
        warnings.warn(message, stacklevel=2)
        logger.warning(message)
        bad_ids = {e.id for e in bad}
        events = [e for e in events if e.id not in bad_ids]
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
    stats = FoldStats(len(events) + len(bad), len(usable), skipped, len(users) - len(base.users), len(new_item_ids),
                      last_id, len(bad))
    return log, item_features, user_features, stats


def _row_problem(event) -> str | None:
    """Why a stored event cannot become an interaction (``None`` when it can)."""
    problem = event_problem(event.type, event.value, event.time)
    for name in ("user_id", "item_id"):
        if problem is None:
            problem = text_problem(name, getattr(event, name))
    return problem


def retrain(artifact: str | Path, store: EventStore, output: str | Path,
            policy: EventPolicy | None = None) -> tuple[Path, FoldStats]:
    """Fold the events into ``artifact``'s training log, refit the same model config,
    write the new artifact to ``output`` (atomically; it may be ``artifact`` itself)."""
    loaded = load_artifact(Path(artifact))
    model = loaded.model
    erased, erasures_mark = apply_erasures(model, store, loaded.extra)  # users erased since the artifact
    after = events_through(loaded.extra, store)
    log, item_features, user_features, stats = fold_events(model, store, policy, after)
    fresh = type(model)(model.config)
    start = time.perf_counter()
    fresh.fit(log, item_features=item_features, user_features=user_features,
              user_graph=getattr(model, "user_graph_", None))
    seconds = time.perf_counter() - start
    extra = {key: value for key, value in loaded.extra.items()
             if key not in (EVENTS_THROUGH, EVENTS_STORE, "retrain")}
    extra.update({ERASURES_APPLIED: erasures_mark, "erasures_store": store.store_id, "erased_users": erased})
    extra.update({EVENTS_THROUGH: stats.events_through, EVENTS_STORE: store.store_id,
                  "retrain": {**stats.to_dict(), "from": str(Path(artifact).resolve()), "store": _safe_url(store),
                              "fit_seconds": seconds, "interactions": len(log), "time": time.time()}})
    path = fresh.save(output, metrics=carried_metrics(loaded.metrics, artifact), extra=extra)
    return path, stats


def carried_metrics(metrics: dict, source: str | Path) -> dict:
    """The source artifact's evaluation metrics, marked as measured on the source model.

    The first retrain adds ``"evaluated"`` naming the source artifact; later retrains keep
    that mark, since the numbers still come from that evaluation."""
    if not metrics:
        return {}
    carried = dict(metrics)
    carried.setdefault("evaluated", {
        "artifact": str(Path(source).resolve()),
        "note": "these metrics were measured on the model of this artifact; the refit by `recloop retrain` "
                "(same hyperparameters, more events) has not been evaluated",
    })
    return carried


def _safe_url(store: EventStore) -> str:
    from recloop.serve.store import _redact

    return _redact(store.url)
