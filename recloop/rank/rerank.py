"""Re-ranking algorithms: MMR diversity and a cap of exposure per category (arrays in, arrays out).

Filters are not a re-ranking step: the candidate stage applies them (an ``allowed``
mask) so that a narrow filter still fills the list.

Every stage has one contract: it is called with one user's candidates, ``item_idx``
``(n,)`` and their ``scores`` ``(n,)`` best first, and returns ``(item_idx, scores)``
re-ordered or filtered, each score still the one it came in with (the model's score).
Slots of ``-1`` (padding from retrieval) are dropped by every stage. Stages compose with
:func:`chain`::

    genres = ItemCategories.from_features(item_features, "genre")
    stages = chain(MMR(VectorSimilarity(retriever.item_vectors), lambda_=0.7, k=10),
                   CategoryCap(genres, max_per_value=3, k=10))
    items, scores = stages(candidate_items, candidate_scores)

MMR is Carbonell & Goldstein, "The Use of MMR, Diversity-Based Reranking for Reordering
Documents and Producing Summaries", SIGIR 1998: pick next the candidate maximising
``lambda * rel(i) - (1 - lambda) * max_{j picked} sim(i, j)``. Departure: ``rel`` is the
model score min-max scaled to [0, 1] over the candidates, so that ``lambda`` means the
same for every model whatever its score scale (similarities are cosines, in [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from recloop.data.features import Features
from recloop.errors import ConfigError, UnknownIdError, closest

Stage = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def as_candidates(item_idx: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-d copies without the ``-1`` padding slots."""
    item_idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(item_idx) != len(scores):
        raise ValueError(f"{len(item_idx)} candidate items but {len(scores)} scores")
    keep = item_idx >= 0
    return (item_idx, scores) if keep.all() else (item_idx[keep], scores[keep])


