"""The recommendation pipeline: candidates -> re-ranking -> exploration -> explanations.

Each stage is one module holding its config, its code and its state, so a deployment
can swap or drop one:

1. **candidates** (:mod:`recloop.serve.retrieval`): the model scores the catalog (exact,
   or an index for vector models), cold items are scored from their text
   (:mod:`recloop.serve.coldstart`), known and excluded items and items outside the
   filters are left out; the best ``candidates`` remain.
2. **re-ranking** (:mod:`recloop.serve.rerank`): from the candidates to the ``k``
   shown, e.g. MMR diversity and a cap of exposure per category.
3. **exploration** (:mod:`recloop.serve.explore`): may swap some of the ``k`` for
   candidates it wants to learn about; learns from the events the service applies.
4. **explanations** (:mod:`recloop.serve.explain`): reasons for each item shown, when asked.

A query with friends (:mod:`recloop.serve.social`) whose user has almost no history takes
its candidates from the friends' blend instead of step 1; with ``explain``, items the
friends have say so.

Without a re-ranker or an explorer the top ``k`` candidates are the answer. A query
carries the catalog snapshot it was resolved against; every stage answers from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from recloop.serve.catalog import Catalog
    from recloop.serve.social import SocialStage
    from recloop.serve.state import LiveState, UserView


@dataclass(frozen=True)
class Query:
    """One recommendation request, ids already resolved to catalog indices."""

    view: UserView
    catalog: Catalog  # the snapshot every index of this query refers to
    k: int
    exclude: np.ndarray  # catalog indices
    allowed: np.ndarray | None = None  # boolean mask over ``catalog`` (filters)
    diversity: float | None = None  # None: the re-ranker's default
    explain: bool = False
    explore: bool = True
    similar: bool = False  # items related to one item (no user): reasons say "Similar to"
    calibration: float | None = None  # Steck's lambda; None: the fairness stage's default
    exposure: Mapping[str, float] | None = None  # least share per item group; None: the stage's default
    friends: np.ndarray | None = None  # the user's friends (model user indices), when known


@dataclass(frozen=True)
class Ranked:
    """The pipeline's answer in catalog indices, best first."""

    item_idx: np.ndarray
    scores: np.ndarray
    reasons: list[list[str]] | None
    source: str  # model, content or popularity (see CandidateStage.candidates)
    catalog: Catalog  # the query's snapshot: ids and titles of ``item_idx``
    explored: np.ndarray | None = None  # bool per item: placed by the explorer


class Reranker(Protocol):
    def rerank(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items to show, from candidates ``items`` (best first) with ``scores``."""


    # Optional: ``wants_candidates(query) -> bool``, False when it would keep the top k as
    # they are (then only k candidates are retrieved).


class Explorer(Protocol):
    def explore(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray,
                candidates: np.ndarray, candidate_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(items, scores, explored)``: the list to show, possibly with some of
        ``candidates`` swapped in; ``explored`` flags the swapped-in slots."""

    def observe(self, state: LiveState, events: list) -> None:
        """Learn from events (clicks, skips, ...) as the service applies them."""


class Explainer(Protocol):
    def explain(self, state: LiveState, query: Query, items: np.ndarray) -> list[list[str]]:
        """Human-readable reasons for each of ``items`` (catalog indices)."""


@dataclass(frozen=True)
class PipelineConfig:
    """``candidates``: how many items retrieval hands to re-ranking and exploration
    (at least ``k``); more gives diversity room at some latency."""

    candidates: int = 100


class Pipeline:
    """Runs the stages over a :class:`LiveState` for one :class:`Query`."""

    def __init__(self, config: PipelineConfig = PipelineConfig(), reranker: Reranker | None = None,
                 explorer: Explorer | None = None, explainer: Explainer | None = None,
                 social: SocialStage | None = None):
        self.config = config
        self.reranker, self.explorer, self.explainer = reranker, explorer, explainer
        self.social = social

    def run(self, state: LiveState, query: Query) -> Ranked:
        return self.run_batch(state, [query])[0]

    def run_batch(self, state: LiveState, queries: list[Query]) -> list[Ranked]:
        """Several queries: candidates for all in one model call, then each its own way."""
        needs_pool = any(self._needs_pool(q) for q in queries)
        n = max([self.config.candidates] + [q.k for q in queries]) if needs_pool else max(q.k for q in queries)
        social = [self.social is not None and self.social.applies(state, q) for q in queries]
        usual = [q for q, by_friends in zip(queries, social) if not by_friends]
        found = iter(state.retrieval.candidates([q.view for q in usual], n, [q.exclude for q in usual],
                                                [q.allowed for q in usual], [len(q.catalog) for q in usual],
                                                state.cold) if usual else [])
        return [self._finish(state, query, *(self.social.candidates(state, query, n) if by_friends else next(found)))
                for query, by_friends in zip(queries, social)]

    def _needs_pool(self, query: Query) -> bool:
        """Whether later stages choose among more than the top ``k``."""
        if self.explorer is not None and query.explore:
            return True
        if self.reranker is None:
            return False
        wants = getattr(self.reranker, "wants_candidates", None)
        return True if wants is None else wants(query)

    def _finish(self, state: LiveState, query: Query, items: np.ndarray, scores: np.ndarray, source: str) -> Ranked:
        pool_items, pool_scores = items, scores
        if self.reranker is not None:
            items, scores = self.reranker.rerank(state, query, items, scores, query.k)
        items, scores = items[:query.k], scores[:query.k]
        explored = None
        if self.explorer is not None and query.explore:
            items, scores, explored = self.explorer.explore(state, query, items, scores, pool_items, pool_scores)
        reasons = None
        if query.explain and self.explainer is not None:
            reasons = self.explainer.explain(state, query, items)
        if query.explain and self.social is not None and query.friends is not None:
            reasons = [([friends] if friends else []) + (reasons[r] if reasons is not None else [])
                       for r, friends in enumerate(self.social.reasons(state, query, items))]
        return Ranked(items, scores, reasons, source, query.catalog, explored)
