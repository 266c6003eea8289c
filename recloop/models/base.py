"""The one interface every recloop model implements.

A :class:`Recommender` is fitted on an :class:`~recloop.data.Interactions` log, then
scores a batch of users against every item of the catalog. What a model knows of a user
at scoring time is a :class:`~recloop.data.UserHistories` batch: by default the log it
was fitted on, in offline evaluation the training plus validation log, in serving the
live event log. ``recommend`` (top-k with the user's known items masked) and
``similar_items`` are written once, here, on top of ``score``.

Subclasses set ``name`` and ``config_class`` (a frozen dataclass of hyperparameters),
and implement ``_fit``, ``_score`` and, for persistence, ``_get_state``/``_set_state``.
Learned state ends in ``_``; hyperparameters never change after ``__init__``.

Optional capabilities, duck-typed (serving and evaluation use them when present):

* ``item_vectors() -> (n_items, d)``: item embeddings (similar items, diversity, ANN index).
* ``user_vectors(user_idx, history) -> (b, d)``: query vectors such that
  ``score(user_idx, history) == user_vectors(...) @ item_vectors().T`` (up to a per-item
  bias folded into an extra dimension), for approximate nearest-neighbour retrieval.
* ``text_to_item_vectors(text_embeddings) -> (n, d)``: maps text embeddings of items the
  model never saw into its item space, so cold items can be scored with ``user_vectors``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions, UserHistories
from recloop.data.social import UserGraph
from recloop.errors import ConfigError, NotFittedError
from recloop.models.artifact_writer import save_artifact
from recloop.typed_config import from_dict

UNKNOWN_USER = -1  # user_idx of a user the model was not fitted on (history only)


class Recommender(ABC):
    """Base class of all recommenders.

    Parameters
    ----------
    config:
        An instance of ``config_class``; or leave it out and pass hyperparameters as
        keyword arguments (``EASE(l2=500)``).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    #: Whether ``score`` values estimate ratings (so RMSE/MAE make sense).
    predicts_ratings: ClassVar[bool] = False
    #: Whether ``fit`` stops early on its ``valid``/``validate`` arguments; such a model's
    #: :meth:`refit_model` trains for the epoch count early stopping chose.
    uses_validation: ClassVar[bool] = False
    #: Whether a known user's scores use learned per-user state (an id embedding), so
    #: they differ from an unknown user's with the same history.
    scores_depend_on_user_id: ClassVar[bool] = False

    def __init__(self, config: Any = None, **hyperparameters: Any):
        if config is not None and hyperparameters:
            raise ConfigError(f"{type(self).__name__}: pass either a config or keyword hyperparameters, not both")
        if config is None:
            config = build_config(self.config_class, hyperparameters, owner=type(self).__name__)
        elif not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                              f"got {type(config).__name__}")
        self.config = config

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))
        return f"{type(self).__name__}({fields})"

    def refit_model(self) -> Recommender:
        """An unfitted copy to fit on more data with what model selection chose: the same
        hyperparameters (and, for a model that stopped early, the epoch count it chose,
        to train without validation). Used by the experiment's refit on training plus
        validation and by the refit on every interaction for serving."""
        return type(self)(self.config)

    # --- fitting ----------------------------------------------------------------------------
    def fit(self, train: Interactions, *, item_features: Features | None = None,
            user_features: Features | None = None, valid: Interactions | None = None,
            validate: Callable[[], float] | None = None, user_graph: UserGraph | None = None,
            callbacks: Sequence[Any] = ()) -> Self:
        """Learn from ``train`` (and side features, where the model uses them).

        ``user_graph`` is a user-user relation over ``train.users`` (friendships): kept as
        ``user_graph_`` and saved with the model (so the service knows it); social models
        use it, the others only carry it.

        ``valid`` holds validation targets for models that stop early (their history is
        ``train``) and ``validate`` returns the validation metric of the model as it is
        now; ``callbacks`` are extra :class:`~recloop.train.Callback` objects for the
        trainer of a neural model (a tuner's :class:`~recloop.train.ReportValidation`).
        Models without early stopping ignore all three. Every call starts from scratch.
        Returns ``self``.
        """
        self._remember(train, item_features, user_features, user_graph)
        self._fit(train, valid)
        return self

    def _remember(self, train: Interactions, item_features: Features | None, user_features: Features | None,
                  user_graph: UserGraph | None = None) -> None:
        """What every fit keeps, before the model's own ``_fit``."""
        if len(train) == 0:
            raise ConfigError(f"{type(self).__name__}.fit() got an empty training log")
        self.users_: IdMap = train.users
        self.items_: IdMap = train.items
        self.history_: Interactions = train
        self.item_features_ = item_features
        self.user_features_ = user_features
        self.user_graph_ = None if user_graph is None else user_graph.aligned_to(train.users)

    @classmethod
    def fit_grid(cls, candidates: Sequence[dict[str, Any]], train: Interactions, *,
                 item_features: Features | None = None, user_features: Features | None = None,
                 valid: Interactions | None = None,
                 validation: Callable[[Recommender], Callable[[], float]] | None = None,
                 user_graph: UserGraph | None = None) -> Iterator[Recommender]:
        """One fitted model per hyperparameter dict of ``candidates``, lazily and in order
        (a grid search scores each and drops it before the next is fitted).

        ``validation(model)`` gives the ``validate`` callback of a model that stops early
        (the caller builds it: models do not import the evaluator). Each model equals
        ``cls(**params).fit(train, ..., valid=valid, validate=validation(model))``; this
        default does exactly that. A model whose candidates share costly work overrides
        it (EASE builds the Gram matrix once for every l2).
        """
        for params in candidates:
            model = cls(**params)
            validate = validation(model) if validation is not None and valid is not None and len(valid) else None
            yield model.fit(train, item_features=item_features, user_features=user_features, valid=valid,
                            validate=validate, user_graph=user_graph)

    @abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Learn the model's state from ``train``; state attributes end in ``_``."""

    def _query_histories(self, user_idx: np.ndarray, history: UserHistories | None) -> tuple[np.ndarray, UserHistories]:
        """``user_idx`` as a flat int64 array and the histories to score them from:
        ``history`` when given, else the training log's (unknown users need one)."""
        user_idx = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        if history is None:
            if (user_idx == UNKNOWN_USER).any():
                raise ValueError("unknown users (user_idx -1) need an explicit history")
            history = self.history_.histories(user_idx)
        return user_idx, history

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "history_")

    def _check_fitted(self, action: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or recloop.artifact.load_model() "
                                 f"before {action}()")

    @property
    def n_users(self) -> int:
        self._check_fitted("n_users")
        return len(self.users_)

    @property
    def n_items(self) -> int:
        self._check_fitted("n_items")
        return len(self.items_)

    # --- scoring ----------------------------------------------------------------------------
    def score(self, user_idx: Sequence[int] | np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        """Scores of every item for each user: a ``(len(user_idx), n_items)`` float32 array.

        ``history`` is what the model may know of each user (row ``r`` for
        ``user_idx[r]``); by default the log the model was fitted on. Use
        ``UNKNOWN_USER`` (-1) as the index of a user the model never saw: it is scored
        from ``history`` alone. Higher is better; known items are *not* masked here.
        """
        self._check_fitted("score")
        user_idx = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        if user_idx.size and (user_idx.max() >= self.n_users or user_idx.min() < UNKNOWN_USER):
            bad = user_idx[(user_idx >= self.n_users) | (user_idx < UNKNOWN_USER)][0]
            raise IndexError(f"user_idx {bad} is out of range for {type(self).__name__} with {self.n_users} users")
        if history is None:
            if (user_idx == UNKNOWN_USER).any():
                raise ValueError("unknown users (user_idx -1) need an explicit history")
            history = self.history_.histories(user_idx)
        elif len(history) != len(user_idx):
            raise ValueError(f"history has {len(history)} rows for {len(user_idx)} users")
        scores = self._score(user_idx, history)
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().to("cpu", torch.float32).numpy()
        return np.asarray(scores, dtype=np.float32)

    @abstractmethod
    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray | torch.Tensor:
        """``(len(user_idx), n_items)`` scores; rows of unknown users (-1) from history alone."""

    def recommend(self, user_idx: Sequence[int] | np.ndarray, k: int = 10, history: UserHistories | None = None,
                  exclude_known: bool = True, exclude: Sequence[Sequence[int]] | None = None,
                  candidates: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user: ``(item_idx, scores)``, both ``(len(user_idx), k)``.

        Items in the user's ``history`` are left out when ``exclude_known``; ``exclude``
        lists more items per user to leave out; ``candidates`` restricts all users to a
        set of items. Where fewer than ``k`` items remain, the rest is ``-1`` with score
        ``-inf``.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if history is None and self.is_fitted and not (user_idx == UNKNOWN_USER).any():
            history = self.history_.histories(user_idx)
        scores = torch.from_numpy(self.score(user_idx, history))
        if exclude_known and history is not None:
            mask_items(scores, history.indptr, history.item_idx)
        if exclude is not None:
            if len(exclude) != len(user_idx):
                raise ValueError(f"exclude has {len(exclude)} rows for {len(user_idx)} users")
            lists = UserHistories.from_lists(exclude, self.n_items)
            mask_items(scores, lists.indptr, lists.item_idx)
        if candidates is not None:
            allowed = torch.zeros(self.n_items, dtype=torch.bool)
            allowed[torch.as_tensor(np.asarray(candidates, dtype=np.int64))] = True
            scores[:, ~allowed] = -torch.inf
        return top_k(scores, k)

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most related to ``item_idx``: ``(item_idx, scores)``, each ``(k,)``.

        By default: the scores the model gives an anonymous user whose whole history is
        that one item ("people who liked X also liked"). Embedding models override this
        with cosine similarity.
        """
        self._check_fitted("similar_items")
        if not 0 <= item_idx < self.n_items:
            raise IndexError(f"item_idx {item_idx} is out of range for {self.n_items} items")
        history = UserHistories.from_lists([[item_idx]], self.n_items)
        items, scores = self.recommend([UNKNOWN_USER], k, history=history)
        return items[0], scores[0]

    # --- persistence ------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (names are free; values numpy arrays)."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``_get_state`` returned."""

    def save(self, path: str | Path, metrics: dict | None = None, extra: dict | None = None) -> Path:
        """Write this fitted model as an artifact directory (see
        :mod:`recloop.models.artifact_writer`); read it back with
        :func:`recloop.artifact.load_artifact` (or ``load_model``)."""
        self._check_fitted("save")
        return save_artifact(self, Path(path), metrics=metrics, extra=extra)


def build_config(config_class: type, values: dict[str, Any], owner: str) -> Any:
    """Instantiate a config dataclass, checking names (closest valid one suggested) and types."""
    return from_dict(config_class, values, f"{owner}.")


def mask_items(scores: torch.Tensor, indptr: np.ndarray, item_idx: np.ndarray, value: float = -torch.inf) -> None:
    """Set ``scores[r, item_idx[indptr[r]:indptr[r+1]]] = value`` for every row, in place."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if len(rows):
        scores[torch.from_numpy(rows), torch.from_numpy(np.asarray(item_idx, dtype=np.int64))] = value


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-``k`` values and indices, highest first; equal scores are ordered by
    item index, so a ranking never depends on ``k`` or on thread scheduling (plain
    ``torch.topk`` breaks ties arbitrarily, which moves metrics of tie-heavy models
    such as popularity)."""
    extra = min(k + 1, scores.shape[1])
    values, indices = torch.topk(scores, extra, dim=1)
    if not bool((values[:, 1:] == values[:, :-1]).any()):
        # No two equal values among the top k + 1 (the common case for learned scores):
        # topk's order is already the unique answer; skip the tie-breaking sorts.
        return values[:, :k], indices[:, :k]
    kth = values[:, k - 1:k]
    # Rows whose (k+1)-th value ties the k-th have tied items spilling past the cut.
    spill = torch.nonzero(values[:, -1] == values[:, k - 1]).flatten() if extra > k else indices[:0, 0]
    indices = indices[:, :k].contiguous()
    if len(spill):
        rows = scores[spill]
        above, tied = rows > kth[spill], rows == kth[spill]
        room = k - above.sum(dim=1, keepdim=True)
        chosen = above | (tied & (torch.cumsum(tied, dim=1) <= room))  # lowest-index tied items
        indices[spill] = torch.nonzero(chosen)[:, 1].view(len(spill), k)
    # Ascending index first, then a stable sort by value: ties end up in index order.
    indices = torch.sort(indices, dim=1).values
    values = scores.gather(1, indices)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), indices.gather(1, order)


def stable_topk_row(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`stable_topk`'s ranking of one numpy row: the indices of the ``k`` highest
    ``scores``, highest first, equal scores by index. The same answer (a test holds the
    two together); for one served request numpy's partition is ~0.2 ms cheaper than the
    torch round trip, which the batched paths (evaluation, ``recommend``) amortise."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < len(scores):
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        top = np.flatnonzero(scores >= kth)  # every tie at the boundary, so that ties go by index
    else:
        top = np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))][:k].astype(np.int64)


def top_k(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` by score, highest first; masked (-inf) slots become item -1."""
    k_eff = min(k, scores.shape[1])
    values, indices = stable_topk(scores, k_eff)
    items = indices.numpy().astype(np.int64)
    values = values.numpy()
    items[~np.isfinite(values)] = -1
    if k_eff < k:
        pad = k - k_eff
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, values.astype(np.float32)
