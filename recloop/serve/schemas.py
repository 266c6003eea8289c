"""The wire format: pydantic models of every request and response body.

Ids are the dataset's external ids as strings (numbers are accepted and turned into
strings, so ``{"user_id": 1}`` means user ``"1"``); a blank id, or text holding a lone
surrogate (``"\\ud800"``, which UTF-8 cannot encode), is a 422. Unknown fields are
rejected, so a typo (``"exclud"``) is a 422 naming it rather than a silently ignored
option. Numbers are strict where a lax reading hides a client bug: ``k`` must be an
integer (``true`` is not 1), booleans must be booleans, and no float may be ``NaN`` or
infinite (``1e400`` parses as infinity).

The limits that depend on the server's settings (``k <= max_k``, list sizes, text
length) are checked by the service and written into the OpenAPI schema by the app
(:func:`recloop.serve.app.create_app`), so the schema states what the server enforces.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from recloop.serve.events import EVENT_TYPES, MAX_TIME, MAX_VALUE, MIN_TIME

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate such as \\ud800)") from None
    return value


def _finite_if_number(value):
    """An id may be given as a number (``1`` means ``"1"``), but ``NaN`` is no id."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"an id must be a string or a finite number, got {value}")
    return value


def _id(value: str) -> str:
    if not value.strip():
        raise ValueError("id must not be blank")
    return _encodable(value)


#: An external id: 1-256 characters, not all whitespace, encodable as UTF-8.
Id = Annotated[str, Field(min_length=1, max_length=256, json_schema_extra={"pattern": r"\S"}),
               BeforeValidator(_finite_if_number), AfterValidator(_id)]
def Text(**constraints) -> Any:  # a type with constraints, hence the capital
    """Free text (item text, titles, paths, feature values): a JSON string (no number),
    encodable as UTF-8, with length ``constraints`` checked before that."""
    return Annotated[str, Field(strict=True, **constraints), AfterValidator(_encodable)]


Label = Text(min_length=1, max_length=256)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


class RecommendRequest(Body):
    """Recommendations for a user, or for an anonymous list of recent items."""

    user_id: Id | None = Field(None, examples=["1"],
                               description="A user of the model, or one seen only in events. Give this or `items`.")
    items: list[Id] | None = Field(None, examples=[["50", "172"]],
                                   description="An anonymous user's recent items, oldest first (instead of user_id).")
    k: StrictInt = Field(10, ge=1, description="How many items (at most the server's max_k).")
    exclude: list[Id] = Field(default_factory=list, description="Items never to return (besides the user's known items).")
    filters: dict[Label, list[Label]] | None = Field(
        None, examples=[{"genre": ["Comedy", "Drama"]}],
        description="Keep items with, for each named item feature, at least one of the values.")
    diversity: FiniteFloat | None = Field(None, ge=0.0, le=1.0,
                                          description="0 = pure relevance, 1 = most diverse (MMR); default: the server's.")
    explain: StrictBool = Field(False, description="Add reasons to each item.")
    explore: StrictBool = Field(True, description="Let the exploration stage swap in items it is learning about.")
    calibration: FiniteFloat | None = Field(
        None, ge=0.0, le=1.0, description="Steck calibration: 0 = the model's order, 1 = the list's category (or "
                                          "popularity-tier) mix matches the user's history; default: the server's.")
    exposure: dict[Label, FiniteFloat] | None = Field(
        None, examples=[{"tail": 0.3}],
        description="Least share of the list per item group (popularity tiers head/tail, or the server's "
                    "fairness.groups feature), e.g. {\"tail\": 0.3}; default: the server's.")
    friends: list[Id] | None = Field(
        None, examples=[["275", "428"]],
        description="The user's friends (users of the model). A new user_id naming friends gets recommendations at "
                    "once, from what the friends have; a user of the model's friend graph needs not name them.")

    @field_validator("filters", mode="before")
    @classmethod
    def _single_values(cls, value):
        """``{"genre": "Comedy"}`` means ``{"genre": ["Comedy"]}``."""
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


class RecommendedItem(BaseModel):
    item_id: Id
    score: float
    reasons: list[str] = Field(default_factory=list)
    title: str | None = None
    explored: bool = Field(False, description="Placed by the exploration stage rather than by score.")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    source: str = Field(description="How scores were made: model, content (cold items only) or popularity.")
    model: str
    generation: int = Field(description="Model version counter; grows by one per reload.")
    request_id: str | None = Field(None, description="This answer's id: send it with the feedback events it leads to "
                                                     "(`POST /events`), so that they are attributed to it.")
    arm: str | None = Field(None, description="The experiment arm that answered (`interleaved`: both arms' lists "
                                              "merged).")


_DATETIME = TypeAdapter(datetime)