def chain(*stages: Stage) -> Stage:
    """One stage running ``stages`` in order."""

    def run(item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        item_idx, scores = as_candidates(item_idx, scores)
        for stage in stages:
            item_idx, scores = stage(item_idx, scores)
        return item_idx, scores

    return run


# --- categories of items ------------------------------------------------------------------------
class ItemCategories:
    """One categorical feature of the items (e.g. genre) as a dense boolean matrix.

    ``matrix[i, v]`` is true when item ``i`` has value ``values[v]``; items beyond the
    matrix (added after it was built) have no value. Memory: ``n_items * n_values``
    bytes. Rebuild it from the features after items are added with ``Features.append``.
    """

    def __init__(self, name: str, values: Sequence[str], matrix: np.ndarray):
        self.name = name
        self.values = tuple(values)
        self.matrix = np.ascontiguousarray(matrix, dtype=bool)
        if self.matrix.ndim != 2 or self.matrix.shape[1] != len(self.values):
            raise ValueError(f"category matrix of shape {self.matrix.shape} does not fit {len(self.values)} values")
        self._position = {v: j for j, v in enumerate(self.values)}
        folded: dict[str, list[int]] = {}
        for j, v in enumerate(self.values):
            folded.setdefault(v.casefold(), []).append(j)
        # "comedy" finds "Comedy" when that is the only case-insensitive match.
        self._folded = {v: js[0] for v, js in folded.items() if len(js) == 1}

    @classmethod
    def from_features(cls, features: Features, name: str) -> ItemCategories:
        if name not in features.categorical:
            raise ConfigError(f"no categorical item feature {name!r}{closest(name, features.categorical)}; "
                              f"categorical features are {sorted(features.categorical)}")
        feature = features.categorical[name]
        return cls(name, feature.values, feature.matrix.toarray() > 0)

    def __repr__(self) -> str:
        return f"ItemCategories({self.name!r}, n_items={len(self.matrix)}, values={len(self.values)})"

    def rows(self, item_idx: np.ndarray) -> np.ndarray:
        """``(len(item_idx), n_values)`` booleans; unknown (new) items have none."""
        item_idx = np.asarray(item_idx, dtype=np.int64)
        inside = (item_idx >= 0) & (item_idx < len(self.matrix))
        if inside.all():
            return self.matrix[item_idx]
        out = np.zeros((len(item_idx), len(self.values)), dtype=bool)
        out[inside] = self.matrix[item_idx[inside]]
        return out

    def labels(self, item_idx: int) -> list[str]:
        """The values of one item, in vocabulary order."""
        return [self.values[j] for j in np.flatnonzero(self.rows(np.array([item_idx]))[0])]

    def value_mask(self, values: Iterable[str]) -> np.ndarray:
        """``(n_values,)`` booleans for ``values`` (matched exactly, else ignoring case); an
        unknown value is an error naming the closest valid one."""
        mask = np.zeros(len(self.values), dtype=bool)
        for value in values:
            position = self._position.get(value, self._folded.get(str(value).casefold()))
            if position is None:
                raise UnknownIdError(f"unknown {self.name} {value!r}{closest(value, self.values)}; "
                                     f"{self.name} values are {list(self.values)[:30]}")
            mask[position] = True
        return mask

    def items_with_any(self, values: Iterable[str]) -> np.ndarray:
        """Item indices having at least one of ``values`` (e.g. a retrieval ``allowed`` set)."""
        return np.flatnonzero(self.matrix[:, self.value_mask(values)].any(axis=1))


# --- diversity -----------------------------------------------------------------------------------
def _cosine(rows: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine similarities of the rows (a zero row is similar to nothing)."""
    # Small matrix products go through torch: numpy's multi-threaded OpenBLAS took ~20 ms
    # for a 200x64 product on the busy 2-core machine against ~40 us for torch. Imported
    # here so that importing the algorithms (and the settings naming them) stays light.
    import torch

    tensor = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)), dim=1)
    return (tensor @ tensor.T).numpy()


class VectorSimilarity:
    """Cosine similarity of item vectors (any array indexable by item_idx, e.g.
    ``retriever.item_vectors``, which includes items added at runtime)."""

    def __init__(self, vectors: np.ndarray):
        if hasattr(vectors, "detach"):  # a torch tensor
            vectors = vectors.detach().cpu().float().numpy()
        self.vectors = vectors

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        return _cosine(np.asarray(self.vectors[item_idx], dtype=np.float32))


class CategorySimilarity:
    """Cosine similarity of category multi-hot vectors (genre vectors): 1 for the same
    genres, 0 for disjoint ones or an item without any."""

    def __init__(self, categories: ItemCategories):
        self.categories = categories

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        return _cosine(self.categories.rows(item_idx).astype(np.float32))


class MMR:
    """Maximal marginal relevance re-ranking (see the module docstring).

    ``similarity``: a callable giving the ``(n, n)`` similarity of candidate items
    (:class:`VectorSimilarity`, :class:`CategorySimilarity`). ``lambda_`` in [0, 1]: 1 is
    the model's order, 0 pure diversity. ``k``: positions chosen by MMR (the number shown;
    ``None`` for all); the remaining candidates follow in their incoming order. Cost:
    one ``(n, n)`` similarity and ``k`` vector steps of length ``n``.
    """

    def __init__(self, similarity: Callable[[np.ndarray], np.ndarray], lambda_: float = 0.7, k: int | None = None):
        if not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"MMR lambda_ must be in [0, 1], got {lambda_}")
        if k is not None and k < 1:
            raise ConfigError(f"MMR k must be at least 1 or None, got {k}")
        self.similarity = similarity
        self.lambda_ = float(lambda_)
        self.k = k

    def __repr__(self) -> str:
        return f"MMR({type(self.similarity).__name__}, lambda_={self.lambda_}, k={self.k})"

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        item_idx, scores = as_candidates(item_idx, scores)
        n = len(item_idx)
        k = n if self.k is None else min(self.k, n)
        if n < 2 or self.lambda_ == 1.0:
            return item_idx, scores
        finite = np.isfinite(scores)
        low, high = (scores[finite].min(), scores[finite].max()) if finite.any() else (0.0, 0.0)
        relevance = np.where(finite, (scores - low) / (high - low) if high > low else 0.0, -1.0)
        gain = self.lambda_ * relevance  # (n,) the relevance half of the objective
        # objective_i = min over picked j of (gain_i - (1 - lambda) sim_ij), i.e. gain minus
        # the largest redundancy; with the rows of ``pair`` precomputed, a step is one
        # minimum and one argmax over n values.
        # float32 and in place: float64 temporaries of (n, n) cost ~10x more than the loop.
        pair = np.array(self.similarity(item_idx), dtype=np.float32)  # a copy: callers may cache theirs
        pair *= -(1.0 - self.lambda_)
        pair += gain.astype(np.float32)[None, :]
        chosen = np.empty(k, dtype=np.int64)
        pick = int(np.argmax(gain))  # no redundancy yet: the most relevant goes first
        objective = pair[pick].copy()
        for step in range(k):
            chosen[step] = pick
            objective[pick] = -np.inf  # stays -inf under np.minimum: never picked twice
            if step + 1 < k:
                np.minimum(objective, pair[pick], out=objective)
                pick = int(objective.argmax())
        taken = np.zeros(n, dtype=bool)
        taken[chosen] = True
        order = np.concatenate([chosen, np.flatnonzero(~taken)])
        return item_idx[order], scores[order]


# --- exposure cap --------------------------------------------------------------------------------
class CategoryCap:
    """At most ``max_per_value`` items of any one category value in the top ``k``.

    Greedy in the incoming order: an item enters the top ``k`` unless one of its values
    is already at the cap (an item of several genres counts for each; an item without
    any is never capped). Items held back follow the top ``k`` in their incoming order,
    so when too few items satisfy the cap the list still has ``k`` items unless
    ``strict``, where held-back items are dropped instead.
    """

    def __init__(self, categories: ItemCategories, max_per_value: int, k: int, strict: bool = False):
        if max_per_value < 1:
            raise ConfigError(f"CategoryCap max_per_value must be at least 1, got {max_per_value}")
        if k < 1:
            raise ConfigError(f"CategoryCap k must be at least 1, got {k}")
        self.categories = categories
        self.max_per_value = max_per_value
        self.k = k
        self.strict = strict

    def __repr__(self) -> str:
        return (f"CategoryCap({self.categories.name!r}, max_per_value={self.max_per_value}, k={self.k}, "
                f"strict={self.strict})")

    def __call__(self, item_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        item_idx, scores = as_candidates(item_idx, scores)
        rows, cols = np.nonzero(self.categories.rows(item_idx))
        starts = np.searchsorted(rows, np.arange(len(item_idx) + 1)).tolist()
        cols = cols.tolist()
        counts = [0] * len(self.categories.values)
        cap = self.max_per_value
        accepted, held = [], []
        position = 0
        for position in range(len(item_idx)):
            values = cols[starts[position]:starts[position + 1]]
            if all(counts[v] < cap for v in values):
                accepted.append(position)
                for v in values:
                    counts[v] += 1
                if len(accepted) == self.k:
                    break
            else:
                held.append(position)
        below = list(range(position + 1, len(item_idx))) if len(accepted) == self.k else []  # no cap there
        rest = below if self.strict else held + below
        order = np.asarray(accepted + rest, dtype=np.int64)
        return item_idx[order], scores[order]
