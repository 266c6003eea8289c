"""Exposure-aware re-ranking: calibrated lists and an exposure quota for item groups
(arrays in, arrays out; the service and the offline evaluator both call :class:`FairRanker`).

**Calibration** is H. Steck, "Calibrated Recommendations", RecSys 2018: the category mix
of the list should match the user's history. With ``p(c|i) = 1 / |categories(i)|`` for
each category of item ``i``, the user's target is ``p(c|u) = mean_{i in history} p(c|i)``
and the list's mix ``q(c|L) = mean_{i in L} p(c|i)``. The list is built greedily,
adding at each step the candidate maximising::

    (1 - lambda) * sum_{i in L} rel(i)  -  lambda * KL(p || q~),   q~ = (1 - a) q + a p

with ``a = 0.01`` as in the paper (so that ``q~ > 0`` wherever ``p > 0``). Departures:
``rel`` is the model score min-max scaled to [0, 1] over the candidates (as MMR does in
:mod:`recloop.rank.rerank`), so that one ``lambda`` means the same for every model
whatever its score scale; and the paper's relevance sum is taken over the list so far
(``lambda`` then weighs one KL against k scaled scores, as in the paper).

The categories can be any categorical item feature (genres) or **popularity tiers**
(:func:`popularity_tiers`, head vs tail), which calibrates each list to how much of the
long tail the user consumes (the "calibrated popularity" of Abdollahpouri et al.,
RecSys 2021).

**Exposure quota**: at least ``min_share[g]`` of the top ``k`` from group ``g``, spread
over the ranks as FA*IR does (Zehlike et al., CIKM 2017): at every prefix of length
``p`` at least ``floor(min_share * p)`` items of ``g``; a slot is given to the best
remaining item of a group short of its quota, else to the best remaining item. Departure
from FA*IR: a fixed proportion per prefix instead of its binomial test. Groups are
popularity tiers by default, or any categorical item feature (genres, brands,
providers). When the candidates hold too few items of a group, its quota is met as far
as they allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from recloop.errors import ConfigError
from recloop.rank.rerank import ItemCategories, as_candidates

CALIBRATION_ALPHA = 0.01  # Steck's smoothing of q towards p (as recloop.utils.kl_divergence)
POPULARITY = "popularity"  # the groups/categories named by popularity tiers rather than an item feature
HEAD, TAIL = "head", "tail"


def popularity_tiers(item_counts: np.ndarray, head_fraction: float = 0.2, n_items: int | None = None
                     ) -> ItemCategories:
    """Items as ``head`` (the ``ceil(head_fraction * n)`` with most training users, ties
    to the lower index, as :func:`recloop.evaluate.metrics.long_tail_share` counts them)
    or ``tail`` (every other item, and items beyond ``item_counts``, up to ``n_items``:
    items added after training are tail)."""
    if not 0.0 < head_fraction < 1.0:
        raise ConfigError(f"head_fraction must be in (0, 1), got {head_fraction}")
    counts = np.asarray(item_counts)
    n = len(counts) if n_items is None else max(n_items, len(counts))
    head = np.zeros(n, dtype=bool)
    head[np.argsort(-counts, kind="stable")[:int(np.ceil(len(counts) * head_fraction))]] = True
    return ItemCategories(POPULARITY, (HEAD, TAIL), np.stack([head, ~head], axis=1))


def category_distribution(categories: ItemCategories) -> np.ndarray:
    """``(n_items, n_values)`` float64 rows ``p(c|i) = 1/|categories(i)|``; zero for an
    item without any."""
    matrix = categories.matrix.astype(np.float64)
    counts = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, counts, out=np.zeros_like(matrix), where=counts > 0)


def _relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(users, n)`` scores min-max scaled to [0, 1] per row over its valid, finite
    candidates (others: -1)."""
    usable = valid & np.isfinite(scores)
    low = np.where(usable, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(usable, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    with np.errstate(invalid="ignore"):
        scaled = np.where(high > low, (scores - low) / span, 0.0)
    return np.where(usable, scaled, -1.0)


def _order(chosen: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(users, n)`` positions: the ``chosen`` ones (``-1``: none) first, in their order,
    then the other valid candidates in their incoming order, then the invalid ones."""
    n = valid.shape[1]
    key = np.where(valid, n + np.arange(n), 2 * n + np.arange(n)).astype(np.int64)
    rows, steps = np.nonzero(chosen >= 0)
    key[rows, chosen[rows, steps]] = steps
    return np.argsort(key, axis=1, kind="stable")


def _batch(item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-d copies (one user: one row) and the mask of real candidates (not ``-1``)."""
    item_idx = np.atleast_2d(np.asarray(item_idx, dtype=np.int64))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    if item_idx.shape != scores.shape:
        raise ValueError(f"candidates of shape {item_idx.shape} but scores of shape {scores.shape}")
    return item_idx, scores, item_idx >= 0


class Calibration:
    """Steck's calibrated re-ranking (see the module docstring) of the top ``k``.

    ``categories``: what the mix is over. ``lambda_`` in [0, 1]: 0 keeps the model's
    order, 1 only matches the mix. The remaining candidates follow the ``k`` chosen in
    their incoming order. Batched: :meth:`order` re-ranks many users at once with ``k``
    vector steps over ``(users, n, categories)``; a call re-ranks one user.
    """

    def __init__(self, categories: ItemCategories, lambda_: float, k: int):
        if not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"calibration lambda must be in [0, 1], got {lambda_}")
        if k < 1:
            raise ConfigError(f"calibration k must be at least 1, got {k}")
        self.categories = categories
        self.distribution = category_distribution(categories)  # (n_items, n_values)
        self.lambda_ = float(lambda_)
        self.k = k

    def __repr__(self) -> str:
        return f"Calibration({self.categories.name!r}, lambda_={self.lambda_}, k={self.k})"

    def _rows(self, item_idx: np.ndarray) -> np.ndarray:
        """``p(c|i)`` of every index (any shape); unknown and ``-1`` ones are zero."""
        inside = (item_idx >= 0) & (item_idx < len(self.distribution))
        out = self.distribution[np.where(inside, item_idx, 0)]
        out[~inside] = 0.0
        return out

    def target(self, history: np.ndarray) -> np.ndarray:
        """``p(c|u)`` of a history (item indices; unknown ones ignored): ``(n_values,)``."""
        rows = self._rows(np.asarray(history, dtype=np.int64))
        return rows.mean(axis=0) if len(rows) else np.zeros(self.distribution.shape[1])

    def targets(self, indptr: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(users, n_values)`` targets of CSR histories (``indptr``, ``items``)."""
        indptr = np.asarray(indptr, dtype=np.int64)
        running = np.zeros((len(items) + 1, self.distribution.shape[1]))
        np.cumsum(self._rows(np.asarray(items, dtype=np.int64)), axis=0, out=running[1:])
        return (running[indptr[1:]] - running[indptr[:-1]]) / np.maximum(np.diff(indptr), 1)[:, None]

    def order(self, item_idx: np.ndarray, scores: np.ndarray, targets: np.ndarray, lambda_: float | None = None,
              k: int | None = None, chunk: int = 1024) -> np.ndarray:
        """``(users, n)`` positions putting each row's calibrated top ``k`` first;
        ``item_idx``/``scores`` are ``(users, n)`` candidates best first (``-1``: none),
        ``targets`` the ``(users, n_values)`` history mixes."""
        lambda_ = self.lambda_ if lambda_ is None else float(lambda_)
        item_idx, scores, valid = _batch(item_idx, scores)
        users, n = item_idx.shape
        k = min(self.k if k is None else k, n)
        chosen = np.full((users, k), -1, dtype=np.int64)
        active = (targets.sum(axis=1) > 0) & (valid.sum(axis=1) >= 2) & (lambda_ > 0)
        for lo in range(0, users, chunk):
            rows = np.flatnonzero(active[lo:lo + chunk]) + lo
            if len(rows):
                chosen[rows] = self._greedy(item_idx[rows], scores[rows], valid[rows], targets[rows], lambda_, k)
        return _order(chosen, valid)

    def _greedy(self, item_idx, scores, valid, p, lambda_, k) -> np.ndarray:
        users = len(item_idx)
        # KL(p || q~) = sum_c p_c log p_c - sum_c p_c log q~_c: the first sum is the same for
        # every candidate, so the objective only needs sum_c p_c log q~_c over p_c > 0.
        present = np.flatnonzero((p > 0).any(axis=0))
        p = p[:, present]  # (users, values)
        rows = self._rows(item_idx)[:, :, present]  # (users, n, values) p(c|i) of each candidate
        gain = (1.0 - lambda_) * _relevance(scores, valid)  # (users, n)
        mix = np.zeros_like(p)  # sum of p(c|i) over the chosen items
        available = valid.copy()
        chosen = np.full((users, k), -1, dtype=np.int64)
        everyone = np.arange(users)
        positive = p[:, None, :] > 0
        for step in range(k):
            # q~ of the list with each candidate added: (users, n, values)
            smoothed = ((1.0 - CALIBRATION_ALPHA) / (step + 1)) * (rows + mix[:, None, :]) + CALIBRATION_ALPHA * p[:, None, :]
            log_q = np.log(np.where(positive, smoothed, 1.0))
            objective = gain + lambda_ * np.einsum("unc,uc->un", log_q, p)
            objective[~available] = -np.inf
            pick = objective.argmax(axis=1)  # ties: the earlier (better-ranked) candidate
            ok = available[everyone, pick]  # False once a row has no candidate left
            chosen[ok, step] = pick[ok]
            available[everyone[ok], pick[ok]] = False
            mix[ok] += rows[everyone[ok], pick[ok]]
        return chosen

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray, history: np.ndarray,
                 lambda_: float | None = None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One user's candidates re-ordered for the user of ``history``; ``lambda_`` and
        ``k`` override the stage's for this call."""
        item_idx, scores = as_candidates(item_idx, scores)
        order = self.order(item_idx[None, :], scores[None, :], self.target(history)[None, :], lambda_, k)[0]
        return item_idx[order], scores[order]


class ExposureQuota:
    """At least ``min_share[g]`` of the top ``k`` from each named group ``g``, at every
    prefix (see the module docstring). An item of several groups counts for each.
    Batched like :class:`Calibration` (:meth:`order`); a call re-ranks one user."""

    def __init__(self, groups: ItemCategories, min_share: Mapping[str, float], k: int):
        if k < 1:
            raise ConfigError(f"exposure quota k must be at least 1, got {k}")
        for name, share in min_share.items():
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"exposure min_share[{name!r}] must be in [0, 1], got {share}")
        if sum(min_share.values()) > 1.0 + 1e-9:
            raise ConfigError(f"exposure min_share values add up to {sum(min_share.values()):.3g} > 1: "
                              "no list can satisfy them all")
        self.groups = groups
        names = [name for name, share in min_share.items() if share > 0]
        self.columns = np.array([np.flatnonzero(groups.value_mask([name]))[0] for name in names], dtype=np.int64)
        self.shares = np.array([min_share[name] for name in names], dtype=np.float64)
        self.k = k

    def __repr__(self) -> str:
        shares = {self.groups.values[c]: float(s) for c, s in zip(self.columns, self.shares)}
        return f"ExposureQuota({self.groups.name!r}, min_share={shares}, k={self.k})"

    def order(self, item_idx: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``(users, n)`` positions putting each row's top ``k`` under the quota first."""
        item_idx, scores, valid = _batch(item_idx, scores)
        users, n = item_idx.shape
        k = min(self.k, n)
        chosen = np.full((users, k), -1, dtype=np.int64)
        if not len(self.columns):
            return _order(chosen, valid)
        member = self.groups.rows(np.where(valid, item_idx, -1).ravel()).reshape(users, n, -1)[:, :, self.columns]
        member &= valid[:, :, None]
        # required[p - 1, g]: members of g needed among the first p slots
        required = np.floor(np.arange(1, k + 1)[:, None] * self.shares[None, :] + 1e-9).astype(np.int64)
        have = np.zeros((users, len(self.columns)), dtype=np.int64)
        available = valid.copy()
        everyone = np.arange(users)
        for step in range(k):
            pick = np.full(users, -1, dtype=np.int64)
            short = have < required[step]
            for g in range(len(self.columns)):
                # the best remaining member of a group short of its quota (groups in the order given)
                candidates = available & member[:, :, g]
                take = (pick < 0) & short[:, g] & candidates.any(axis=1)
                pick[take] = candidates[take].argmax(axis=1)
            rest = (pick < 0) & available.any(axis=1)
            pick[rest] = available[rest].argmax(axis=1)  # else the best remaining candidate
            ok = pick >= 0
            chosen[ok, step] = pick[ok]
            available[everyone[ok], pick[ok]] = False
            have[ok] += member[everyone[ok], pick[ok]]
        return _order(chosen, valid)

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        item_idx, scores = as_candidates(item_idx, scores)
        order = self.order(item_idx[None, :], scores[None, :])[0]
        return item_idx[order], scores[order]


@dataclass(frozen=True)
class FairnessConfig:
    """Exposure-aware re-ranking, the same table in an experiment (``[rerank]``) and in
    the serve settings (``[fairness]``).

    ``calibration``: Steck's lambda in [0, 1] (0: off). ``calibration_feature``: the
    categorical item feature whose mix is calibrated (``genre``), or ``popularity`` for
    the head/tail tiers. ``groups``: what the exposure quota counts: ``popularity``
    (head/tail tiers) or a categorical item feature (genre, brand, provider).
    ``min_share``: the least share of each listed group in the top ``k``, e.g.
    ``{tail = 0.2}`` (empty: no quota). ``head_fraction``: the share of items, by
    training popularity, that are ``head``. ``candidates``: how many of the model's best
    items the re-ranking chooses from (offline; the service uses its pipeline's).
    """

    calibration: float = 0.0
    calibration_feature: str = "genre"
    groups: str = POPULARITY
    min_share: Mapping[str, float] = field(default_factory=dict)
    head_fraction: float = 0.2
    candidates: int = 100

    def __post_init__(self):
        if not 0.0 <= self.calibration <= 1.0:
            raise ConfigError(f"fairness calibration must be in [0, 1], got {self.calibration}")
        if not 0.0 < self.head_fraction < 1.0:
            raise ConfigError(f"fairness head_fraction must be in (0, 1), got {self.head_fraction}")
        if self.candidates < 1:
            raise ConfigError(f"fairness candidates must be at least 1, got {self.candidates}")
        for name, share in self.min_share.items():
            if not 0.0 <= float(share) <= 1.0:
                raise ConfigError(f"fairness min_share[{name!r}] must be in [0, 1], got {share}")
        object.__setattr__(self, "min_share", {str(k): float(v) for k, v in self.min_share.items()})

    @property
    def enabled(self) -> bool:
        return self.calibration > 0 or any(v > 0 for v in self.min_share.values())


class FairRanker:
    """Calibration then the exposure quota, for one user's candidates.

    ``calibration_categories`` / ``groups``: :class:`ItemCategories` for the calibrated
    mix and the quota's groups (:func:`popularity_tiers` or a feature's). Call with
    ``(item_idx, scores, history)``: candidates best first, the user's history items;
    returns the re-ordered ``(item_idx, scores)``, its top ``k`` chosen. ``calibration``,
    ``min_share`` and ``k`` override the config's for one call (a request's own values).
    """

    def __init__(self, config: FairnessConfig, k: int, calibration_categories: ItemCategories | None,
                 groups: ItemCategories | None):
        self.config = config
        self.k = k
        self.calibration_categories = calibration_categories
        self.groups = groups
        self._quotas: dict[tuple, ExposureQuota] = {}
        self._calibration = None if calibration_categories is None else Calibration(calibration_categories, 0.0, k)
        self._check(config.calibration, config.min_share)

    def _check(self, calibration: float, min_share: Mapping[str, float]) -> None:
        if calibration > 0 and self.calibration_categories is None:
            raise ConfigError(f"calibration needs the categorical item feature {self.config.calibration_feature!r}, "
                              "which this data lacks; set calibration_feature = 'popularity' or another feature")
        if any(v > 0 for v in min_share.values()) and self.groups is None:
            raise ConfigError(f"an exposure quota needs the item groups {self.config.groups!r}, which this data lacks")
        if self.groups is not None:
            self.groups.value_mask(min_share)  # an unknown group is an UnknownIdError naming the closest

    def __repr__(self) -> str:
        return f"FairRanker({self.config}, k={self.k})"

    def _quota(self, min_share: Mapping[str, float], k: int) -> ExposureQuota:
        key = (tuple(sorted(min_share.items())), k)
        quota = self._quotas.get(key)
        if quota is None:
            if len(self._quotas) > 256:  # requests may bring their own shares: keep the cache small
                self._quotas.clear()
            quota = self._quotas[key] = ExposureQuota(self.groups, min_share, k)  # a benign race: same value
        return quota

    def rerank(self, item_idx: np.ndarray, scores: np.ndarray, history_indptr: np.ndarray,
               history_items: np.ndarray, calibration: float | None = None,
               min_share: Mapping[str, float] | None = None, k: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Many users at once: ``(users, n)`` candidates best first (``-1``: none) and
        their scores, each user's history as CSR (``history_indptr``, ``history_items``);
        returns both re-ordered, each row's top ``k`` chosen, ``-1`` slots last."""
        k = self.k if k is None else k
        calibration = self.config.calibration if calibration is None else calibration
        min_share = self.config.min_share if min_share is None else min_share
        if (calibration, min_share) != (self.config.calibration, self.config.min_share):
            self._check(calibration, min_share)
        item_idx, scores, _ = _batch(item_idx, scores)
        rows = np.arange(len(item_idx))[:, None]
        if calibration > 0:
            targets = self._calibration.targets(history_indptr, history_items)
            order = self._calibration.order(item_idx, scores, targets, lambda_=calibration, k=k)
            item_idx, scores = item_idx[rows, order], scores[rows, order]
        if any(v > 0 for v in min_share.values()):
            order = self._quota(min_share, k).order(item_idx, scores)
            item_idx, scores = item_idx[rows, order], scores[rows, order]
        return item_idx, scores

    def rerank_users(self, item_idx: np.ndarray, scores: np.ndarray, histories) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rerank` with the histories as a :class:`~recloop.data.interactions.UserHistories`
        (what :meth:`recloop.evaluate.evaluator.Evaluator.evaluate` passes as ``rerank``)."""
        return self.rerank(item_idx, scores, histories.indptr, histories.item_idx)

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray, history: np.ndarray,
                 calibration: float | None = None, min_share: Mapping[str, float] | None = None,
                 k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One user: ``item_idx``/``scores`` best first, ``history`` the user's items."""
        item_idx, scores = as_candidates(item_idx, scores)
        history = np.asarray(history, dtype=np.int64)
        items, out_scores = self.rerank(item_idx[None, :], scores[None, :], np.array([0, len(history)]), history,
                                        calibration, min_share, k)
        return items[0], out_scores[0]


def fair_ranker(config: FairnessConfig, k: int, item_counts: np.ndarray,
                categorical: Mapping[str, ItemCategories], n_items: int | None = None) -> FairRanker:
    """A :class:`FairRanker` from a config: popularity tiers from ``item_counts``
    (training users per item), feature groups from ``categorical`` (name -> categories);
    a name missing from both leaves that part unavailable (an error only if used)."""
    tiers = popularity_tiers(item_counts, config.head_fraction, n_items)

    def resolve(name: str) -> ItemCategories | None:
        return tiers if name == POPULARITY else categorical.get(name)

    return FairRanker(config, k, resolve(config.calibration_feature), resolve(config.groups))
