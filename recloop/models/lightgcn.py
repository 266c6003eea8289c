"""LightGCN, and a social variant that also propagates over the friend graph.

X. He, K. Deng, X. Wang, Y. Li, Y. Zhang, M. Wang, "LightGCN: Simplifying and Powering
Graph Convolution Network for Recommendation", SIGIR 2020.

Users and items are the nodes of one bipartite graph with adjacency ``A`` (an edge per
training pair), normalised symmetrically, ``Â = D^-1/2 A D^-1/2``. Only the layer-0
("ego") embeddings ``E0`` are learned; each layer is a parameter-free propagation
``E(k+1) = Â E(k)`` (no transform, no non-linearity), and the final embeddings are the
mean of the layers, ``E = (E0 + ... + EK) / (K + 1)``. A user scores an item by the dot
product of their final embeddings. Training minimises BPR (one uniform negative per
training pair, redrawn every epoch) plus ``l2`` times half the squared norms of the
batch's ego embeddings divided by the batch size, as in the authors' code; it runs in
the one :class:`~recloop.train.Trainer` (Adam-style steps, early stopping on validation
NDCG), the propagation done on the whole graph for every batch as in the paper.

**SocialLightGCN** follows SocialLGN (J. Liao, W. Zhou, F. Luo, J. Wen, M. Gao, X. Li,
J. Zeng, "SocialLGN: Light Graph Convolution Network for Social Recommendation",
Information Sciences 589, 2022): in every layer a user's embedding is aggregated both
from their items (``Â``) and from their friends over the symmetrically normalised
social graph ``Ŝ = D_S^-1/2 S D_S^-1/2``; items propagate as in LightGCN. Departure:
SocialLGN fuses the two user aggregates with a learned transform and a non-linearity;
here they are mixed with a fixed weight, ``e_u(k+1) = (1 - social_weight) Â_u E(k) +
social_weight Ŝ_u E_users(k)`` (a user without friends keeps the item aggregate
alone), which keeps the model linear and parameter-free like LightGCN. On top, a social
fallback: a user with at most ``fallback_history`` items in the history being scored
and at least one friend gets :func:`~recloop.data.social.social_fallback` of the
model's scores and the share of their friends having each item.

Scoring: known users use their final embeddings (the history passed only decides what
``recommend`` masks, as in BPR); an unknown user (-1) is folded in as the mean of the
final embeddings of their history's items (zero for an empty history, which then ranks
by the item embeddings' popularity direction no better than chance: the service
handles such users).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recloop.data.interactions import Interactions, UserHistories
from recloop.data.social import friend_item_share, social_fallback
from recloop.errors import ConfigError
from recloop.models.base import UNKNOWN_USER
from recloop.models.bpr import sample_negatives
from recloop.models.neural import NeuralRecommender
from recloop.models.similarity import cosine_similar_items
from recloop.train.config import TrainerConfig
from recloop.utils import make_rng


@dataclass(frozen=True)
class LightGCNConfig:
    """Hyperparameters of :class:`LightGCN`.

    ``factors``: embedding size. ``layers``: propagation layers ``K``. ``l2``: penalty on
    the batch's ego embeddings (the paper's ``lambda``, 1e-4). ``train``: the loop; the
    paper's Adam at ``lr = 1e-3`` and batches of 2048 triples, no gradient clipping.
    """

    factors: int = 64
    layers: int = 3
    l2: float = 1e-4
    train: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=300, batch_size=2048, lr=1e-3, grad_clip=0.0, patience=5, eval_every=5, amp=False))

    def __post_init__(self):
        if isinstance(self.factors, bool) or self.factors < 1:
            raise ConfigError(f"lightgcn factors must be a positive integer, got {self.factors!r}")
        if self.layers < 0:
            raise ConfigError(f"lightgcn layers must be 0 or more, got {self.layers}")
        if self.l2 < 0:
            raise ConfigError(f"lightgcn l2 must be zero or positive, got {self.l2}")


@dataclass(frozen=True)
class SocialLightGCNConfig(LightGCNConfig):
    """:class:`LightGCNConfig` plus the social part.

    ``social_weight``: share of a user's aggregate taken from their friends in every
    layer (0 is LightGCN). ``fallback_history``: users with at most this many items in
    the scored history, and at least one friend, get the social fallback (0: never).
    ``fallback_weight``: the friends' share in that fallback (1: rank by friends).
    """

    social_weight: float = 0.5
    fallback_history: int = 5
    fallback_weight: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        for name in ("social_weight", "fallback_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"social-lightgcn {name} must be in [0, 1], got {getattr(self, name)}")
        if self.fallback_history < 0:
            raise ConfigError(f"social-lightgcn fallback_history must be 0 or more, got {self.fallback_history}")


class LightGCNNet(nn.Module):
    """Ego embeddings of users and items and the fixed propagation matrix."""

    def __init__(self, n_users: int, n_items: int, config: LightGCNConfig, adjacency: sp.csr_matrix,
                 generator: torch.Generator):
        super().__init__()
        self.n_users, self.layers = n_users, config.layers
        self.users = nn.Parameter(torch.randn(n_users, config.factors, generator=generator) * 0.1)
        self.items = nn.Parameter(torch.randn(n_items, config.factors, generator=generator) * 0.1)
        # The matrix and its transpose as CSR buffers (rebuilt from the history, not saved):
        # the backward of a propagation is a product with the transpose, kept ready rather
        # than transposed (and re-sorted) by autograd at every step, which halves a step.
        self.register_buffer("adjacency", _csr_tensor(adjacency), persistent=False)
        self.register_buffer("adjacency_t", _csr_tensor(adjacency.T.tocsr()), persistent=False)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user ``(n_users, f)`` and item ``(n_items, f)`` embeddings: the mean of
        the ego embeddings and ``layers`` propagations."""
        layer = torch.cat([self.users, self.items])  # (n_users + n_items, f)
        total = layer
        for _ in range(self.layers):
            layer = _Propagate.apply(layer, self.adjacency, self.adjacency_t)  # (n_users + n_items, f)
            total = total + layer
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users:]


