"""User feedback events, and the one rule that turns them into interactions.

Five event types arrive at ``POST /events``: ``view`` (the user opened the item),
``click``, ``rate`` (with a ``value``), ``purchase`` and ``skip`` (shown, passed over).
:class:`EventPolicy` decides what each means, and the live service and ``recloop
retrain`` share it, so "what the model learns from" is the same online and offline:

* **positive** (enters the user's history, so the next answer and the next refit see
  it): ``click`` and ``purchase``; ``rate`` when ``value >= rating_threshold``;
* **known** (never recommended to that user again): every event type, including a low
  rating, a view and a skip: the user has met the item and answered;
* ``view`` and ``skip`` are logged but are not positives: a page view is weak, noisy
  evidence, and a skip is negative evidence that the exploration stage learns from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recloop.errors import ConfigError

EVENT_TYPES = ("view", "click", "rate", "purchase", "skip")


@dataclass(frozen=True)
class Event:
    """One feedback event, as external ids.

    ``time`` is in Unix seconds (the server's clock when the client gives none);
    ``event_id`` is an optional client key that makes a retried event idempotent.
    """

    user_id: str
    item_id: str
    type: str
    value: float | None = None
    time: float | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the store: ``id`` orders events (it only grows)."""

    id: int
    user_id: str
    item_id: str
    type: str
    value: float | None
    time: float
    event_id: str | None = None


@dataclass(frozen=True)
class EventPolicy:
    """Which events count as positive interactions (see the module docstring).

    ``rating_threshold``: a ``rate`` event is positive at or above it (4 on a 1-5
    scale). ``implicit_value``: the rating given to positive events without a value
    (clicks, purchases) when the training log carries ratings; by default the
    threshold itself, i.e. a click counts like a good rating.
    """

    positive_types: tuple[str, ...] = ("click", "purchase")
    rating_threshold: float = 4.0
    implicit_value: float | None = None

    def __post_init__(self):
        unknown = set(self.positive_types) - set(EVENT_TYPES)
        if unknown:
            raise ConfigError(f"EventPolicy.positive_types has unknown event type(s) {sorted(unknown)}; "
                              f"types are {EVENT_TYPES}")
        if not math.isfinite(self.rating_threshold):
            raise ConfigError(f"EventPolicy.rating_threshold must be finite, got {self.rating_threshold}")

    def is_positive(self, type: str, value: float | None) -> bool:
        if type == "rate":
            return value is not None and value >= self.rating_threshold
        return type in self.positive_types

    def interaction_value(self, type: str, value: float | None) -> float:
        """The rating an interaction made from a positive event carries."""
        if type == "rate" and value is not None:
            return float(value)
        return float(self.rating_threshold if self.implicit_value is None else self.implicit_value)
