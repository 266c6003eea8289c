"""MLP recommender: a multilayer perceptron over user and item id and feature embeddings.

The "MLP" instance of neural collaborative filtering (X. He et al., "Neural Collaborative
Filtering", WWW 2017, section 3.3), with side features embedded and concatenated to the
ids as in the deep part of Wide & Deep (H.-T. Cheng et al., "Wide & Deep Learning for
Recommender Systems", DLRS 2016)::

    x = [user id ; mean(user categorical values) ; item id ; mean(item genres) ; W text_i]
    logit(u, i) = w^T MLP(x)

trained with the log loss on observed pairs against ``n_negatives`` uniform negatives.
Users and items without training interactions (and, at serving, unknown users) get a
zero id embedding and are scored from their features alone; ``id_dropout`` zeroes ids at
random during training so that this fallback is learned rather than accidental.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.neural import NeuralRecommender
from recloop.models.pointwise import PairData, sampled_log_loss, score_all_items
from recloop.models.side_inputs import CategoricalInputs, MeanEmbedding, item_text_embeddings
from recloop.text.encoder import DEFAULT_MODEL, TextEncoder, TextEncoderConfig
from recloop.train.config import TrainerConfig


@dataclass(frozen=True)
class MLPConfig:
    """Hyperparameters of :class:`MLPRecommender`.

    ``dim``: width of every input embedding (ids, feature means, text projection).
    ``layers``: hidden widths of the perceptron (ReLU, ``dropout`` after each).
    ``use_ids``/``user_features``/``item_features``/``text``: which inputs to use;
    ``text`` encodes the item text with ``text_model`` (frozen) and learns a projection.
    ``id_dropout``: probability of zeroing a user or item id embedding in training.
    """

    dim: int = 32
    layers: tuple[int, ...] = (128, 64)
    use_ids: bool = True
    user_features: bool = True
    item_features: bool = True
    text: bool = False
    text_model: str = DEFAULT_MODEL
    text_fields: tuple[str, ...] = ()
    text_cache_dir: str | None = None
    n_negatives: int = 4
    dropout: float = 0.1
    id_dropout: float = 0.0
    train: TrainerConfig = TrainerConfig(epochs=50, batch_size=256, lr=1e-3, patience=5)

    def __post_init__(self):
        if self.dim < 1 or not self.layers or min(self.layers) < 1:
            raise ConfigError(f"mlp dim and layers must be positive, got {self.dim} and {self.layers}")
        if self.n_negatives < 1:
            raise ConfigError(f"mlp n_negatives must be at least 1, got {self.n_negatives}")
        for name in ("dropout", "id_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"mlp {name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.use_ids or self.user_features or self.item_features or self.text):
            raise ConfigError("mlp needs at least one input: use_ids, user_features, item_features or text")


class MLPNetwork(nn.Module):
    def __init__(self, n_users: int, n_items: int, config: MLPConfig, user_cat: CategoricalInputs,
                 item_cat: CategoricalInputs, item_text: np.ndarray, user_known: np.ndarray, item_known: np.ndarray):
        super().__init__()
        d = config.dim
        self.config = config
        self.user_id = nn.Embedding(n_users, d)
        self.item_id = nn.Embedding(n_items, d)
        self.user_cat = MeanEmbedding(user_cat.n_values, d)
        self.item_cat = MeanEmbedding(item_cat.n_values, d)
        self.text = nn.Linear(item_text.shape[1], d) if item_text.shape[1] else None
        for embedding in (self.user_id, self.item_id):
            nn.init.normal_(embedding.weight, std=0.05)
        self.register_buffer("user_cat_index", torch.from_numpy(user_cat.index), persistent=False)
        self.register_buffer("item_cat_index", torch.from_numpy(item_cat.index), persistent=False)
        self.register_buffer("item_text", torch.from_numpy(item_text), persistent=False)
        self.register_buffer("user_known", torch.from_numpy(user_known.astype(np.float32)), persistent=False)
        self.register_buffer("item_known", torch.from_numpy(item_known.astype(np.float32)), persistent=False)
        width = 4 * d + (d if self.text is not None else 0)
        blocks: list[nn.Module] = []
        for width_out in config.layers:
            blocks += [nn.Linear(width, width_out), nn.ReLU(), nn.Dropout(config.dropout)]
            width = width_out
        self.mlp = nn.Sequential(*blocks)
        self.out = nn.Linear(width, 1)

    def _id(self, table: nn.Embedding, known: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Id embeddings; zero for ids without training data and, in training, dropped at random."""
        keep = known[index]  # (n,)
        if self.training and self.config.id_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= self.config.id_dropout)
        vectors = table(index) * keep.unsqueeze(-1)
        return vectors if self.config.use_ids else torch.zeros_like(vectors)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # users, items: (n,) aligned pairs; users may be -1 (unknown) -> (n,) logits
        unknown = users < 0
        safe_users = users.clamp_min(0)
        user_id = self._id(self.user_id, self.user_known, safe_users) * (~unknown).unsqueeze(-1)  # (n, d)
        user_cat = self.user_cat(self.user_cat_index[safe_users]) * (~unknown).unsqueeze(-1)  # (n, d)
        if not self.config.user_features:
            user_cat = torch.zeros_like(user_cat)
        item_id = self._id(self.item_id, self.item_known, items)  # (n, d)
        item_cat = self.item_cat(self.item_cat_index[items])  # (n, d)
        if not self.config.item_features:
            item_cat = torch.zeros_like(item_cat)
        parts = [user_id, user_cat, item_id, item_cat]
        if self.text is not None:
            parts.append(self.text(self.item_text[items]))  # (n, d)
        return self.out(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1)