def _event_time(value: Any) -> float:
    """Unix seconds from a number, a numeric string or an ISO 8601 date (UTC when it has
    no zone), checked against the sane range in one place, with one message."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = _DATETIME.validate_python(value)
            except ValidationError:
                raise ValueError(f"time must be Unix seconds or an ISO 8601 date, got {value!r}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            try:
                seconds = moment.timestamp()
            except (OverflowError, ValueError, OSError):
                seconds = float("-inf")
    if seconds is None:
        raise ValueError(f"time must be Unix seconds or an ISO 8601 date, got {value!r}")
    if not (math.isfinite(seconds) and MIN_TIME <= seconds < MAX_TIME):
        raise ValueError(f"time must be from 1970-01-01 to before 3000-01-01 (Unix seconds {MIN_TIME:.0f} to "
                         f"{MAX_TIME:.0f}), got {value!r}")
    return seconds


def _event_value(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"value must be a number, got {value!r}")  # noqa: TRY004 - pydantic reports ValueError
    if not (math.isfinite(value) and abs(value) <= MAX_VALUE):
        raise ValueError(f"value must be finite and within float32 range (|value| <= {MAX_VALUE:.4g}), got {value!r}")
    return float(value)


#: An event time: always Unix seconds once validated.
EventTime = Annotated[float, PlainValidator(_event_time), WithJsonSchema({"anyOf": [
    {"type": "number", "minimum": MIN_TIME, "exclusiveMaximum": MAX_TIME}, {"type": "string", "format": "date-time"}]})]
EventValue = Annotated[float, PlainValidator(_event_value),
                       WithJsonSchema({"type": "number", "minimum": -MAX_VALUE, "maximum": MAX_VALUE})]


class EventIn(Body):
    """One feedback event."""

    user_id: Id
    item_id: Id
    type: EventType = Field(examples=["click"])
    value: EventValue | None = Field(
        None, description="The rating of a `rate` event (needed there); optional elsewhere. Finite, float32 range.")
    time: EventTime | None = Field(
        None, description="Unix seconds or ISO 8601 (without a zone: UTC), from 1970-01-01 to before 3000-01-01; "
                          "default: the server's clock.")
    event_id: Id | None = Field(None, description="Client key: an event retried with the same key is stored once.")
    request_id: Id | None = Field(None, description="The `request_id` of the `/recommend` answer that showed the "
                                                    "item: attributes the event to that answer (online report).")

    def unix_time(self) -> float | None:
        return self.time


class EventBatch(Body):
    events: list[EventIn] = Field(min_length=1)


def _event_body_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict) and "events" in value:
        return "batch"
    return "one"


#: ``POST /events`` takes one event, a JSON list of events, or ``{"events": [...]}``;
#: validation errors then concern the shape actually sent.
EventsBody = Annotated[Annotated[EventIn, Tag("one")] | Annotated[EventBatch, Tag("batch")]
                       | Annotated[list[EventIn], Tag("list")], Discriminator(_event_body_kind)]


class EventsResponse(BaseModel):
    accepted: int = Field(description="Events in the request, all durably stored when this answer is sent.")
    new: int = Field(description="Of those, how many were not already stored (see event_id).")


class NewItemRequest(Body):
    """An item the model never saw, recommendable at once from its text."""

    item_id: Id
    text: Text(min_length=1, json_schema_extra={"pattern": r"\S"}) = Field(
        description="What the text encoder embeds: a description, genres, ...")
    title: Text(max_length=1000) | None = None
    features: dict[Label, list[Label]] = Field(default_factory=dict, examples=[{"genre": ["Comedy"]}],
                                               description="Categorical features (values from the catalog's vocabulary).")


class ItemInfo(BaseModel):
    item_id: Id
    title: str | None = None
    cold: bool = Field(description="Added while serving (not in the model's training data).")
    features: dict[str, list[str]] = Field(default_factory=dict)
    known: bool | None = Field(None, description="With a user_id in the search: whether that user already has the item.")


class SearchResponse(BaseModel):
    items: list[ItemInfo]


class ReloadRequest(Body):
    artifact: Text(min_length=1, max_length=4096) | None = Field(
        None, description="Artifact directory to load; default: re-read the current one.")


class ReloadResponse(BaseModel):
    artifact: str
    model: str
    generation: int
    previous: str
    seconds: float
    events_through: int


class HealthResponse(BaseModel):
    status: str
    model: str
    artifact: str
    generation: int
    items: int
    cold_items: int
    users: int
    live_users: int
    last_event_id: int
    events_through: int
    cold_start: str
    retrieval: str
    store: str


class Problem(BaseModel):
    """One validation problem: where (``["body", "k"]``), what, and its pydantic type."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer: ``detail`` is one readable line naming the problem;
    ``errors`` (422 validation failures only) lists the problems one by one. The
    request's values are never echoed raw (a value JSON cannot encode is shown escaped)."""

    detail: str
    errors: list[Problem] | None = None


# --- privacy (recloop.serve.privacy) ------------------------------------------------------------------
class ForgetResponse(BaseModel):
    """What ``DELETE /users/{user_id}`` erased."""

    user_id: str
    deleted: dict[str, int] = Field(description="Rows deleted, by store table.")
    erasure_id: int = Field(description="The tombstone's number: retrain drops this user from older artifacts.")
    through_event: int = Field(description="The last event id at the erasure: later events are new data.")
    scrubbed: bool = Field(description="Freed bytes overwritten on disk (false: at the next checkpoint).")
    in_model: bool = Field(description="The served model was trained on this user: it no longer uses their "
                                       "history; `recloop forget --artifact` refits it without them.")


class UserDataResponse(BaseModel):
    """Everything the service stores about a user."""

    user_id: str
    stored_as: str = Field(description="The id as stored (its keyed pseudonym when pseudonyms are on).")
    pseudonymised: bool
    store: dict[str, list[dict[str, Any]]] = Field(description="The user's rows, by store table.")
    live: dict[str, Any] | None = Field(description="The service's live state of the user (events since the model).")
    model: dict[str, Any] = Field(description="The served model's training history and features of the user.")
