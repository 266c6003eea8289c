"""The candidate stage: the best catalog items for a batch of users, the one path the
service runs.

A model with item vectors (``item_vectors()``/``user_vectors()``) is searched through an
index (:mod:`recloop.rank.index`: exact up to ``RetrievalConfig.exact_max_items``
items, faiss above, or forced by ``RetrievalConfig.index``); any other model is scored
in full through ``model.score``. Items added while serving (cold items) are placed in
the index when the model can turn their text into item vectors, else scored by the
content path (:mod:`recloop.serve.coldstart`). Known, excluded and filtered-out items
never come back. Every top-k here is :func:`recloop.models.base.stable_topk_row`, the one-row
form of the ranking every model's ``recommend`` runs (ties by index).

The stage answers for one catalog snapshot per query (its size ``n_items``): items
added after the snapshot was taken are in the index already but are left out, so a
request's filter mask, scores and ids always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recloop.data.interactions import UserHistories
from recloop.errors import ConfigError, NotFittedError
from recloop.rank.index import Index, RetrievalConfig, build_index
from recloop.utils import make_rng

if TYPE_CHECKING:
    from recloop.serve.coldstart import ColdStart
    from recloop.serve.state import UserView

__all__ = ["CALIBRATION_SAMPLE", "CandidateStage", "RetrievalConfig", "has_vectors", "top_items"]

#: Catalog items the content path's quantile matching compares against (all, up to this many).
CALIBRATION_SAMPLE = 4096

Candidates = tuple[np.ndarray, np.ndarray, str]  # (item_idx, scores, source)


def has_vectors(model: Any) -> bool:
    """Whether ``model`` offers the ``item_vectors``/``user_vectors`` capabilities."""
    return callable(getattr(model, "item_vectors", None)) and callable(getattr(model, "user_vectors", None))


def top_items(scores: np.ndarray, n: int, blocked: np.ndarray,
              allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest finite ``scores`` outside ``blocked`` and
    inside ``allowed`` (a boolean mask as long as ``scores``), best first, ties by index.
    A model's NaN never reaches an answer."""
    from recloop.models.base import stable_topk_row

    scores = np.array(scores, dtype=np.float32)  # a copy: masked in place
    scores[np.isnan(scores)] = -np.inf
    blocked = blocked[(blocked >= 0) & (blocked < len(scores))]
    scores[blocked] = -np.inf
    if allowed is not None:
        scores[~allowed] = -np.inf
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    items = stable_topk_row(scores, n)
    values = scores[items]
    keep = np.isfinite(values)
    return items[keep], values[keep]


def stack_histories(histories: list[UserHistories]) -> UserHistories:
    """One-row histories as one batch."""
    if len(histories) == 1:
        return histories[0]
    lengths = np.asarray([len(h.item_idx) for h in histories], dtype=np.int64)
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    rating = None
    if histories[0].rating is not None:
        rating = np.concatenate([h.rating for h in histories])
    return UserHistories(indptr, np.concatenate([h.item_idx for h in histories]), histories[0].n_items, rating)


