"""Exploration over the candidates: show some items the model is unsure of, learn from clicks.

Two explorers, each with one :meth:`explore` method: candidates ``(item_idx, scores)`` in,
best first; an :class:`Exploration` out, the re-ordered candidates and which shown items
are there by exploration:

* :class:`EpsilonGreedy`: each of the top ``k`` slots is, with probability ``epsilon``,
  given to a uniformly drawn candidate from below the top ``k``. Learns nothing; the model
  exploits.
* :class:`LinearBandit`: a linear bandit with one model per item ("disjoint" arms).
  ``policy="ucb"`` is LinUCB (L. Li, W. Chu, J. Langford, R. Schapire, "A Contextual-Bandit
  Approach to Personalized News Article Recommendation", WWW 2010, Algorithm 1):
  ``p_a = theta_a . x + alpha * sqrt(x' A_a^-1 x)`` with ``A_a = l2 I + sum x x'`` and
  ``theta_a = A_a^-1 b_a``, ``b_a = sum reward * x``. ``policy="thompson"`` is linear
  Thompson sampling (S. Agrawal, N. Goyal, "Thompson Sampling for Contextual Bandits with
  Linear Payoffs", ICML 2013): ``theta~_a ~ N(theta_a, alpha^2 A_a^-1)``; since arms are
  disjoint, ``x . theta~_a`` is sampled directly as a scalar Gaussian.

Learning is from logged events, one observation each: ``update(item_idx, context,
reward)`` with reward 1 for a click (or purchase) on a shown item and 0 for a shown item
that was skipped or not clicked. The context must be the one the item was shown with
(e.g. a projection of the user's vector, see :class:`RandomProjection`). Departure from
the paper: ``A`` and ``b`` are summed per arm and ``A^-1`` recomputed for the arms a batch
touches (exact, no Sherman-Morrison drift); arms are created on first sight, so the
catalog may grow. An arm never updated has ``theta = 0`` and the prior width, so unseen
items tie and keep their incoming (model) order; ``score_weight`` adds the model score
(min-max scaled over the candidates) to the index as a prior.

State is a few numpy arrays (:meth:`LinearBandit.get_state`), persistable with
safetensors or ``np.savez``; no pickle. Random state comes from one seeded generator.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recloop.errors import ConfigError
from recloop.rank.rerank import as_candidates
from recloop.utils import make_rng


@dataclass(frozen=True)
class Exploration:
    """An explorer's answer: the re-ordered candidates and, per position, whether the
    item is there by exploration (shown only because the explorer put it there)."""

    item_idx: np.ndarray
    scores: np.ndarray
    explored: np.ndarray


class EpsilonGreedy:
    """Each top-``k`` slot goes, with probability ``epsilon``, to a random lower candidate.

    Displaced items follow the top ``k`` in their incoming order, then the rest.
    """

    def __init__(self, epsilon: float = 0.1, k: int = 10, seed: int | np.random.Generator | None = 0):
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"EpsilonGreedy epsilon must be in [0, 1], got {epsilon}")
        if k < 1:
            raise ConfigError(f"EpsilonGreedy k must be at least 1, got {k}")
        self.epsilon = float(epsilon)
        self.k = k
        self._rng = make_rng(seed)
        self._lock = threading.Lock()  # numpy generators are not thread safe

    def __repr__(self) -> str:
        return f"EpsilonGreedy(epsilon={self.epsilon}, k={self.k})"

    def explore(self, item_idx: np.ndarray, scores: np.ndarray) -> Exploration:
        item_idx, scores = as_candidates(item_idx, scores)
        n = len(item_idx)
        k = min(self.k, n)
        with self._lock:
            slots = np.flatnonzero(self._rng.random(k) < self.epsilon)
            slots = slots[:n - k]  # no more explored slots than candidates below the top k
            drawn = k + self._rng.choice(n - k, size=len(slots), replace=False) if len(slots) else slots
        order = np.arange(n)
        order[slots] = drawn
        used = np.zeros(n, dtype=bool)
        used[order[:k]] = True
        order = np.concatenate([order[:k], np.flatnonzero(~used)])
        explored = np.zeros(n, dtype=bool)
        explored[slots] = True
        return Exploration(item_idx[order], scores[order], explored)


@dataclass(frozen=True)
class LinearBanditConfig:
    """``dim``: context length. ``policy``: ``"ucb"`` (LinUCB) or ``"thompson"``.
    ``alpha``: the UCB width or the Thompson posterior scale (larger explores more).
    ``l2``: ridge prior, ``A`` starts at ``l2 * I``. ``k``: slots the bandit fills (the
    rest keep their incoming order). ``score_weight``: weight of the model score added
    to each item's index (0: the bandit alone decides the top ``k``)."""

    dim: int
    policy: str = "ucb"
    alpha: float = 1.0
    l2: float = 1.0
    k: int = 10
    score_weight: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.dim < 1:
            raise ConfigError(f"LinearBanditConfig.dim must be at least 1, got {self.dim}")
        if self.policy not in ("ucb", "thompson"):
            raise ConfigError(f"LinearBanditConfig.policy must be 'ucb' or 'thompson', got {self.policy!r}")
        if self.alpha < 0 or self.l2 <= 0:
            raise ConfigError(f"LinearBanditConfig needs alpha >= 0 and l2 > 0, got alpha={self.alpha}, l2={self.l2}")
        if self.k < 1:
            raise ConfigError(f"LinearBanditConfig.k must be at least 1, got {self.k}")


