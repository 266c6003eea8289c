"""The recommendation service: a model, the live event log, the pipeline; no web code.

:class:`RecommendationService` is what ``recloop serve`` runs inside each worker
process, and what tests and notebooks can drive directly. It keeps a
:class:`~recloop.serve.state.LiveState` current by tailing the event store before each
answer, so an event acknowledged by any worker is seen by the next request to every
worker (read-your-writes across processes), and swaps in a new model on
:meth:`reload` without stopping: the new state is built beside the old one, requests
in flight finish on the old one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

import numpy as np

from recloop.errors import RecloopError, UnknownIdError
from recloop.serve.catalog import Catalog, FilterError
from recloop.serve.coldstart import TextEmbedder, default_text_embedder
from recloop.serve.events import EVENT_TYPES, Event, text_problem
from recloop.serve.explain import ExplainStage
from recloop.serve.explore import ExploreStage
from recloop.serve.fairness import FairnessStage
from recloop.serve.pipeline import Pipeline, Query, Ranked
from recloop.serve.privacy import PrivacyGuard
from recloop.serve.rerank import RerankStage
from recloop.serve.settings import ServeSettings, exposure_warning
from recloop.serve.social import SocialStage
from recloop.serve.state import LiveState
from recloop.serve.store import EventStore, ItemExistsError, NewItem, StoreHead, default_db_path, open_store

log = logging.getLogger("recloop.serve")

ARTIFACT_KEY = "artifact"  # meta key: the artifact every process should serve (JSON: path, stamp)


class InvalidRequestError(RecloopError):
    """A request the service cannot answer as asked (limits, conflicting fields, bad values)."""


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    title: str | None = None
    explored: bool = False


@dataclass(frozen=True)
class RecommendResult:
    items: list[Recommendation]
    source: str  # model, content or popularity
    model: str
    generation: int


def default_pipeline(settings: ServeSettings) -> Pipeline:
    """Retrieval, re-ranking, exploration (when configured) and explanations."""
    explorer = None
    if settings.explore.method != "none":
        explorer = ExploreStage(settings.explore, max_k=settings.limits.max_k)
    return Pipeline(settings.pipeline, reranker=FairnessStage(settings.fairness, RerankStage(settings.rerank)),
                    explorer=explorer, explainer=ExplainStage(settings.explain), social=SocialStage(settings.social))


def artifact_stamp(path: str | Path) -> str:
    """Identifies one written version of an artifact directory (it is replaced whole)."""
    stat = (Path(path) / "model.json").stat()
    return f"{stat.st_ino}:{stat.st_mtime_ns}"


class RecommendationService:
    """See the module docstring.

    Parameters
    ----------
    settings:
        What to serve and the limits (:class:`~recloop.serve.settings.ServeSettings`).
    store:
        An open event store; by default ``settings.db`` is opened (and closed by
        :meth:`close`).
    embedder_factory:
        Makes the text encoder for cold items, called once on first need.
    pipeline:
        The stages after candidate retrieval (default: top-k, see
        :mod:`recloop.serve.pipeline`).
    """

    def __init__(self, settings: ServeSettings, store: EventStore | None = None,
                 embedder_factory: Callable[[], TextEmbedder] | None = None, pipeline: Pipeline | None = None):
        self.settings = settings
        self._owns_store = store is None
        self.store = store or open_store(settings.db or default_db_path(settings.artifact),
                                         synchronous=settings.sqlite_synchronous)
        self.pipeline = pipeline or default_pipeline(settings)
        self._embedder: TextEmbedder | None = None
        self._embedder_lock = threading.Lock()
        self._factory = embedder_factory or (lambda: default_text_embedder(settings.text_model, settings.text_cache))
        self._sync_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._following = False
        self._closed = threading.Event()
        self.privacy = PrivacyGuard(settings.privacy, self.store)  # pseudonyms, erasure, retention
        self._state = self._build_state(settings.artifact, self.store.head().generation)
        self._stamp = artifact_stamp(settings.artifact)
        warning = exposure_warning(settings)
        if warning:
            log.warning(warning)
        self.privacy.start(self)  # the retention sweep, when configured
        self._watcher = None
        if settings.watch > 0:
            self._watcher = threading.Thread(target=self._watch, name="recloop-artifact-watch", daemon=True)
            self._watcher.start()

    # --- state ----------------------------------------------------------------------------------
    def _embedder_instance(self) -> TextEmbedder:
        with self._embedder_lock:  # one encoder for the process, shared by every model reload
            if self._embedder is None:
                self._embedder = self._factory()
        return self._embedder

    def _build_state(self, path: str | Path, generation: int) -> LiveState:
        explorer = self.pipeline.explorer
        state = LiveState.load(path, self.store, self.settings.policy, lambda: self._embedder_instance(), generation,
                               self.settings.retrieval, listeners=[explorer.observe] if explorer is not None else [])
        self.privacy.on_new_state(state)  # users erased since the artifact was written stay hidden
        # A loaded model lives until the next reload, and its id maps and catalog hold an
        # entry per user and item, which every full garbage collection would walk: 110 ms
        # at 1e6 items, a stall that queues every request behind it. Frozen objects are
        # never walked; they are still freed by reference counting when a reload drops them.
        # Unfreezing first lets this collection free the cycles of a model dropped by an
        # earlier reload, so at most one old model's cycles outlive it, until the next.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return state

    @property
    def state(self) -> LiveState:
        """The current state, without catching up (see :meth:`sync`)."""
        return self._state

    def sync(self) -> LiveState:
        """Catch up with the store (events, items, a reload by another process) and
        return the state to answer from."""
        state = self._state
        self.privacy.follow(state)  # erasures made by other processes
        head = self._follow_if_reloaded()
        if head.last_event_id > state.last_event_id or head.last_item_id > state.last_item_id:
            with self._sync_lock:
                state.catch_up(self.store, head)
        return state

    def _follow_if_reloaded(self) -> StoreHead:
        """Start following a reload made by another process, if there was one; the store's head."""
        head = self.store.head()
        if head.generation > self._state.generation and not self._reload_lock.locked():
            self._follow()
        return head

    @property
    def warm(self) -> bool:
        """False while answering may first need slow one-off work: embedding the catalog's
        text for the items added while serving (seconds, once per model)."""
        state = self._state
        if state.cold.catalog_ready:
            return True
        if state.catalog.n_cold:
            return False
        return self.store.head().last_item_id <= state.last_item_id  # no item about to arrive

    # --- reads ----------------------------------------------------------------------------------
    def recommend(self, user_id: str | None = None, items: Sequence[str] | None = None, k: int = 10,
                  exclude: Sequence[str] = (), filters: Mapping[str, Sequence[str]] | None = None,
                  diversity: float | None = None, explain: bool = False, explore: bool = True,
                  calibration: float | None = None, exposure: Mapping[str, float] | None = None,
                  friends: Sequence[str] | None = None) -> RecommendResult:
        """Top-``k`` for a user (training history plus live events) or, with ``items``,
        an anonymous user whose recent items (oldest first) those are. ``calibration``
        and ``exposure`` (least share per item group) override the fairness settings.
        ``friends`` (ids of the model's users) names the user's friends: a user the
        service has never seen may then ask at once (see :mod:`recloop.serve.social`); a
        user of the model's friend graph has theirs looked up."""
        state, query = self.prepare(user_id, items, k, exclude, filters, diversity, explain, explore, calibration,
                                    exposure, friends)
        return self.finish(state, self.pipeline.run(state, query))

    def prepare(self, user_id: str | None = None, items: Sequence[str] | None = None, k: int = 10,
                exclude: Sequence[str] = (), filters: Mapping[str, Sequence[str]] | None = None,
                diversity: float | None = None, explain: bool = False,
                explore: bool = True, calibration: float | None = None,
                exposure: Mapping[str, float] | None = None,
                friends: Sequence[str] | None = None) -> tuple[LiveState, Query]:
        """The checked, resolved query of :meth:`recommend` (everything but the scoring),
        so that :class:`RecommendBatcher` can score many at once."""
        if (user_id is None) == (items is None):
            raise InvalidRequestError("give either user_id or items (an anonymous user's recent items), not "
                                      + ("both" if user_id is not None else "neither"))
        self._check_k(k)
        self._check_list("exclude", exclude)
        if items is not None:
            self._check_list("items", items)
        if friends is not None:
            self._check_list("friends", friends)
        state = self.sync()
        friend_idx = None if friends is None else state.model.users_.indices([str(f) for f in friends])
        if user_id is not None and friend_idx is not None and not state.knows_user(self.privacy.key(user_id)):
            view = state.anonymous_view([], state.catalog)  # a new user who named friends: no history yet
            catalog = state.catalog
        elif user_id is not None:
            view = state.user_view(self.privacy.key(user_id))
            # The catalog is read once, after the view: every item the view names is in
            # this snapshot, and the filter mask, scores and ids all use it.
            catalog = state.catalog
        else:
            catalog = state.catalog
            view = state.anonymous_view(list(items), catalog)
        if friend_idx is None and view.user_idx >= 0 and getattr(state.model, "user_graph_", None) is not None:
            friend_idx = state.model.user_graph_.friends(view.user_idx)  # whose friends are known
        query = self._query(catalog, view, k, exclude, filters, diversity, explain, explore)
        if calibration is not None or exposure is not None:
            query = replace(query, calibration=calibration, exposure=self._check_exposure(calibration, exposure))
        if friend_idx is not None:
            query = replace(query, friends=friend_idx)
        return state, query

    @staticmethod
    def _check_exposure(calibration: float | None, exposure: Mapping[str, float] | None
                        ) -> dict[str, float] | None:
        if calibration is not None and not (0.0 <= calibration <= 1.0):
            raise InvalidRequestError(f"calibration must be between 0 and 1, got {calibration}")
        if exposure is None:
            return None
        for group, share in exposure.items():
            if not (0.0 <= share <= 1.0):
                raise InvalidRequestError(f"exposure.{group} must be between 0 and 1, got {share}")
        if sum(exposure.values()) > 1.0 + 1e-9:
            raise InvalidRequestError(f"exposure shares add up to {sum(exposure.values()):.3g} > 1: no list can "
                                      "satisfy them all")
        return {str(group): float(share) for group, share in exposure.items()}

    def finish(self, state: LiveState, ranked: Ranked) -> RecommendResult:
        return RecommendResult(self._recommendations(ranked), ranked.source, state.model.name, state.generation)

    def recommend_batch(self, prepared: list[tuple[LiveState, Query]]) -> list[RecommendResult]:
        """Answer prepared queries, scoring those on the same state in one model call."""
        out: list = [None] * len(prepared)
        groups: dict[int, list[int]] = {}
        for i, (state, _) in enumerate(prepared):
            groups.setdefault(id(state), []).append(i)
        for members in groups.values():
            state = prepared[members[0]][0]
            ranked = self.pipeline.run_batch(state, [prepared[i][1] for i in members])
            for i, answer in zip(members, ranked):
                out[i] = self.finish(state, answer)
        return out

    def similar(self, item_id: str, k: int = 10, filters: Mapping[str, Sequence[str]] | None = None,
                diversity: float | None = None, explain: bool = False) -> RecommendResult:
        """Items related to ``item_id``: the answer for an anonymous user who liked only it."""
        self._check_k(k)
        state = self.sync()
        catalog = state.catalog
        view = state.item_view(catalog.index(item_id), catalog)
        query = self._query(catalog, view, k, (), filters, diversity, explain, explore=False, similar=True)
        return self.finish(state, self.pipeline.run(state, query))

    def _query(self, catalog: Catalog, view, k, exclude, filters, diversity, explain, explore,
               similar: bool = False) -> Query:
        exclude_idx = catalog.indices(list(exclude)) if exclude else np.zeros(0, np.int64)
        allowed = None
        if filters:
            for name, values in filters.items():
                self._check_list(f"filters.{name}", values)
            try:
                allowed = catalog.filter_mask(filters)
            except FilterError as error:
                raise InvalidRequestError(str(error)) from None
        if diversity is not None and not (0.0 <= diversity <= 1.0):
            raise InvalidRequestError(f"diversity must be between 0 and 1, got {diversity}")
        return Query(view, catalog, k, exclude_idx, allowed, diversity, explain, explore, similar)

    @staticmethod
    def _recommendations(ranked: Ranked) -> list[Recommendation]:
        catalog = ranked.catalog
        ids = catalog.ids(ranked.item_idx)
        out = []
        for r, (index, item_id) in enumerate(zip(ranked.item_idx, ids)):
            out.append(Recommendation(
                item_id, float(ranked.scores[r]),
                list(ranked.reasons[r]) if ranked.reasons is not None else [],
                catalog.title(int(index)),
                bool(ranked.explored[r]) if ranked.explored is not None else False))
        return out

    def search(self, query: str, limit: int = 20, user_id: str | None = None) -> list[dict]:
        """Catalog items whose title contains ``query`` (the web page's search box).

        With ``user_id``, each result also says whether the user already has it
        (``"known"``: in their training history or their events), so that a page can
        mark it; an unknown user id is an :class:`UnknownIdError`."""
        self._check_k(limit, "limit")
        state = self.sync()
        known = None
        if user_id is not None:
            known = state.user_view(self.privacy.key(user_id)).known
        catalog = state.catalog
        results = []
        for index in catalog.search(query, limit):
            info = self._item_info(catalog, index)
            if known is not None:
                info["known"] = bool(np.isin(index, known))
            results.append(info)
        return results

    def features(self) -> dict[str, list[str]]:
        """The catalog's categorical features and their values (what ``filters`` accept)."""
        state = self._state
        return {name: state.catalog.values(name) for name in state.catalog.feature_names}

    def item(self, item_id: str) -> dict:
        catalog = self.sync().catalog
        return self._item_info(catalog, catalog.index(item_id))

    @staticmethod
    def _item_info(catalog: Catalog, index: int) -> dict:
        return {"item_id": catalog.id(index), "title": catalog.title(index), "cold": catalog.is_cold(index),
                "features": {name: catalog.labels(name, index) for name in catalog.feature_names}}

    def health(self) -> dict:
        # A worker that only gets health checks still follows another worker's reload.
        self._follow_if_reloaded()
        state = self._state
        return {"status": "ok", "model": state.model.name, "artifact": str(state.path),
                "generation": state.generation, "items": len(state.catalog), "cold_items": state.catalog.n_cold,
                "users": state.model.n_users, "live_users": len(state.users),
                "last_event_id": state.last_event_id, "events_through": state.events_through,
                "cold_start": state.cold.method, "retrieval": state.retrieval.kind,
                "store": type(self.store).__name__}

    # --- writes ---------------------------------------------------------------------------------
    def validate_events(self, events: Sequence[Event]) -> list[Event]:
        """Check a batch before it is stored: sizes, types, values, known items."""
        if not events:
            raise InvalidRequestError("no events in the request")
        limit = self.settings.limits.max_batch
        if len(events) > limit:
            raise InvalidRequestError(f"{len(events)} events in one request; the limit is {limit}")
        state = self._state
        for event in events:
            if event.type not in EVENT_TYPES:
                raise InvalidRequestError(f"unknown event type {event.type!r}; types are {list(EVENT_TYPES)}")
            if not event.user_id:
                raise InvalidRequestError("user_id must not be empty")
            if event.type == "rate" and event.value is None:
                raise InvalidRequestError(f"a 'rate' event needs a value (user {event.user_id!r}, "
                                          f"item {event.item_id!r})")
            if event.value is not None and not math.isfinite(event.value):
                raise InvalidRequestError(f"event value must be a finite number, got {event.value}")
            if event.item_id not in state.catalog:
                state = self.sync()  # another process may just have added it
                state.catalog.index(event.item_id)  # raises UnknownIdError naming it
        return list(events)

    def submit_events(self, events: Sequence[Event]) -> Future:
        """Validate, then queue for the next group commit; the future resolves (to the
        number of new events) once they are durable."""
        return self.store.submit(self.privacy.ingest(self.validate_events(events)))

    def record_events(self, events: Sequence[Event]) -> int:
        """Validate and store durably; returns how many were new (see ``event_id``)."""
        return self.submit_events(events).result()

    def add_item(self, item_id: str, text: str, features: Mapping[str, Sequence[str]] | None = None,
                 title: str | None = None) -> dict:
        """Add an item the model never saw: embedded from ``text``, stored, recommendable
        from the next request on (by every process)."""
        item_id = str(item_id)
        features = {k: list(v) for k, v in (features or {}).items()}
        if not item_id.strip():
            raise InvalidRequestError("item_id must not be empty")
        if not text or not text.strip():
            raise InvalidRequestError(f"item {item_id!r} needs a non-empty text to be embedded")
        if len(text) > self.settings.limits.max_text:
            raise InvalidRequestError(f"item {item_id!r} text has {len(text)} characters; the limit is "
                                      f"{self.settings.limits.max_text}")
        state = self.sync()
        if item_id in state.catalog:
            raise ItemExistsError(f"item id {item_id!r} already exists; use another id")
        try:
            state.catalog.check_labels(features)
        except FilterError as error:
            raise InvalidRequestError(str(error)) from None
        line = state.catalog.describe_new(title, text, features)
        embedding = state.cold.embed([line])[0]
        self.store.add_item(NewItem(item_id, line, features, embedding, title))
        catalog = self.sync().catalog
        return self._item_info(catalog, catalog.index(item_id))

    # --- privacy (recloop.serve.privacy) -------------------------------------------------------------
    def forget_user(self, user_id: str) -> dict:
        """Erase a user: their rows in the store now, their live state now (the next
        request treats them as a new visitor), and the model's knowledge of them from the
        next request on; see :mod:`recloop.serve.privacy`."""
        return self.privacy.forget(self.sync(), self._checked_user(user_id))

    def user_data(self, user_id: str) -> dict:
        """Everything stored about a user, as JSON-ready data."""
        return self.privacy.export(self.sync(), self._checked_user(user_id))

    @staticmethod
    def _checked_user(user_id: str) -> str:
        problem = text_problem("user_id", user_id)
        if problem:
            raise InvalidRequestError(problem)
        return str(user_id)

    # --- model reloads ----------------------------------------------------------------------------
    def reload(self, path: str | Path | None = None) -> dict:
        """Load ``path`` (default: the artifact served now, re-read) and swap it in.

        Requests keep being answered by the old model until the new one is ready; other
        processes on the same store follow (they see the reload generation change).
        """
        with self._reload_lock:
            old = self._state
            path = Path(path or old.path)
            if not (path / "model.json").is_file():
                raise InvalidRequestError(f"{path} is not a recloop artifact (no model.json); "
                                          "write one with `recloop train` or `recloop retrain`")
            stamp = artifact_stamp(path)
            start = time.perf_counter()
            new = self._build_state(path, generation=-1)
            generation = self.store.set_meta(ARTIFACT_KEY, json.dumps({"path": str(path.resolve()), "stamp": stamp}),
                                             bump_generation=True)
            new.generation = generation
            with self._sync_lock:
                new.catch_up(self.store)
                self._state, self._stamp = new, stamp
            seconds = time.perf_counter() - start
        log.info("reloaded %s (generation %d) in %.1fs", path, generation, seconds)
        return {"artifact": str(path), "model": new.model.name, "generation": generation,
                "previous": str(old.path), "seconds": seconds, "events_through": new.events_through}

    def _follow(self) -> None:
        """Another process reloaded: load what it loaded, in the background."""
        with self._reload_lock:
            if self._following:
                return
            self._following = True
        threading.Thread(target=self._follow_run, name="recloop-follow-reload", daemon=True).start()

    def _follow_run(self) -> None:
        try:
            with self._reload_lock:
                head = self.store.head()
                if head.generation <= self._state.generation:
                    return
                meta = json.loads(self.store.get_meta(ARTIFACT_KEY) or "{}")
                if "path" not in meta:
                    return
                new = self._build_state(meta["path"], head.generation)
                with self._sync_lock:
                    new.catch_up(self.store)
                    self._state, self._stamp = new, meta.get("stamp", "")
                log.info("followed a reload to %s (generation %d)", meta["path"], head.generation)
        except Exception:  # the old model keeps serving; the next sync tries again
            log.exception("could not follow a model reload")
        finally:
            self._following = False

    def _watch(self) -> None:
        """Reload when the served artifact directory is replaced (e.g. by ``recloop retrain``)."""
        while not self._closed.wait(self.settings.watch):
            try:
                path = self._state.path
                stamp = artifact_stamp(path)
                if stamp == self._stamp:
                    continue
                meta = json.loads(self.store.get_meta(ARTIFACT_KEY) or "{}")
                if meta.get("stamp") == stamp:  # another process already reloaded it: follow
                    self._follow()
                else:
                    self.reload(path)
            except FileNotFoundError:
                continue  # mid-replace: try again next tick
            except Exception:
                log.exception("artifact watch: reload failed; still serving the previous model")

    # --- helpers ----------------------------------------------------------------------------------
    def _check_k(self, k: int, name: str = "k") -> None:
        if k < 1 or k > self.settings.limits.max_k:
            raise InvalidRequestError(f"{name} must be between 1 and {self.settings.limits.max_k}, got {k}")

    def _check_list(self, name: str, values: Sequence) -> None:
        if len(values) > self.settings.limits.max_list:
            raise InvalidRequestError(f"{name} has {len(values)} entries; the limit is {self.settings.limits.max_list}")

    def close(self) -> None:
        self._closed.set()
        self.privacy.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "InvalidRequestError",
    "ItemExistsError",
    "RecommendResult",
    "Recommendation",
    "RecommendationService",
    "UnknownIdError",
]