class CandidateStage:
    """Candidates for the users of one loaded model (see the module docstring).

    State: the index of the model's item vectors (grown by :meth:`add_items` as cold
    items arrive), the popularity fallback and the content path's calibration sample.
    """

    def __init__(self, model: Any, config: RetrievalConfig | None = None):
        config = config or RetrievalConfig()
        if not getattr(model, "is_fitted", False):
            raise NotFittedError(f"{type(model).__name__} is not fitted; call fit() or recloop.artifact.load_model() "
                                 "before serving it")
        self.model = model
        self.config = config
        self.n_model = model.n_items
        self.uses_vectors = has_vectors(model)
        self.index: Index | None = build_index(model.item_vectors(), config) if self.uses_vectors else None
        self.popularity = model.history_.item_counts().astype(np.float32)
        sample = np.arange(self.n_model)
        if self.n_model > CALIBRATION_SAMPLE:
            sample = np.sort(make_rng(0).choice(self.n_model, CALIBRATION_SAMPLE, replace=False))
        self.calibration_sample = sample

    def __repr__(self) -> str:
        return f"CandidateStage({type(self.model).__name__}, index={self.index!r})"

    @property
    def kind(self) -> str:
        """``exact``/``hnsw``/``ivf``/``ivfpq`` for the index, ``score`` for full scoring."""
        return self.index.kind if self.index is not None else "score"

    @property
    def item_vectors(self) -> np.ndarray | None:
        """``(n, d)`` vectors including cold items placed by the model, or ``None``."""
        return self.index.vectors if self.index is not None else None

    def add_items(self, vectors: np.ndarray) -> np.ndarray:
        """Place cold items in the index from their model vectors; their index positions."""
        if self.index is None:
            raise ConfigError(f"{type(self.model).__name__} has no item_vectors(), so new items cannot be "
                              "placed in its index; they are scored by content")
        return self.index.add(vectors)

    def user_vectors(self, user_idx: Sequence[int] | np.ndarray, history: UserHistories) -> np.ndarray:
        """The model's query vectors ``(len(user_idx), d)`` (``history``: model items only)."""
        if self.index is None:
            raise ConfigError(f"{type(self.model).__name__} has no user_vectors()")
        vectors = self.model.user_vectors(np.asarray(user_idx, dtype=np.int64).reshape(-1), history)
        if hasattr(vectors, "detach"):
            vectors = vectors.detach().cpu().float().numpy()
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def candidates(self, views: list[UserView], n: int, excludes: list[np.ndarray], alloweds: list[np.ndarray | None],
                   sizes: list[int], cold: ColdStart) -> list[Candidates]:
        """The ``n`` best items for each view, one model call for the batch.

        ``excludes``: catalog indices to leave out besides ``view.known``. ``alloweds``:
        boolean masks over each query's catalog (filters), or ``None``. ``sizes``: each
        query's catalog size (its snapshot). ``source`` says how scores were made:
        ``model``, ``content`` (only cold items known) or ``popularity`` (no signal).
        Fewer than ``n`` come back when fewer remain.
        """
        n_model = self.n_model
        out: list = [None] * len(views)
        blocked = [v.known if not len(e) else np.union1d(v.known, e) for v, e in zip(views, excludes)]
        rows = []
        for r, view in enumerate(views):
            n_cold = sizes[r] - n_model
            if len(view.history.item_idx):
                rows.append(r)
                continue
            content = cold.content_scores(view.positives, n_model, n_cold) if n_cold else None
            if content is not None:
                out[r] = (*top_items(content, n, blocked[r], alloweds[r]), "content")
            else:
                scores = np.concatenate([self.popularity, np.zeros(n_cold, np.float32)])
                out[r] = (*top_items(scores, n, blocked[r], alloweds[r]), "popularity")
        if not rows:
            return out
        users = np.asarray([views[r].user_idx for r in rows], dtype=np.int64)
        history = stack_histories([views[r].history for r in rows])
        if self.index is not None:
            self._search(views, n, blocked, alloweds, sizes, cold, rows, users, history, out)
            return out
        all_scores = self.model.score(users, history)  # (b, n_model): one model call
        for j, r in enumerate(rows):
            model_scores = all_scores[j]
            n_cold = sizes[r] - n_model
            scores = model_scores
            if n_cold:
                cold_scores = cold.scores(None, views[r].positives, n_model, n_cold, self.calibration_sample,
                                          model_scores[self.calibration_sample])
                scores = np.concatenate([model_scores, cold_scores])
            out[r] = (*top_items(scores, n, blocked[r], alloweds[r]), "model")
        return out

    def _search(self, views, n, blocked, alloweds, sizes, cold, rows, users, history, out) -> None:
        """The index branch of :meth:`candidates`."""
        index, n_model = self.index, self.n_model
        queries = self.user_vectors(users, history)  # (b, d): one model call
        indexed = len(index)
        for r in rows:  # items placed in the index after this query's snapshot are not in it
            if indexed > sizes[r]:
                blocked[r] = np.union1d(blocked[r], np.arange(sizes[r], indexed))
        unfiltered = [j for j, r in enumerate(rows) if alloweds[r] is None]
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if unfiltered:  # one index search for every unfiltered query
            items, scores = index.search(queries[unfiltered], n, exclude=[blocked[rows[j]] for j in unfiltered])
            found.update({j: (items[i], scores[i]) for i, j in enumerate(unfiltered)})
        for j, r in enumerate(rows):
            if j not in found:
                items, scores = index.search(queries[j:j + 1], n, exclude=[blocked[r]],
                                             allowed=np.flatnonzero(alloweds[r][:min(indexed, sizes[r])]))
                found[j] = (items[0], scores[0])
            items, scores = found[j]
            keep = items >= 0
            items, scores = items[keep], scores[keep]
            placed = min(indexed, sizes[r])
            if placed < sizes[r]:  # cold items outside the index: the content path
                sample_scores = index.vectors[self.calibration_sample] @ queries[j]
                cold_scores = cold.scores(None, views[r].positives, n_model, sizes[r] - n_model,
                                          self.calibration_sample, sample_scores)[placed - n_model:]
                allowed = alloweds[r]
                cold_idx, cold_scores = top_items(cold_scores, n, blocked[r] - placed,
                                                  None if allowed is None else allowed[placed:])
                items = np.concatenate([items, cold_idx + placed])
                order, scores = top_items(np.concatenate([scores, cold_scores]), n, np.zeros(0, np.int64))
                items = items[order]
            out[r] = (items, scores, "model")