class MLPRecommender(NeuralRecommender):
    name = "mlp"
    config_class = MLPConfig

    @property
    def scores_depend_on_user_id(self) -> bool:
        """Scores come from the user's id and features, not from the history passed in."""
        return True

    def prepare(self, train: Interactions) -> None:
        cfg = self.config
        if (cfg.item_features or cfg.text) and self.item_features_ is None:
            raise ConfigError("MLPRecommender uses item features (item_features/text are on) but fit() got none: "
                              "pass fit(train, item_features=dataset.item_features) or set item_features = false "
                              "and text = false")
        self.user_cat_ = CategoricalInputs.from_features(self.user_features_ if cfg.user_features else None,
                                                         train.users)
        self.item_cat_ = CategoricalInputs.from_features(self.item_features_ if cfg.item_features else None,
                                                         train.items)
        self.item_text_ = np.zeros((self.n_items, 0), dtype=np.float32)
        if cfg.text:
            encoder = TextEncoder(TextEncoderConfig(model=cfg.text_model, cache_dir=cfg.text_cache_dir))
            self.item_text_ = item_text_embeddings(self.item_features_, train.items, encoder, cfg.text_fields)
        self.user_known_ = train.user_counts() > 0
        self.item_known_ = train.item_counts() > 0

    def build_network(self) -> nn.Module:
        return MLPNetwork(self.n_users, self.n_items, self.config, self.user_cat_, self.item_cat_, self.item_text_,
                          self.user_known_, self.item_known_)

    def training_data(self, train: Interactions) -> PairData:
        return PairData.from_log(train)

    def loss(self, batch) -> torch.Tensor:
        return sampled_log_loss(self.network_, batch["user"], batch["item"], self.n_items, self.config.n_negatives)

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        return score_all_items(self.network_, torch.from_numpy(user_idx).to(self.device), self.n_items)

    def _get_state(self):
        return {**super()._get_state(),
                "side.user_cat": self.user_cat_.index, "side.user_cat_n": np.array([self.user_cat_.n_values]),
                "side.item_cat": self.item_cat_.index, "side.item_cat_n": np.array([self.item_cat_.n_values]),
                "side.item_text": self.item_text_, "side.user_known": self.user_known_.astype(np.int8),
                "side.item_known": self.item_known_.astype(np.int8)}

    def _set_state(self, state):
        self.user_cat_ = CategoricalInputs(state["side.user_cat"], int(state["side.user_cat_n"][0]))
        self.item_cat_ = CategoricalInputs(state["side.item_cat"], int(state["side.item_cat_n"][0]))
        self.item_text_ = state["side.item_text"]
        self.user_known_ = state["side.user_known"].astype(bool)
        self.item_known_ = state["side.item_known"].astype(bool)
        super()._set_state(state)
