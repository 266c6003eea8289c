"""The arms of an online experiment at work: which arm answers a ``/recommend``, the
merge of an interleaved answer, and the impression each answer leaves (see
:mod:`recloop.serve.online` for the modes)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from recloop.rank.interleave import TEAM_A, team_draft
from recloop.serve.events import Event
from recloop.serve.impressions import INTERLEAVED, Attribution, Impression, ImpressionLog
from recloop.serve.online import OnlineConfig, bucket
from recloop.serve.online_report import read_report
from recloop.serve.service import RecommendationService, RecommendBatcher, RecommendResult


@dataclass
class _Arm:
    name: str
    service: RecommendationService
    batcher: RecommendBatcher


class OnlineRouter:
    """Answers ``/recommend`` for the web app: picks the arm(s), scores, logs the
    impression. ``control`` is the app's service (arm A); ``service_factory`` builds arm
    B's from settings naming its artifact."""

    def __init__(self, config: OnlineConfig, control: RecommendationService,
                 service_factory: Callable[[Any], RecommendationService] | None = None):
        self.config = config
        self.arms = [_Arm(config.arm_a, control, RecommendBatcher(control))]
        if config.mode != "single":
            settings = dataclasses.replace(control.settings, artifact=config.artifact, watch=0.0)
            treatment = (service_factory or RecommendationService)(settings)
            # Arm B keeps its own artifact: a reload of arm A bumps the store's generation,
            # which every service would otherwise follow to arm A's artifact.
            treatment._follow_if_reloaded = treatment.store.head  # type: ignore[method-assign]
            self.arms.append(_Arm(config.arm_b, treatment, RecommendBatcher(treatment)))
        self.log = ImpressionLog(control.store) if config.impressions else None
        self._rng = np.random.default_rng(config.seed)
        self._rng_lock = threading.Lock()

    def arm_for(self, user_id: str | None, request_id: str) -> _Arm:
        """The arm of an A/B answer: by user, or by request for anonymous requests."""
        if len(self.arms) == 1:
            return self.arms[0]
        value = bucket(self.config.salt, user_id if user_id is not None else f"request:{request_id}")
        return self.arms[1] if value < self.config.share else self.arms[0]

    @staticmethod
    async def _answer(arm: _Arm, arguments: dict) -> RecommendResult:
        if arm.service.warm:  # concurrent requests are scored together, in the loop
            return await arm.batcher.recommend(**arguments)
        return await asyncio.to_thread(lambda: arm.service.recommend(**arguments))

    async def recommend(self, arguments: dict, request_id: str) -> tuple[RecommendResult, str]:
        """The answer and the name of the arm that gave it (``interleaved`` for a merge)."""
        if self.config.mode == "interleave":
            result, teams = await self._interleave(arguments)
            arm = INTERLEAVED
        else:
            chosen = self.arm_for(arguments.get("user_id"), request_id)
            result, teams, arm = await self._answer(chosen, arguments), None, chosen.name
        if self.log is not None:
            self.log.record(Impression(request_id, self.stored_user(arguments.get("user_id")), arm, result.model,
                                       result.generation, tuple(r.item_id for r in result.items), teams))
        return result, arm

    def stored_user(self, user_id: str | None) -> str | None:
        """The user id as the store keeps it (pseudonymised when the service is configured
        so), so that no raw id reaches the disk through an impression."""
        return None if user_id is None else self.arms[0].service.privacy.key(user_id)

    async def _interleave(self, arguments: dict) -> tuple[RecommendResult, tuple[str, ...]]:
        a, b = self.arms
        first, second = await asyncio.gather(self._answer(a, arguments), self._answer(b, arguments))
        with self._rng_lock:
            items, teams = team_draft([r.item_id for r in first.items], [r.item_id for r in second.items],
                                      arguments.get("k", 10), self._rng)
        by_id = ({r.item_id: r for r in first.items}, {r.item_id: r for r in second.items})
        merged = [by_id[team][item] for item, team in zip(items.tolist(), teams.tolist())]
        names = tuple(a.name if team == TEAM_A else b.name for team in teams.tolist())
        return RecommendResult(merged, first.source, f"{first.model}+{second.model}", first.generation), names

    def report(self, click_types: Sequence[str]) -> dict:
        """The online report of this service's event store (arm A as control)."""
        if self.log is None:
            return {"impressions": 0, "detail": "impressions are not logged (online.impressions = false)"}
        self.log.flush()
        return read_report(self.log, click_types, control=self.config.arm_a)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        for arm in self.arms[1:]:
            arm.service.close()


def attribution(router: OnlineRouter, raw: Sequence, events: Sequence[Event]) -> Future | None:
    """Queue the attribution of the events whose body named a ``request_id`` (``raw[i]``
    is the request body of ``events[i]``); ``None`` when none did or nothing is logged."""
    if router.log is None:
        return None
    now = time.time()
    linked = [Attribution(body.request_id, router.stored_user(e.user_id), e.item_id, e.type,
                          now if e.time is None else e.time, e.event_id)
              for body, e in zip(raw, events) if getattr(body, "request_id", None)]
    return router.log.attribute(linked) if linked else None
