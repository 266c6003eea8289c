"""ALS: matrix factorisation for implicit feedback by alternating least squares.

Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback
Datasets", ICDM 2008; the conjugate-gradient solver of G. Takács, I. Pilászy,
D. Tikk, "Applications of the Conjugate Gradient Method for Implicit Feedback
Collaborative Filtering", RecSys 2011 (as in the ``implicit`` library).

Every user-item pair has a preference ``p_ui`` (1 if observed, else 0) and a
confidence ``c_ui = 1 + alpha * r_ui`` (``r_ui`` is 1, or the rating when
``weighted``; with ``log_scale = eps > 0`` it is ``log(1 + rating / eps)``, the paper's
log-scaled confidence (its eq. 6), which suits play counts spanning 1 to 1e5). The loss ``sum c_ui (p_ui - x_u . y_i)^2 + regularization (|x|^2 + |y|^2)``
is minimised by alternating the user step, which solves for every user
``(Y^T Y + regularization I + Y^T (C_u - I) Y) x_u = Y^T C_u p_u``, and the symmetric
item step. Each step runs ``cg_steps`` conjugate-gradient iterations warm-started from
the previous factors, one compiled loop per user (item) over its history
(:mod:`recloop.models.als_cg`), so a step costs ``O(nnz * factors + n * factors^2)``.

Scoring: the model is its item factors. A user's factors are always solved from the
history passed to ``score`` with the exact user step (a batched Cholesky solve), the
same closed form training approximates, so a known user and an anonymous user (-1)
with the same history get the same scores and serving uses the live history. For a
training history this is one more (exact) user step against the final item factors,
so the trained user factors are not kept. The price is an ``O(factors^3)`` solve per
scored user, small next to ranking the catalog at the factor counts that matter.

Frequency-scaled regularization (``reg_exponent = nu > 0``), from S. Rendle, W. Krichene,
L. Zhang, Y. Koren, "Revisiting the Performance of iALS on Item Recommendation
Benchmarks", RecSys 2022: each row's penalty grows with the weight its loss carries,
``lambda * (|I_u| + alpha0 |I|)^nu`` in their notation, where ``alpha0`` weighs every
user-item pair and an observed pair gets ``1 + alpha0``. Their loss divided by ``alpha0``
is this one with ``alpha = 1 / alpha0``, and ``|I_u| + alpha0 |I|`` is then ``alpha0``
times the row's total confidence ``sum_i c_ui = |I| + alpha |I_u|``. Here the penalty of
user ``u`` is ``regularization * (sum_i c_ui / |I|)^nu = regularization * (1 + alpha
|I_u| / |I|)^nu`` (items alike, over ``|U|``), so that ``regularization`` keeps its
meaning: it is the penalty of a row with no observation, and ``nu = 0`` is the plain
model. Dividing by ``|I|^nu`` on the user side and ``|U|^nu`` on the item side changes no
score: scaling the two sides' penalties by ``a`` and ``b`` gives the scores of both scaled
by ``sqrt(ab)`` (rescale ``x_u`` by ``(a/b)^(1/4)`` and ``y_i`` by its inverse), a
constant ``regularization`` absorbs. With ``weighted``, ``|I_u|`` is the sum of the
row's ``r``. Their ``alpha0`` is ``1 / alpha`` here; their other changes (initial
factors of standard deviation ``0.1 / sqrt(factors)``, exact solves by block) are not
taken: the CG solver approximates the same per-row solves.

Departures: the confidence is ``1 + alpha * r`` as in the paper (``implicit`` uses
``alpha * r``); factors start uniform in ``[0, 0.01)`` as in ``implicit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import Recommender
from recloop.models.similarity import cosine_similar_items
from recloop.progress import progress_bar

SOLVE_FLOATS = 1 << 22  # padded history floats per batched exact solve (x factors: ~64 MB at 64)


@dataclass(frozen=True)
class ALSConfig:
    """``factors``: latent dimensions. ``regularization``: L2 penalty on both factor
    matrices (must be positive). ``alpha``: confidence slope, ``c = 1 + alpha * r``.
    ``iterations``: alternating sweeps. ``cg_steps``: conjugate-gradient iterations per
    step (3 is enough when warm-started). ``weighted``: ``r`` is the rating, not 1.
    ``log_scale``: with ``weighted``, ``r = log(1 + rating / log_scale)`` when positive
    (Hu et al.'s ``epsilon``); 0 uses the rating as it is. ``reg_exponent``: ``nu`` of the
    frequency-scaled penalty, ``regularization * (1 + alpha |I_u| / |I|)^nu`` per user and
    alike per item (Rendle et al. 2022; 0: the same penalty for every row, 1: theirs).
    ``seed``: initial factors.

    The penalty is not scaled by the number of interactions, so its best value grows
    with the data's density and with ``alpha``: ``alpha=10, regularization=50`` is a
    middle ground (ml-100k is best near ``alpha=2, regularization=30``, amazon-beauty
    near ``alpha=40, regularization=10`` with 256 factors); tune both together."""

    factors: int = 64
    regularization: float = 50.0
    alpha: float = 10.0
    iterations: int = 15
    cg_steps: int = 3
    weighted: bool = False
    log_scale: float = 0.0
    reg_exponent: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("factors", "iterations", "cg_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ALS {name} must be a positive integer, got {value!r}")
        if self.regularization <= 0:
            raise ConfigError(f"ALS regularization must be positive, got {self.regularization}")
        if self.alpha < 0:
            raise ConfigError(f"ALS alpha must be zero or positive, got {self.alpha}")
        if not self.reg_exponent >= 0:
            raise ConfigError(f"ALS reg_exponent must be zero (one penalty for every row) or positive, "
                              f"got {self.reg_exponent}")
        if self.log_scale < 0:
            raise ConfigError(f"ALS log_scale must be zero (no log) or positive, got {self.log_scale}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"ALS seed must be an integer, got {self.seed!r}")


class ALS(Recommender):
    name = "als"
    config_class = ALSConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        x = self._weights(train.to_csr(weighted=cfg.weighted))  # (users, items), c - 1
        by_user, by_item = RowWeights(x, torch.float32), RowWeights(x.T.tocsr(), torch.float32)
        user_penalties, item_penalties = self._penalties(x), self._penalties(x.T.tocsr())
        del x
        generator = torch.Generator().manual_seed(cfg.seed)
        users = torch.rand((train.n_users, cfg.factors), generator=generator) * 0.01
        items = torch.rand((train.n_items, cfg.factors), generator=generator) * 0.01
        for _ in progress_bar(range(cfg.iterations), desc="fit als", unit="sweep"):
            users = conjugate_gradient(by_user, items, users, cfg.regularization, cfg.cg_steps, user_penalties)
            items = conjugate_gradient(by_item, users, items, cfg.regularization, cfg.cg_steps, item_penalties)
        self.item_factors_ = items.numpy()

    def _weights(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """``c - 1 = alpha * r`` on the observed pairs."""
        x = x.astype(np.float32)
        if self.config.weighted and self.config.log_scale > 0:
            x.data = np.log1p(x.data / np.float32(self.config.log_scale)).astype(np.float32)
        x.data *= np.float32(self.config.alpha)
        return x

    def _penalties(self, weights: sp.csr_matrix) -> np.ndarray | None:
        """Each row's penalty, ``regularization * (1 + sum_i w_ui / n_columns)^nu``, for
        ``weights`` (``c - 1``); None when ``reg_exponent`` is 0 (every row: ``regularization``)."""
        return row_penalties(weights, self.config.regularization, self.config.reg_exponent)

    def user_factors(self, history: UserHistories) -> np.ndarray:
        """The exact user step for each history: ``(len(history), factors)``."""
        self._check_fitted("user_factors")
        weights = self._weights(history.to_csr(weighted=self.config.weighted))
        items = torch.from_numpy(self.item_factors_)
        return solve_users(weights, items, self.config.regularization, self._item_gram(items),
                           self._penalties(weights)).numpy()

    def _item_gram(self, items: torch.Tensor) -> torch.Tensor:
        """``Y^T Y + regularization I``, computed once per item factors: at 1e6 items it
        is 8 GFLOP, ~100x the rest of one served user's solve."""
        cached = getattr(self, "_gram", None)
        if cached is None or cached[0] is not self.item_factors_:
            cached = self._gram = (self.item_factors_, item_gram(items, self.config.regularization))
        return cached[1]

    def user_vectors(self, user_idx: np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        """Query vectors for retrieval, ``score = user_vectors @ item_vectors.T``: the
        user factors solved from ``history`` (default: the training log)."""
        self._check_fitted("user_vectors")
        user_idx, history = self._query_histories(user_idx, history)
        return self.user_factors(history)

    def _score(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        users = torch.from_numpy(self.user_factors(history))
        return users @ torch.from_numpy(self.item_factors_).T

    def item_vectors(self) -> np.ndarray:
        """Item factors, ``(n_items, factors)``."""
        self._check_fitted("item_vectors")
        return self.item_factors_

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items closest to ``item_idx`` by cosine of their vectors."""
        self._check_fitted("similar_items")
        return cosine_similar_items(self.item_vectors(), item_idx, k)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_factors_ = state["item_factors"]


class RowWeights:
    """A CSR matrix of confidences minus one (``c - 1`` on observed pairs), held once per
    fit as the compiled half-sweep takes it: int64 ``indptr``, int32 ``indices`` and the
    values in ``dtype``."""

    def __init__(self, matrix: sp.csr_matrix, dtype: torch.dtype):
        self.shape = matrix.shape
        self.indptr = matrix.indptr.astype(np.int64, copy=False)
        self.indices = matrix.indices.astype(np.int32, copy=False)
        self.values = matrix.data.astype(torch.empty(0, dtype=dtype).numpy().dtype, copy=False)


def row_penalties(weights: sp.csr_matrix, regularization: float, exponent: float) -> np.ndarray | None:
    """``regularization * (1 + sum_i w_ui / m)^exponent`` for each row of ``weights``
    (``(n, m)``, ``c - 1``): the frequency-scaled penalty (module docstring), float64
    ``(n,)``; None when ``exponent`` is 0."""
    if exponent == 0:
        return None
    mass = 1.0 + np.asarray(weights.sum(axis=1), dtype=np.float64).ravel() / max(weights.shape[1], 1)
    return regularization * mass ** exponent


def conjugate_gradient(weights: sp.csr_matrix | RowWeights, other: torch.Tensor, x: torch.Tensor,
                       regularization: float, steps: int, penalties: np.ndarray | None = None) -> torch.Tensor:
    """``steps`` CG iterations from ``x`` on every row's least-squares system.

    Row ``u`` solves ``(O^T O + lambda_u I + O^T W_u O) x_u = O^T (1 + w_u)``, where
    ``O`` is ``other`` (``(m, f)``) and ``w_u`` row ``u`` of ``weights`` (``(n, m)``, the
    confidences minus one, stored on observed pairs only); ``lambda_u`` is
    ``penalties[u]`` (``(n,)``), or ``regularization`` for every row when ``penalties`` is
    None. Returns the new ``(n, f)``;
    ``x`` is left as it was. ``O^T O`` is computed once per call (once per half-sweep);
    the rows are solved by :func:`recloop.models.als_cg.cg_rows`, one fused loop per row
    over its history, ``O(nnz * factors + n * factors^2)`` per step.
    """
    from recloop.models.als_cg import cg_rows  # numba: loaded to fit, not to serve

    if not isinstance(weights, RowWeights):
        weights = RowWeights(weights, other.dtype)
    gram = other.T @ other
    gram.diagonal().add_(regularization)  # (f, f)
    extra = None if penalties is None else np.asarray(penalties, dtype=np.float64) - regularization
    rows = cg_rows(weights.indptr, weights.indices, weights.values, other.contiguous().numpy(),
                   gram.contiguous().numpy(), x.contiguous().numpy(), steps, extra)
    return torch.from_numpy(rows)


def item_gram(items: torch.Tensor, regularization: float) -> torch.Tensor:
    """``Y^T Y + regularization I``, ``(factors, factors)``."""
    return items.T @ items + regularization * torch.eye(items.shape[1], dtype=items.dtype)


def solve_users(weights: sp.csr_matrix, items: torch.Tensor, regularization: float,
                gram: torch.Tensor | None = None, penalties: np.ndarray | None = None) -> torch.Tensor:
    """The exact user step for every row of ``weights`` (``(n, n_items)``, ``c - 1``).

    ``A_u = Y^T Y + lambda_u I + Y_u^T diag(w_u) Y_u`` by a batched product over
    histories padded to the longest of their chunk (rows are sorted by length so that
    padding stays small), then a batched Cholesky solve. Returns ``(n, factors)``.
    ``gram``: :func:`item_gram` of ``items`` when the caller keeps it. ``penalties``:
    ``lambda_u`` per row (``(n,)``); None: ``regularization`` for every row.
    """
    extra = None if penalties is None else torch.from_numpy(np.asarray(penalties, dtype=np.float64)
                                                           - regularization).to(items.dtype)
    n, n_factors = weights.shape[0], items.shape[1]
    if gram is None:
        gram = item_gram(items, regularization)
    lengths = np.diff(weights.indptr)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.maximum(lengths[order], 1)
    out = torch.zeros((n, n_factors), dtype=items.dtype)
    start = 0
    while start < n:
        # padded size of chunk [start, stop) is (stop - start) * its last (longest) length
        padded = np.arange(1, n - start + 1) * sorted_lengths[start:]
        stop = start + max(1, int(np.searchsorted(padded, SOLVE_FLOATS, side="right")))
        rows = order[start:stop]
        index, value, observed = _padded(weights[rows], int(sorted_lengths[stop - 1]))  # (b, width) each
        y = items[torch.from_numpy(index)]  # (b, width, f)
        w = torch.from_numpy(value).to(items.dtype)
        confidence = w + torch.from_numpy(observed).to(items.dtype)  # c_ui on real items, 0 on padding
        a = gram + (y * w[..., None]).transpose(1, 2) @ y  # (b, f, f)
        if extra is not None:
            a.diagonal(dim1=1, dim2=2).add_(extra[torch.from_numpy(rows)][:, None])
        b = (confidence[..., None] * y).sum(1)[..., None]  # (b, f, 1): sum_i c_ui y_i
        out[torch.from_numpy(rows)] = torch.cholesky_solve(b, torch.linalg.cholesky(a))[..., 0]
        start = stop
    return out


def _padded(matrix: sp.csr_matrix, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's column indices and values left-aligned in ``(rows, width)`` arrays,
    with a mask of the real entries (padding has index 0 and value 0)."""
    lengths = np.diff(matrix.indptr)
    row = np.repeat(np.arange(matrix.shape[0]), lengths)
    position = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    index = np.zeros((matrix.shape[0], width), dtype=np.int64)
    value = np.zeros((matrix.shape[0], width), dtype=matrix.dtype)
    observed = np.zeros((matrix.shape[0], width), dtype=bool)
    index[row, position], value[row, position], observed[row, position] = matrix.indices, matrix.data, True
    return index, value, observed
