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


def _relevance(scores: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to [0, 1] over the candidates (non-finite: -1)."""
    finite = np.isfinite(scores)
    if not finite.any():
        return np.full(len(scores), -1.0)
    low, high = scores[finite].min(), scores[finite].max()
    scaled = (scores - low) / (high - low) if high > low else np.zeros(len(scores))
    return np.where(finite, scaled, -1.0)


class Calibration:
    """Steck's calibrated re-ranking (see the module docstring) of the top ``k``.

    ``categories``: what the mix is over. ``lambda_`` in [0, 1]: 0 keeps the model's
    order, 1 only matches the mix. The remaining candidates follow the ``k`` chosen in
    their incoming order. Cost: ``k`` steps over ``(n, n_values)``.
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

    def target(self, history: np.ndarray) -> np.ndarray:
        """``p(c|u)`` of a history (item indices; unknown ones ignored): ``(n_values,)``."""
        rows = self._rows(np.asarray(history, dtype=np.int64))
        return rows.mean(axis=0) if len(rows) else np.zeros(self.distribution.shape[1])

    def _rows(self, item_idx: np.ndarray) -> np.ndarray:
        inside = (item_idx >= 0) & (item_idx < len(self.distribution))
        out = np.zeros((len(item_idx), self.distribution.shape[1]))
        out[inside] = self.distribution[item_idx[inside]]
        return out

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray, history: np.ndarray,
                 lambda_: float | None = None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The candidates re-ordered for the user of ``history``; ``lambda_`` and ``k``
        override the stage's for this call."""
        lambda_ = self.lambda_ if lambda_ is None else float(lambda_)
        item_idx, scores = as_candidates(item_idx, scores)
        n = len(item_idx)
        p = self.target(history)
        if n < 2 or lambda_ == 0.0 or p.sum() == 0:
            return item_idx, scores
        k = min(self.k if k is None else k, n)
        # KL(p || q~) = sum_c p_c log p_c - sum_c p_c log q~_c: the first sum is the same for
        # every candidate, so only the categories with p_c > 0 are followed.
        present = np.flatnonzero(p > 0)
        p = p[present]
        rows = self._rows(item_idx)[:, present]  # (n, present) p(c|i) of each candidate
        gain = (1.0 - lambda_) * _relevance(scores)
        mix = np.zeros(len(present))  # sum of p(c|i) over the chosen items
        alpha = CALIBRATION_ALPHA
        available = np.ones(n, dtype=bool)
        chosen = np.empty(k, dtype=np.int64)
        for step in range(k):
            # q~ of the list with each candidate added: (n, present)
            smoothed = ((1.0 - alpha) / (step + 1)) * (rows + mix) + alpha * p
            objective = gain + lambda_ * (np.log(smoothed) @ p)
            objective[~available] = -np.inf
            pick = int(np.argmax(objective))  # ties: the earlier (better-ranked) candidate
            chosen[step] = pick
            available[pick] = False
            mix += rows[pick]
        order = np.concatenate([chosen, np.flatnonzero(available)])
        return item_idx[order], scores[order]


class ExposureQuota:
    """At least ``min_share[g]`` of the top ``k`` from each named group ``g``, at every
    prefix (see the module docstring). An item of several groups counts for each."""

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

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        item_idx, scores = as_candidates(item_idx, scores)
        n = len(item_idx)
        if n < 2 or not len(self.columns):
            return item_idx, scores
        k = min(self.k, n)
        member = self.groups.rows(item_idx)[:, self.columns]  # (n, groups) in the incoming order
        # required[p - 1, g]: members of g needed among the first p slots
        required = np.floor(np.arange(1, k + 1)[:, None] * self.shares[None, :] + 1e-9).astype(np.int64)
        have = np.zeros(len(self.columns), dtype=np.int64)
        available = np.ones(n, dtype=bool)
        chosen = np.empty(k, dtype=np.int64)
        for step in range(k):
            pick = -1
            for g in np.flatnonzero(have < required[step]):
                members = np.flatnonzero(available & member[:, g])
                if len(members):
                    pick = int(members[0])  # the best remaining member of the group short of its quota
                    break
            if pick < 0:
                pick = int(np.argmax(available))  # the best remaining candidate
            chosen[step] = pick
            available[pick] = False
            have += member[pick]
        order = np.concatenate([chosen, np.flatnonzero(available)])
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

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray, history: np.ndarray,
                 calibration: float | None = None, min_share: Mapping[str, float] | None = None,
                 k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.k if k is None else k
        calibration = self.config.calibration if calibration is None else calibration
        min_share = self.config.min_share if min_share is None else min_share
        if (calibration, min_share) != (self.config.calibration, self.config.min_share):
            self._check(calibration, min_share)
        item_idx, scores = as_candidates(item_idx, scores)
        if calibration > 0:
            item_idx, scores = self._calibration(item_idx, scores, history, lambda_=calibration, k=k)
        if any(v > 0 for v in min_share.values()):
            item_idx, scores = self._quota(min_share, k)(item_idx, scores)
        return item_idx, scores


def fair_ranker(config: FairnessConfig, k: int, item_counts: np.ndarray,
                categorical: Mapping[str, ItemCategories], n_items: int | None = None) -> FairRanker:
    """A :class:`FairRanker` from a config: popularity tiers from ``item_counts``
    (training users per item), feature groups from ``categorical`` (name -> categories);
    a name missing from both leaves that part unavailable (an error only if used)."""
    tiers = popularity_tiers(item_counts, config.head_fraction, n_items)

    def resolve(name: str) -> ItemCategories | None:
        return tiers if name == POPULARITY else categorical.get(name)

    return FairRanker(config, k, resolve(config.calibration_feature), resolve(config.groups))