class _Propagate(torch.autograd.Function):
    """``A @ x`` for a sparse ``A``, whose gradient in ``x`` is ``A^T @ grad``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.sparse.mm(ctx.transpose, grad), None, None


def _csr_tensor(matrix: sp.csr_matrix) -> torch.Tensor:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on first use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                       torch.from_numpy(matrix.indices.astype(np.int64)),
                                       torch.from_numpy(matrix.data), size=matrix.shape, check_invariants=False)


class PairTriples:
    """The training pairs; each batch draws one negative item per pair that the user
    does not have (a seeded stream: the same seed, the same negatives)."""

    def __init__(self, train: Interactions, seed: int):
        x = train.to_csr()
        self.n_items = train.n_items
        users = np.repeat(np.arange(train.n_users), np.diff(x.indptr))
        items = x.indices.astype(np.int64)
        self.known = users * train.n_items + items  # sorted, for the negatives' membership test
        has_negative = np.diff(x.indptr)[users] < train.n_items
        self.users, self.items = users[has_negative], items[has_negative]
        self.rng = make_rng(seed)

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        users = self.users[index]
        negatives = sample_negatives(users, self.known, self.n_items, self.rng)
        return {"user": torch.from_numpy(users), "positive": torch.from_numpy(self.items[index]),
                "negative": torch.from_numpy(negatives)}


class LightGCN(NeuralRecommender):
    name = "lightgcn"
    config_class = LightGCNConfig
    scores_depend_on_user_id = True

    def adjacency(self, train: Interactions) -> sp.csr_matrix:
        """``Â`` over ``n_users + n_items`` nodes, users first."""
        return normalized_bipartite(train.to_csr(), self.n_users)

    def prepare(self, train: Interactions) -> None:
        self._final = None  # propagated embeddings, cached once training is over

    def build_network(self) -> nn.Module:
        generator = torch.Generator().manual_seed(self.config.train.seed)
        return LightGCNNet(self.n_users, self.n_items, self.config, self.adjacency(self.history_), generator)

    def training_data(self, train: Interactions) -> PairTriples:
        return PairTriples(train, self.config.train.seed)

    def loss(self, batch) -> torch.Tensor:
        net = self.network_
        users, items = net.propagate()
        user, positive, negative = batch["user"], batch["positive"], batch["negative"]
        u = users[user]  # (b, f)
        margin = (u * (items[positive] - items[negative])).sum(1)  # (b,)
        ego = (net.users[user].square().sum() + net.items[positive].square().sum()
               + net.items[negative].square().sum()) / 2
        return nn.functional.softplus(-margin).mean() + self.config.l2 * ego / len(user)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self._final = self._propagated()  # the network no longer changes

    def _propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        cached = getattr(self, "_final", None)
        if cached is not None:
            return cached
        with self.inference():
            users, items = self.network_.propagate()
        return users.float(), items.float()

    def final_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The final user ``(n_users, f)`` and item ``(n_items, f)`` embeddings."""
        self._check_fitted("final_embeddings")
        users, items = self._propagated()
        return users.cpu().numpy(), items.cpu().numpy()

    def user_vectors(self, user_idx: np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        """Final embeddings of known users; the mean of their history's final item
        embeddings for unknown users (-1). ``score = user_vectors @ item_vectors.T``."""
        self._check_fitted("user_vectors")
        user_idx, history = self._query_histories(user_idx, history)
        users, items = self.final_embeddings()
        out = users[np.maximum(user_idx, 0)].copy()
        unknown = user_idx == UNKNOWN_USER
        if unknown.any():
            x = history.to_csr()[unknown]
            counts = np.maximum(np.diff(x.indptr), 1).astype(np.float32)
            out[unknown] = np.asarray(x @ items, dtype=np.float32) / counts[:, None]
        return out

    def item_vectors(self) -> np.ndarray:
        return self.final_embeddings()[1]

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        users, items = self._propagated()
        vectors = users[torch.from_numpy(np.maximum(user_idx, 0)).to(users.device)]
        unknown = user_idx == UNKNOWN_USER
        if unknown.any():
            vectors = vectors.clone()
            vectors[torch.from_numpy(unknown).to(users.device)] = torch.from_numpy(
                self.user_vectors(user_idx[unknown], _rows(history, unknown))).to(users.device)
        return vectors @ items.T  # (b, n_items)

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted("similar_items")
        return cosine_similar_items(self.item_vectors(), item_idx, k)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self._final = None
        self._final = self._propagated()


class SocialLightGCN(LightGCN):
    name = "social-lightgcn"
    config_class = SocialLightGCNConfig

    def _graph(self) -> sp.csr_matrix:
        graph = getattr(self, "user_graph_", None)
        if graph is None:
            raise ConfigError("SocialLightGCN needs a friend graph: fit(train, user_graph=dataset.user_graph) on a "
                              "dataset that has one (lastfm-2k), or use lightgcn")
        return graph.to_csr()

    def adjacency(self, train: Interactions) -> sp.csr_matrix:
        """``Â`` with each user row mixed with the normalised social graph."""
        bipartite = normalized_bipartite(train.to_csr(), self.n_users)
        social = symmetric_normalized(self._graph())  # (n_users, n_users)
        has_friends = np.diff(social.indptr) > 0
        beta = np.where(has_friends, self.config.social_weight, 0.0).astype(np.float32)
        n = bipartite.shape[0]
        keep = np.concatenate([1.0 - beta, np.ones(n - self.n_users, np.float32)])
        social_block = sp.csr_matrix(sp.diags(beta) @ social)
        social_full = sp.csr_matrix((social_block.data, social_block.indices,
                                     np.concatenate([social_block.indptr,
                                                     np.full(n - self.n_users, social_block.indptr[-1])])),
                                    shape=(n, n))
        return (sp.diags(keep.astype(np.float32)) @ bipartite + social_full).tocsr().astype(np.float32)

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        scores = super().score_batch(user_idx, history)
        cfg = self.config
        if cfg.fallback_history == 0:
            return scores
        graph = self._graph()
        known = user_idx != UNKNOWN_USER
        few = known & (history.lengths <= cfg.fallback_history)
        few &= np.diff(graph.indptr)[np.maximum(user_idx, 0)] > 0
        if not few.any():
            return scores
        share = friend_item_share(graph[user_idx[few]], self.history_.to_csr())
        rows = torch.from_numpy(np.flatnonzero(few)).to(scores.device)
        blended = social_fallback(scores[rows].float().cpu().numpy(), share, cfg.fallback_weight)
        scores = scores.clone()
        scores[rows] = torch.from_numpy(blended).to(scores.device, scores.dtype)
        return scores


def _rows(history: UserHistories, mask: np.ndarray) -> UserHistories:
    """The rows of ``history`` where ``mask`` holds."""
    picked = np.flatnonzero(mask)
    return UserHistories.from_lists([history.row(r) for r in picked], history.n_items)


def symmetric_normalized(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 M D^-1/2`` of a square 0/1 matrix (rows without entries stay empty)."""
    degree = np.asarray(matrix.sum(axis=1), dtype=np.float64).reshape(-1)
    inverse_root = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    scale = sp.diags(inverse_root)
    return sp.csr_matrix(scale @ matrix @ scale, dtype=np.float32)


def normalized_bipartite(user_items: sp.csr_matrix, n_users: int) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` with ``A = [[0, R], [R^T, 0]]`` for the binary ``R`` (users x items)."""
    r = sp.csr_matrix(user_items, dtype=np.float32)
    r.data[:] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        adjacency = sp.bmat([[None, r], [r.T, None]], format="csr")
    return symmetric_normalized(adjacency)
