"""EASE: Embarrassingly Shallow Autoencoder.

H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

Closed form: with ``G = X^T X + lambda I`` and ``P = G^-1``, the item-item weights are
``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj`` and ``B_jj = 0``. A user's
scores are ``x_u B``. Departure from the paper: the inverse is taken in float32 via a
Cholesky factorisation (G is symmetric positive definite), about 5x faster than a
float64 general inverse and accurate to ~1e-6 relative at the l2 values that matter.

EDLAE (``dropout = p > 0``): H. Steck, "Autoencoders that don't overfit towards the
Identity", NeurIPS 2020. Training the same linear autoencoder on inputs whose items are
dropped with probability ``p`` (the emphasised denoising loss, full rank) has the same
closed form with a penalty that grows with each item's popularity:
``G = X^T X + Lambda``, ``Lambda = lambda I + p / (1 - p) diagMat(diag(X^T X))``, then
``B = I - P diag(1 / diag(P))`` as above. ``p = 0`` is EASE.

A grid over ``l2`` (:meth:`EASE.fit_grid`) builds the Gram matrix once and solves each
l2 from it; every l2 still needs its own factorisation, so a grid of n values costs about
n fits (the Gram matrix is a small part of one). Solving all l2 from one
eigendecomposition ``G = V diag(w) V^T`` (then ``P = V diag(1 / (w + l2)) V^T``, one
matrix product per l2) was measured and rejected: the product per l2 is itself an
``O(items^3)`` step, and on CPU the eigendecomposition costs more than ten Cholesky fits
(benchmarks/ease_grid.py: 12.5x one fit for a 5-value grid on 4,000 Beauty items).

Memory: the weights are a dense ``items x items`` float32 matrix, and a fit holds two
such matrices at its peak (``G``, then its Cholesky factor beside it; ``B`` is written
into ``G``'s memory), a grid three (the shared ``G`` is kept). That is 0.8 GB at 10,000
items and 80 GB at 100,000. Before allocating, a fit compares that need with
``memory_budget_gb`` (default: half the memory the system reports available) and refuses
with a :class:`ConfigError` naming the need, the budget and the alternatives. With
``max_items`` the model is fitted on the ``max_items`` items with the most users only
(``max_items^2`` memory); every other item is scored by its popularity, below every kept
item (a fallback, not a prediction). The Gram
matrix is built in column blocks, so the sparse product never holds more than one block
beside the dense result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import Recommender
from recloop.progress import progress_bar

GRAM_BLOCK_FLOATS = 1 << 24  # ~64 MB of float32 per dense column block of the Gram matrix
FIT_COPIES = 2  # dense items x items float32 matrices alive at a fit's peak (G and its Cholesky factor)
GRID_COPIES = 3  # a grid keeps the shared G beside each candidate's two


@dataclass(frozen=True)
class EASEConfig:
    """``l2``: the ridge penalty lambda (larger for denser data: 100-1000 typical).
    ``weighted``: use ratings instead of 0/1 in ``X``. ``memory_budget_gb``: the most
    memory the dense item-item matrices may take (``None``: half of the memory the
    system reports available when the fit starts); a fit that would need more refuses
    before allocating. ``max_items``: fit on that many most popular items (most distinct
    users; ties to the lower index) and rank the rest after them by popularity; ``None``
    keeps every item. ``dropout``: EDLAE's input dropout probability ``p`` in ``[0, 1)``,
    which adds ``p / (1 - p)`` times each item's own ``X^T X`` entry to its penalty (0: EASE)."""

    l2: float = 500.0
    weighted: bool = False
    memory_budget_gb: float | None = None
    max_items: int | None = None
    dropout: float = 0.0

    def __post_init__(self):
        if self.l2 <= 0:
            raise ConfigError(f"EASE l2 must be positive, got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"EASE dropout (EDLAE's input dropout probability) must be in [0, 1), got {self.dropout}")
        if self.memory_budget_gb is not None and not self.memory_budget_gb > 0:
            raise ConfigError(f"EASE memory_budget_gb must be positive (or None for half the available memory), "
                              f"got {self.memory_budget_gb}")
        if self.max_items is not None and (isinstance(self.max_items, bool) or not isinstance(self.max_items, int)
                                           or self.max_items < 1):
            raise ConfigError(f"EASE max_items must be a positive integer (or None for every item), "
                              f"got {self.max_items!r}")


class EASE(Recommender):
    name = "ease"
    config_class = EASEConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.kept_items_, self.popularity_ = kept_items(train, self.config.max_items)
        n_kept = train.n_items if self.kept_items_ is None else len(self.kept_items_)
        check_memory(n_kept, FIT_COPIES, self.config.memory_budget_gb)
        with progress_bar(desc=f"fit ease l2={self.config.l2:g}", total=2, unit="step") as bar:
            gram = gram_matrix(train, self.config.weighted, self.kept_items_)
            bar.update()
            self.weights_ = ease_weights(gram, self.config.l2, in_place=True, dropout=self.config.dropout)
            bar.update()

    @classmethod
    def fit_grid(cls, candidates: Sequence[dict[str, Any]], train: Interactions, *,
                 item_features: Features | None = None, user_features: Features | None = None,
                 valid: Interactions | None = None, validation=None, user_graph=None) -> Iterator[EASE]:
        """As :meth:`Recommender.fit_grid`, with the Gram matrix built once for all
        candidates that share ``weighted`` and ``max_items`` (the weights are those ``fit`` gives)."""
        gram, gram_key = None, None
        for params in candidates:
            model = cls(**params)
            model.kept_items_, model.popularity_ = kept_items(train, model.config.max_items)
            n_kept = train.n_items if model.kept_items_ is None else len(model.kept_items_)
            check_memory(n_kept, GRID_COPIES, model.config.memory_budget_gb, grid=True)
            key = (model.config.weighted, model.config.max_items)
            if gram is None or gram_key != key:
                gram = None  # at most one Gram matrix alive
                gram, gram_key = gram_matrix(train, model.config.weighted, model.kept_items_), key
            model._remember(train, item_features, user_features, user_graph)
            with progress_bar(desc=f"fit ease l2={model.config.l2:g}", total=1, unit="step") as bar:
                model.weights_ = ease_weights(gram, model.config.l2, dropout=model.config.dropout)
                bar.update()
            yield model

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        x = history.to_csr(weighted=self.config.weighted)
        if self.kept_items_ is None:
            return np.asarray(x @ self.weights_, dtype=np.float32)
        kept = np.asarray(x[:, self.kept_items_] @ self.weights_, dtype=np.float32)  # (users, kept)
        # the rest: popularity scaled into [0, 1), placed below the row's lowest kept score
        floor = kept.min(axis=1, keepdims=True) - 1.0
        scores = floor + (self.popularity_ / (self.popularity_.max() + 1.0))[None, :].astype(np.float32)
        scores[:, self.kept_items_] = kept
        return scores

    def _get_state(self):
        if self.kept_items_ is None:
            return {"weights": self.weights_}
        return {"weights": self.weights_, "kept_items": self.kept_items_, "popularity": self.popularity_}

    def _set_state(self, state):
        self.weights_ = state["weights"]
        self.kept_items_ = state.get("kept_items")
        self.popularity_ = state.get("popularity")


def kept_items(train: Interactions, max_items: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``max_items`` items with the most distinct users, in index order, and every
    item's user count (float32); ``(None, None)`` when every item is kept."""
    if max_items is None or max_items >= train.n_items:
        return None, None
    popularity = np.diff(train.to_csr().tocsc().indptr).astype(np.float32)
    order = np.lexsort((np.arange(train.n_items), -popularity))  # most users first, ties to the lower index
    return np.sort(order[:max_items]).astype(np.int64), popularity


def gram_matrix(train: Interactions, weighted: bool, items: np.ndarray | None = None) -> torch.Tensor:
    """``X^T X`` as a dense float32 ``(items, items)`` tensor (over the columns ``items``
    only, when given), built ``GRAM_BLOCK_FLOATS`` entries of columns at a time (the sparse
    product of a whole catalog can hold more entries than the dense result)."""
    x = train.to_csr(weighted=weighted).astype(np.float32, copy=False)
    if items is not None:
        x = x[:, items]
    n_items = x.shape[1]
    gram = np.empty((n_items, n_items), dtype=np.float32)
    xt, columns = x.T.tocsr(), x.tocsc()
    block = max(1, GRAM_BLOCK_FLOATS // max(n_items, 1))
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        gram[:, start:stop] = (xt @ columns[:, start:stop]).toarray()
    return torch.from_numpy(gram)


def available_memory_bytes() -> int | None:
    """The memory the system reports available: ``MemAvailable`` of ``/proc/meminfo``
    (Linux), else free physical pages (``os.sysconf``); ``None`` when neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_items: int, copies: int, budget_gb: float | None, grid: bool = False) -> None:
    """Refuse, before allocating, a fit whose ``copies`` dense ``n_items x n_items``
    float32 matrices exceed the budget (``budget_gb``, or half the available memory)."""
    need = copies * n_items * n_items * 4
    if budget_gb is None:
        available = available_memory_bytes()
        if available is None:
            return
        budget, origin = available // 2, f"half of the {available / 1e9:.1f} GB this system reports available"
    else:
        budget, origin = int(budget_gb * 1e9), "memory_budget_gb"
    if need <= budget:
        return
    fits = int((budget / (copies * 4)) ** 0.5)
    raise ConfigError(
        f"EASE {'grid ' if grid else ''}on {n_items:,} items needs {need / 1e9:.1f} GB ({copies} dense "
        f"{n_items:,} x {n_items:,} float32 matrices of {n_items * n_items * 4 / 1e9:.1f} GB each) but its memory "
        f"budget is {budget / 1e9:.1f} GB ({origin}). Alternatives: item-kNN (model 'itemknn': sparse top-k "
        f"neighbours, memory bounded by k per item), ALS (model 'als': items x factors), or EASE on the most "
        f"popular items only (max_items={fits} fits; the rest are ranked by popularity after them); or raise "
        f"memory_budget_gb if the memory is there.")


def ease_weights(gram: torch.Tensor, l2: float, in_place: bool = False, dropout: float = 0.0) -> np.ndarray:
    """``B = I - P diag(1 / diag(P))`` with ``P = (gram + Lambda)^-1``, as a contiguous
    float32 array; ``Lambda = l2 I + dropout / (1 - dropout) diagMat(diag(gram))`` (EDLAE;
    ``dropout = 0``: EASE's ``l2 I``). ``gram`` is left as it was unless ``in_place``: then
    it becomes ``B`` (no copy; two item-by-item matrices alive at the peak instead of three)."""
    g = gram if in_place else gram.clone()
    if dropout:
        g.diagonal().mul_(1.0 + dropout / (1.0 - dropout))  # diag(G) + p / (1 - p) diag(G)
    g.diagonal().add_(l2)
    chol = torch.linalg.cholesky(g)
    torch.cholesky_inverse(chol, out=g)  # P = G^-1, in G's memory
    del chol
    g.div_(-g.diagonal().clone())  # B_ij = -P_ij / P_jj (column scaling)
    g.diagonal().zero_()
    return np.ascontiguousarray(g.numpy())
