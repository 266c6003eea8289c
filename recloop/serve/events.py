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

from recloop.errors import ConfigError, DataError

EVENT_TYPES = ("view", "click", "rate", "purchase", "skip")

#: Event times are Unix seconds in [MIN_TIME, MAX_TIME): 1970-01-01 to 3000-01-01 UTC.
#: Anything outside is a client bug (a time in milliseconds, a placeholder date), and an
#: unbounded one (1e300) would overflow the integer timestamps of ``recloop retrain``.
MIN_TIME = 0.0
MAX_TIME = 32_503_680_000.0
#: A ``value`` must fit the float32 ratings of a training log.
MAX_VALUE = 3.4028234663852886e38


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


def event_problem(type: str, value: float | None, time: float | None) -> str | None:
    """Why an event cannot be stored (``None`` when it can): the one rule shared by the
    HTTP schema, the event store (which checks before queueing) and ``recloop retrain``
    (which skips rows an older version let in)."""
    if type not in EVENT_TYPES:
        return f"unknown event type {type!r}; types are {list(EVENT_TYPES)}"
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                  and abs(value) <= MAX_VALUE):
        return f"event value must be a finite number within float32 range (|value| <= {MAX_VALUE:.4g}), got {value!r}"
    if time is not None and not (isinstance(time, (int, float)) and math.isfinite(time)
                                 and MIN_TIME <= time < MAX_TIME):
        return (f"event time must be Unix seconds from {MIN_TIME:.0f} (1970-01-01) to before {MAX_TIME:.0f} "
                f"(3000-01-01), got {time!r}")
    return None


def text_problem(name: str, text) -> str | None:
    """Why ``text`` is not a usable id (``None`` when it is): a non-blank string that
    UTF-8 can encode (no lone surrogate such as ``"\\ud800"``, which no database stores)."""
    if not isinstance(text, str) or not text.strip():
        return f"{name} must be a non-blank string, got {text!r}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} must be valid Unicode text (it holds a lone surrogate), got {text!r}"
    return None


def check_event(event: Event) -> None:
    """Raise :class:`~recloop.errors.DataError` naming the problem if ``event`` cannot be stored."""
    problem = event_problem(event.type, event.value, event.time)
    for name in ("user_id", "item_id", "event_id"):
        text = getattr(event, name)
        if problem is None and not (text is None and name == "event_id"):
            problem = text_problem(name, text)
    if problem is not None:
        raise DataError(f"event of user {event.user_id!r} on item {event.item_id!r}: {problem}")


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