class RecommendBatcher:
    """Scores concurrent ``recommend`` calls of one event loop together.

    Each call is checked and resolved at once (errors are raised to its caller), then
    waits; the batch is scored when the loop has run the other requests that were ready
    at the same time, so a lone request waits only a loop turn or two, and under load
    the model's per-call cost (large for a transformer) is shared by up to ``max_batch``
    requests. Runs in the event loop: use it where answering is quick (see
    ``RecommendationService.warm``).
    """

    def __init__(self, service: RecommendationService, max_batch: int = 32, turns: int = 2):
        self.service, self.max_batch, self.turns = service, max_batch, turns
        self._pending: list = []
        self._scheduled = False
        self.batches = 0  # how many model calls served how many requests: a sizing aid
        self.requests = 0

    async def recommend(self, **kwargs) -> RecommendResult:
        prepared = self.service.prepare(**kwargs)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((prepared, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop, 0, len(self._pending))
        return await future

    def _flush(self, loop, turn: int, seen: int) -> None:
        if len(self._pending) > seen and turn < self.turns and len(self._pending) < self.max_batch:
            loop.call_soon(self._flush, loop, turn + 1, len(self._pending))  # more arrived: wait a turn
            return
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        if self._pending:
            loop.call_soon(self._flush, loop, 0, len(self._pending))
        else:
            self._scheduled = False
        self.batches += 1
        self.requests += len(batch)
        try:
            results = self.service.recommend_batch([prepared for prepared, _ in batch])
        except Exception as error:  # noqa: BLE001 - not swallowed: every caller of the batch hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
