"""NeuMF: neural matrix factorisation, the fusion of GMF and an MLP.

X. He, L. Liao, H. Zhang, L. Nie, X. Hu and T.-S. Chua, "Neural Collaborative Filtering",
WWW 2017.

``logit(u, i) = h^T [p_u ⊙ q_i ; MLP([p'_u ; q'_i])]`` with separate embeddings for the
GMF and MLP branches, trained with the log loss on each observed pair and
``n_negatives`` uniformly sampled items. Departures: the two branches are trained
jointly from scratch (the paper pre-trains GMF and MLP separately and reports a small
gain from it); AdamW, warm-up, clipping and early stopping come from the shared
:class:`~recloop.train.Trainer`. NeuMF has no user representation for someone it was
not trained on, so unknown users (``UNKNOWN_USER``) get training popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.base import UNKNOWN_USER
from recloop.models.neural import NeuralRecommender
from recloop.models.pointwise import PairData, sampled_log_loss, score_all_items
from recloop.train.config import TrainerConfig


@dataclass(frozen=True)
class NeuMFConfig:
    """Hyperparameters of :class:`NeuMF`.

    ``factors``: GMF embedding width (the paper's "predictive factors").
    ``layers``: MLP widths; the first is the concatenated user + item embedding, so each
    MLP embedding is ``layers[0] / 2`` wide (the paper's tower, e.g. 64 -> 32 -> 16).
    ``n_negatives``: sampled negatives per observed pair (the paper uses 4).
    ``dropout``: on the MLP's hidden layers.
    """

    factors: int = 16
    layers: tuple[int, ...] = (64, 32, 16)
    n_negatives: int = 4
    dropout: float = 0.0
    train: TrainerConfig = TrainerConfig(epochs=50, batch_size=256, lr=1e-3, patience=5)

    def __post_init__(self):
        if self.factors < 1 or not self.layers or min(self.layers) < 1:
            raise ConfigError(f"neumf factors and layers must be positive, got {self.factors} and {self.layers}")
        if self.layers[0] % 2:
            raise ConfigError(f"neumf layers[0] is the user + item embedding width and must be even, "
                              f"got {self.layers[0]}")
        if self.n_negatives < 1:
            raise ConfigError(f"neumf n_negatives must be at least 1, got {self.n_negatives}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"neumf dropout must be in [0, 1), got {self.dropout}")


class NeuMFNetwork(nn.Module):
    def __init__(self, n_users: int, n_items: int, config: NeuMFConfig):
        super().__init__()
        half = config.layers[0] // 2
        self.user_gmf = nn.Embedding(n_users, config.factors)
        self.item_gmf = nn.Embedding(n_items, config.factors)
        self.user_mlp = nn.Embedding(n_users, half)
        self.item_mlp = nn.Embedding(n_items, half)
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(config.layers[:-1], config.layers[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(config.dropout)]
        self.mlp = nn.Sequential(*blocks)
        self.predict = nn.Linear(config.factors + config.layers[-1], 1)
        for embedding in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(embedding.weight, std=0.01)  # as the paper

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # users, items: (n,) aligned pairs -> (n,) logits
        gmf = self.user_gmf(users) * self.item_gmf(items)  # (n, factors)
        mlp = self.mlp(torch.cat([self.user_mlp(users), self.item_mlp(items)], dim=-1))  # (n, layers[-1])
        return self.predict(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)


class NeuMF(NeuralRecommender):
    name = "neumf"
    config_class = NeuMFConfig
    #: Scores come from the user's embedding, not from the history passed in.
    scores_depend_on_user_id = True

    def prepare(self, train: Interactions) -> None:
        self.popularity_ = train.item_counts().astype(np.float32)

    def build_network(self) -> nn.Module:
        return NeuMFNetwork(self.n_users, self.n_items, self.config)

    def training_data(self, train: Interactions) -> PairData:
        return PairData.from_log(train)

    def loss(self, batch) -> torch.Tensor:
        return sampled_log_loss(self.network_, batch["user"], batch["item"], self.n_items, self.config.n_negatives)

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        device = self.device
        scores = torch.from_numpy(np.broadcast_to(self.popularity_, (len(user_idx), self.n_items)).copy())
        known = user_idx != UNKNOWN_USER
        if known.any():
            users = torch.from_numpy(user_idx[known]).to(device)
            scores[torch.from_numpy(known)] = score_all_items(self.network_, users, self.n_items).cpu()
        return scores

    def _get_state(self):
        return {**super()._get_state(), "popularity": self.popularity_}

    def _set_state(self, state):
        self.popularity_ = state["popularity"]
        super()._set_state(state)
