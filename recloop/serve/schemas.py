"""The wire format: pydantic models of every request and response body.

Ids are the dataset's external ids as strings (numbers are accepted and turned into
strings, so ``{"user_id": 1}`` means user ``"1"``). Unknown fields are rejected, so a
typo (``"exclud"``) is a 422 naming it rather than a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from recloop.serve.events import EVENT_TYPES

Id = str
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]

ID_FIELD = Field(min_length=1, max_length=256)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class RecommendRequest(Body):
    """Recommendations for a user, or for an anonymous list of recent items."""

    user_id: Id | None = Field(None, min_length=1, max_length=256, examples=["1"],
                               description="A user of the model, or one seen only in events. Give this or `items`.")
    items: list[Id] | None = Field(None, examples=[["50", "172"]],
                                   description="An anonymous user's recent items, oldest first (instead of user_id).")
    k: int = Field(10, ge=1, description="How many items (at most the server's max_k).")
    exclude: list[Id] = Field(default_factory=list, description="Items never to return (besides the user's known items).")
    filters: dict[str, list[str]] | None = Field(
        None, examples=[{"genre": ["Comedy", "Drama"]}],
        description="Keep items with, for each named item feature, at least one of the values.")
    diversity: float | None = Field(None, ge=0.0, le=1.0,
                                    description="0 = pure relevance, 1 = most diverse (MMR); default: the server's.")
    explain: bool = Field(False, description="Add reasons to each item.")
    explore: bool = Field(True, description="Let the exploration stage swap in items it is learning about.")

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


class EventIn(Body):
    """One feedback event."""

    user_id: Id = ID_FIELD
    item_id: Id = ID_FIELD
    type: EventType = Field(examples=["click"])
    value: float | None = Field(None, description="The rating of a `rate` event (needed there); optional elsewhere.")
    time: float | datetime | None = Field(None, description="Unix seconds or ISO 8601; default: the server's clock.")
    event_id: str | None = Field(None, max_length=256,
                                 description="Client key: an event retried with the same key is stored once.")

    def unix_time(self) -> float | None:
        if isinstance(self.time, datetime):
            return self.time.timestamp()
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

    item_id: Id = ID_FIELD
    text: str = Field(min_length=1, description="What the text encoder embeds: a description, genres, ...")
    title: str | None = Field(None, max_length=1000)
    features: dict[str, list[str]] = Field(default_factory=dict, examples=[{"genre": ["Comedy"]}],
                                           description="Categorical features (values from the catalog's vocabulary).")


class ItemInfo(BaseModel):
    item_id: Id
    title: str | None = None
    cold: bool = Field(description="Added while serving (not in the model's training data).")
    features: dict[str, list[str]] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    items: list[ItemInfo]


class ReloadRequest(Body):
    artifact: str | None = Field(None, description="Artifact directory to load; default: re-read the current one.")


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


class ErrorResponse(BaseModel):
    detail: str