class LinearBandit:
    """A disjoint linear bandit over items (see the module docstring).

    >>> bandit = LinearBandit(LinearBanditConfig(dim=8, policy="ucb", alpha=0.5, k=10))
    >>> shown = bandit.explore(candidates, scores, context)     # context: (8,) or (n, 8)
    >>> bandit.update(clicked_item, context, 1.0)              # and 0.0 for shown, not clicked
    >>> state = bandit.get_state(); LinearBandit(config).set_state(state)

    Thread safe: selections and updates may come from concurrent requests.
    """

    def __init__(self, config: LinearBanditConfig | None = None, **hyperparameters):
        if config is not None and hyperparameters:
            raise ConfigError("LinearBandit: pass either a config or keyword hyperparameters, not both")
        self.config = config if config is not None else LinearBanditConfig(**hyperparameters)
        self._rng = make_rng(self.config.seed)
        self._lock = threading.Lock()
        self._reset(np.empty(0, np.int64), np.empty((0, self.config.dim, self.config.dim)),
                    np.empty((0, self.config.dim)))

    def __repr__(self) -> str:
        c = self.config
        return f"LinearBandit(dim={c.dim}, policy={c.policy!r}, alpha={c.alpha}, arms={self.n_arms})"

    def _reset(self, arm_item: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        # item_idx -> arm row (-1: no arm yet), a dense array for vectorised lookups.
        self._row = np.full(int(np.max(arm_item, initial=-1)) + 1, -1, dtype=np.int64)
        self._row[np.asarray(arm_item, dtype=np.int64)] = np.arange(len(arm_item))
        self._n = len(arm_item)
        # Per-arm buffers grow by doubling, so a new item costs O(d^2), not a copy of all arms.
        self._items = np.array(arm_item, dtype=np.int64)
        self._a = np.array(a, dtype=np.float64)  # (arms, d, d): l2 I + sum x x'
        self._b = np.array(b, dtype=np.float64)  # (arms, d): sum reward * x
        self._a_inv = np.linalg.inv(self._a) if self._n else self._a.copy()
        self._theta = np.einsum("mde,me->md", self._a_inv, self._b)

    def _grow(self, new: int) -> None:
        need = self._n + new
        if need <= len(self._items):
            return
        capacity = max(need, 2 * len(self._items), 16)
        for name in ("_items", "_a", "_b", "_a_inv", "_theta"):
            old = getattr(self, name)
            grown = np.zeros((capacity,) + old.shape[1:], dtype=old.dtype)
            grown[:self._n] = old[:self._n]
            setattr(self, name, grown)

    def _rows(self, items: np.ndarray) -> np.ndarray:
        """Arm row of each item, -1 for items without an arm (or negative)."""
        inside = (items >= 0) & (items < len(self._row))
        if inside.all():
            return self._row[items]
        return np.where(inside, self._row[np.where(inside, items, 0)] if len(self._row) else -1, -1)

    @property
    def n_arms(self) -> int:
        """Items with at least one observation."""
        return self._n

    @property
    def arm_item_(self) -> np.ndarray:
        return self._items[:self._n]

    @property
    def a_(self) -> np.ndarray:
        return self._a[:self._n]

    @property
    def b_(self) -> np.ndarray:
        return self._b[:self._n]

    # --- learning ----------------------------------------------------------------------------
    def _context(self, context: np.ndarray | Sequence[float], n: int, what: str) -> np.ndarray:
        x = np.asarray(context, dtype=np.float64)
        if x.ndim == 1:
            x = np.broadcast_to(x, (n, len(x)))
        if x.shape != (n, self.config.dim):
            raise ValueError(f"{what} context must be ({self.config.dim},) or ({n}, {self.config.dim}), "
                             f"got shape {np.shape(context)}")
        if not np.isfinite(x).all():
            raise ValueError(f"{what} context contains NaN or infinite values")
        return x

    def update(self, item_idx: int | Sequence[int] | np.ndarray, context: np.ndarray | Sequence[float],
               reward: float | Sequence[float] | np.ndarray) -> None:
        """Learn from observed rewards: one event, or a batch (``item_idx`` ``(m,)``,
        ``context`` ``(d,)`` or ``(m, d)``, ``reward`` scalar or ``(m,)``)."""
        items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        x = self._context(context, len(items), "update")
        rewards = np.broadcast_to(np.asarray(reward, dtype=np.float64), items.shape)
        if not np.isfinite(rewards).all():
            raise ValueError("rewards must be finite numbers")
        if (items < 0).any():
            raise ValueError(f"item_idx must be >= 0, got {items[items < 0][0]}")
        d = self.config.dim
        with self._lock:
            new = np.unique(items[self._rows(items) < 0])
            if len(new):
                self._grow(len(new))
                start, end = self._n, self._n + len(new)
                if new.max() >= len(self._row):
                    grown = np.full(max(int(new.max()) + 1, len(self._row) + len(self._row) // 4), -1, np.int64)
                    grown[:len(self._row)] = self._row
                    self._row = grown
                self._row[new] = np.arange(start, end)
                self._items[start:end] = new
                self._a[start:end] = self.config.l2 * np.eye(d)
                self._b[start:end] = 0.0
                self._n = end
            rows = self._rows(items)
            np.add.at(self._a, rows, np.einsum("md,me->mde", x, x))
            np.add.at(self._b, rows, rewards[:, None] * x)
            touched = np.unique(rows)
            self._a_inv[touched] = np.linalg.inv(self._a[touched])
            self._theta[touched] = np.einsum("mde,me->md", self._a_inv[touched], self._b[touched])

    # --- choosing ----------------------------------------------------------------------------
    def index(self, item_idx: np.ndarray, context: np.ndarray | Sequence[float]) -> np.ndarray:
        """The bandit's value of each item in this context: the UCB, or a Thompson draw."""
        items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        x = self._context(context, len(items), "select")
        c = self.config
        with self._lock:
            rows = self._rows(items)
            seen = rows >= 0
            mean = np.zeros(len(items))
            variance = np.einsum("nd,nd->n", x, x) / c.l2  # the prior A^-1 = I / l2
            if seen.any():
                xs = x[seen]
                mean[seen] = np.einsum("nd,nd->n", self._theta[rows[seen]], xs)
                variance[seen] = np.einsum("nd,nde,ne->n", xs, self._a_inv[rows[seen]], xs)
            width = c.alpha * np.sqrt(np.maximum(variance, 0.0))
            if c.policy == "ucb":
                return mean + width
            return mean + width * self._rng.standard_normal(len(items))

    def explore(self, item_idx: np.ndarray, scores: np.ndarray, context: np.ndarray | Sequence[float],
                k: int | None = None) -> Exploration:
        """Fill the top ``k`` (default ``config.k``) by the bandit's index plus
        ``score_weight`` times the model score min-max scaled to [0, 1] over the
        candidates (so that the weight means the same whatever the model's score scale);
        the other candidates follow in their incoming order. Ties keep the incoming order.
        ``explored`` marks top-``k`` items that were not in the incoming top ``k``."""
        item_idx, scores = as_candidates(item_idx, scores)
        n = len(item_idx)
        if n == 0:
            return Exploration(item_idx, scores, np.zeros(0, dtype=bool))
        x = np.asarray(context, dtype=np.float64)
        if x.ndim == 2 and len(x) != n:  # padding slots were dropped: contexts must match
            raise ValueError(f"context has {len(x)} rows for {n} candidates")
        value = self.index(item_idx, x)
        if self.config.score_weight:
            value = value + self.config.score_weight * _min_max(scores)
        k = min(self.config.k if k is None else k, n)
        top = np.argsort(-value, kind="stable")[:k]
        rest = np.ones(n, dtype=bool)
        rest[top] = False
        order = np.concatenate([top, np.flatnonzero(rest)])
        explored = np.zeros(n, dtype=bool)
        explored[:k] = order[:k] >= k
        return Exploration(item_idx[order], scores[order], explored)

    # --- persistence -------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """``arm_item`` ``(arms,)``, ``a`` ``(arms, d, d)``, ``b`` ``(arms, d)``: plain arrays."""
        with self._lock:
            return {"arm_item": self.arm_item_.copy(), "a": self.a_.copy(), "b": self.b_.copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> LinearBandit:
        """Restore :meth:`get_state`'s arrays (the random generator restarts from the seed)."""
        arm_item, a, b = (np.asarray(state[name]) for name in ("arm_item", "a", "b"))
        d = self.config.dim
        if a.shape != (len(arm_item), d, d) or b.shape != (len(arm_item), d):
            raise ConfigError(f"bandit state of shapes a={a.shape}, b={b.shape} does not fit "
                              f"{len(arm_item)} arms of dimension {d}")
        with self._lock:
            self._reset(arm_item, a, b)
        return self


def _min_max(scores: np.ndarray) -> np.ndarray:
    """``scores`` scaled to [0, 1] over the finite ones; non-finite scores count 0."""
    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros(len(scores))
    low, high = scores[finite].min(), scores[finite].max()
    scaled = (scores - low) / (high - low) if high > low else np.zeros(len(scores))
    return np.where(finite, scaled, 0.0)


class RandomProjection:
    """A fixed random projection of user vectors to a short bandit context, with a
    leading constant 1 (the per-item bias): ``context(v) = [1, normalise(v @ P)]``,
    ``P`` Gaussian ``(in_dim, dim - 1)`` from ``seed`` (Johnson-Lindenstrauss: cosines
    are roughly kept, and ``d^2`` bandit memory per item stays small)."""

    def __init__(self, in_dim: int, dim: int = 8, seed: int = 0):
        if dim < 1 or in_dim < 1:
            raise ConfigError(f"RandomProjection needs in_dim >= 1 and dim >= 1, got {in_dim}, {dim}")
        self.dim = dim
        self.matrix = make_rng(seed).standard_normal((in_dim, dim - 1)) / np.sqrt(max(dim - 1, 1))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float64)
        projected = np.atleast_2d(v) @ self.matrix
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        out = np.concatenate([np.ones((len(projected), 1)), projected], axis=1)
        return out[0] if v.ndim == 1 else out
