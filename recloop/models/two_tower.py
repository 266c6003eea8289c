"""Two-tower retrieval: a user tower and an item tower meeting in a dot product.

P. Covington, J. Adams and E. Sargin, "Deep Neural Networks for YouTube Recommendations",
RecSys 2016 (user tower over pooled watch history and side features); X. Yi, J. Yang,
L. Hong, D. Z. Cheng, L. Heldt, A. Kumthekar, Z. Zhao, L. Wei and E. Chi,
"Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations",
RecSys 2019 (in-batch softmax with the log-Q correction, L2-normalised towers and a
temperature).

Item tower: ``e_i = [id_i] + mean(genre embeddings of i) + [A(t_i)]`` with ``t_i`` the
frozen sentence-transformer embedding of the item's text and ``A`` the adaptor SASRec uses
too (:class:`~recloop.models.text_adaptor.MoEAdaptor`, UniSRec's parametric whitening with
a mixture of ``n_experts`` experts); ``v_i = normalise(e_i + MLP(e_i))``. ``item_repr``
chooses the item's own part: ``"id"`` (``id_i``, no text), ``"text"`` (``A(t_i)``, no
per-item parameter at all: the id table is not built) or ``"fused"`` (``id_i + A(t_i)``,
the default); genres are added in every case when ``use_genres``. ``A`` is the tower's
only text path: what was a linear projection ``W_t t_i + c`` is the adaptor with its
defaults ``n_experts = 1``, ``adaptor_dropout = 0`` (``(t_i - b) W``: the same family of
affine maps, ``c = -b W``, initialised as the adaptor initialises), and more experts turn
it into UniSRec's mixture.
User tower: ``h_u = mean of v_j over the user's history`` (the item tower's own output, so
history items never trained on still carry their content), then
``u = normalise(h_u + MLP([h_u ; mean(user feature embeddings)]))``. The score is
``u . v_i`` (cosine). There is no user id embedding: a user is their history and features,
so a user never seen in training is scored like any other.

Training: each observed pair ``(u, i)`` is an example whose user tower sees up to
``max_history`` other items of ``u`` drawn at random (the held-out pair is never its own
input). In a batch of ``B`` examples the logits are ``s_jk = u_j . v_k / temperature -
log q_k`` where ``q_k`` is item ``k``'s share of training interactions: its probability of
turning up as an in-batch negative, whose popularity bias the correction removes (Yi et
al. estimate ``q`` from a stream; here the log is fixed, so it is counted exactly). Other
copies of the positive item in the batch are masked. Loss: softmax cross-entropy over the
batch. ``id_dropout`` zeroes item ids at random in training, so the id-less path that
scores cold items is trained too.

DP-SGD (``train.privacy.enabled``, see :mod:`recloop.train.privacy` and
``docs/privacy.md``): a training row is then one *user*, not one pair, so that the
guarantee covers everything of a user a step learns from. A row draws up to
``private_targets`` of the user's items as targets and up to ``max_history`` of the
others as the user tower's input; its loss is the mean, over its targets, of a sampled
softmax against ``private_negatives`` items drawn uniformly from the catalog (the same
draw for the whole batch: it depends on no data, and a uniform draw needs no log-Q
correction). Every item vector a row needs is computed inside that row (``(B, T, d)``
through the item tower), so Opacus' hooks on ``nn.Embedding`` and ``nn.Linear`` see
each row's own inputs and give exact per-user gradients. Item popularity (``log q``,
which items were seen) is not used: it is a statistic of the whole private log.

Cold items: an item without training interactions has its id embedding zeroed, so it is
scored from genres and text through the same tower. ``text_to_item_vectors`` maps bare
text embeddings (an item known by text only) into the item space, either through the item
tower with the id and genre inputs left out (``projection = "tower"``, trained jointly by
the id dropout) or by ridge regression from the text embeddings of warm items to their
learned vectors (``projection = "ridge"``, see :class:`~recloop.text.RidgeProjection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.neural import NeuralRecommender
from recloop.models.side_inputs import CategoricalInputs, MeanEmbedding, item_text_embeddings
from recloop.models.text_adaptor import ITEM_REPRESENTATIONS, MoEAdaptor
from recloop.text.encoder import DEFAULT_MODEL, TextEncoder, TextEncoderConfig
from recloop.text.items import embed_features
from recloop.text.projection import RidgeProjection
from recloop.train import distributed
from recloop.train.config import TrainerConfig

PROJECTIONS = ("tower", "ridge")


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyperparameters of :class:`TwoTower`.

    ``dim``: width of both towers' output (and of every input embedding).
    ``hidden``: widths of the residual MLP of each tower (empty: no MLP).
    ``max_history``: history items the user tower sees per training example.
    ``temperature``: of the softmax over cosine scores (Yi et al. use 0.05).
    ``logq``: subtract ``log q`` (the popularity correction) from in-batch logits.
    ``item_repr``: the item's own part, ``"id"``, ``"text"`` or ``"fused"`` (see the
    module docstring); ``use_genres``/``user_features``: which side inputs to use.
    ``n_experts``/``adaptor_dropout``: the text adaptor (1 and 0: a linear projection;
    UniSRec uses 8 and 0.2).
    ``id_dropout``: probability of zeroing an item's id embedding in a training step.
    ``text_model``/``text_fields``/``text_cache_dir``: the frozen text encoder.
    ``projection``: how :meth:`TwoTower.text_to_item_vectors` maps text to item space.
    ``ridge_l2``: the ridge penalty of that projection.
    ``private_targets``/``private_negatives``: with DP-SGD (``train.privacy``), the
    targets drawn per user row and the uniform negatives shared by a batch.
    ``train_data_dir``: a folder to write the training examples to once per fit (``.npy``,
    overwritten) and read them back memory-mapped; empty keeps them in memory.
    """

    dim: int = 64
    hidden: tuple[int, ...] = (128,)
    max_history: int = 50
    temperature: float = 0.05
    logq: bool = True
    item_repr: str = "fused"
    use_genres: bool = True
    user_features: bool = True
    n_experts: int = 1
    adaptor_dropout: float = 0.0
    id_dropout: float = 0.1
    dropout: float = 0.0
    text_model: str = DEFAULT_MODEL
    text_fields: tuple[str, ...] = ()
    text_cache_dir: str | None = None
    projection: str = "tower"
    ridge_l2: float = 10.0
    train_data_dir: str = ""
    private_targets: int = 8
    private_negatives: int = 128
    train: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=50, batch_size=512, lr=1e-3, patience=5))

    def __post_init__(self):
        if self.dim < 1 or (self.hidden and min(self.hidden) < 1):
            raise ConfigError(f"two-tower dim and hidden widths must be positive, got {self.dim} and {self.hidden}")
        if self.max_history < 1:
            raise ConfigError(f"two-tower max_history must be at least 1, got {self.max_history}")
        if self.temperature <= 0:
            raise ConfigError(f"two-tower temperature must be positive, got {self.temperature}")
        if self.item_repr not in ITEM_REPRESENTATIONS:
            raise ConfigError(f"two-tower item_repr must be one of {ITEM_REPRESENTATIONS}, got {self.item_repr!r}")
        if self.n_experts < 1:
            raise ConfigError(f"two-tower n_experts must be at least 1, got {self.n_experts}")
        for name in ("id_dropout", "dropout", "adaptor_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"two-tower {name} must be in [0, 1), got {getattr(self, name)}")
        if self.private_targets < 1 or self.private_negatives < 1:
            raise ConfigError(f"two-tower private_targets and private_negatives must be at least 1, got "
                              f"{self.private_targets} and {self.private_negatives}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"two-tower projection must be one of {PROJECTIONS}, got {self.projection!r}")

    @property
    def use_ids(self) -> bool:
        """Whether items have a learned id embedding (``item_repr`` ``"id"`` or ``"fused"``)."""
        return self.item_repr != "text"

    @property
    def use_text(self) -> bool:
        """Whether items are read through the text adaptor (``"text"`` or ``"fused"``)."""
        return self.item_repr != "id"


def _residual_mlp(width_in: int, hidden: tuple[int, ...], width_out: int, dropout: float) -> nn.Module | None:
    if not hidden:
        return None
    blocks: list[nn.Module] = []
    width = width_in
    for width_hidden in hidden:
        blocks += [nn.Linear(width, width_hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = width_hidden
    blocks.append(nn.Linear(width, width_out))
    return nn.Sequential(*blocks)


class TwoTowerNetwork(nn.Module):
    def __init__(self, n_items: int, config: TwoTowerConfig, item_cat: CategoricalInputs, item_text: np.ndarray,
                 user_cat: CategoricalInputs, item_known: np.ndarray, log_q: np.ndarray):
        super().__init__()
        d = config.dim
        self.config, self.n_items = config, n_items
        self.item_id = nn.Embedding(n_items, d) if config.use_ids else None  # "text": no per-item parameter
        if self.item_id is not None:
            nn.init.normal_(self.item_id.weight, std=0.1)
        self.item_cat = MeanEmbedding(item_cat.n_values, d)
        self.text = MoEAdaptor(item_text.shape[1], d, config.n_experts, config.adaptor_dropout) if config.use_text \
            else None
        self.item_mlp = _residual_mlp(d, config.hidden, d, config.dropout)
        self.user_cat = MeanEmbedding(user_cat.n_values, d)
        self.user_mlp = _residual_mlp(2 * d, config.hidden, d, config.dropout)
        # Inputs switched off are not trained (DP-SGD needs a per-row gradient for every trained parameter).
        self.item_cat.embedding.weight.requires_grad_(config.use_genres)
        self.register_buffer("item_cat_index", torch.from_numpy(item_cat.index), persistent=False)
        self.register_buffer("item_text", torch.from_numpy(item_text), persistent=False)
        self.register_buffer("user_cat_index", torch.from_numpy(user_cat.index), persistent=False)
        self.register_buffer("item_known", torch.from_numpy(item_known.astype(np.float32)), persistent=False)
        self.register_buffer("log_q", torch.from_numpy(log_q.astype(np.float32)), persistent=False)

    # --- item tower ---------------------------------------------------------------------------------
    def _finish_items(self, e: torch.Tensor) -> torch.Tensor:
        if self.item_mlp is not None:
            e = e + self.item_mlp(e)
        return F.normalize(e, dim=-1)

    def item_vectors(self) -> torch.Tensor:
        """``(n_items, d)`` unit vectors of the whole catalog (id dropout when training)."""
        cfg = self.config
        e = torch.zeros(self.n_items, cfg.dim, device=self.item_known.device)
        if cfg.use_ids:
            keep = self.item_known
            if self.training and cfg.id_dropout > 0:
                keep = keep * (torch.rand_like(keep) >= cfg.id_dropout)
            e = e + self.item_id.weight * keep.unsqueeze(-1)
        if cfg.use_genres:
            e = e + self.item_cat(self.item_cat_index)
        if self.text is not None:
            e = e + self.text(self.item_text)
        return self._finish_items(e)

    def item_vectors_of(self, index: torch.Tensor) -> torch.Tensor:
        """Item vectors of ``index`` ``(B, T) -> (B, T, d)``, every layer called on the rows'
        own inputs (what per-row gradients need; equal to ``item_vectors()[index]``
        without id dropout)."""
        cfg = self.config
        e = torch.zeros(*index.shape, cfg.dim, device=index.device)
        if cfg.use_ids:
            keep = self.item_known[index]
            if self.training and cfg.id_dropout > 0:
                keep = keep * (torch.rand_like(keep) >= cfg.id_dropout)
            e = e + self.item_id(index) * keep.unsqueeze(-1)
        if cfg.use_genres:
            e = e + self.item_cat(self.item_cat_index[index])
        if self.text is not None:
            e = e + self.text(self.item_text[index])
        return self._finish_items(e)

    def text_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Item vectors from text embeddings alone (no id, no genres): ``(n, d_text) -> (n, d)``."""
        if self.text is None:
            raise ConfigError("this two-tower model was trained without text (item_repr = 'id')")
        return self._finish_items(self.text(text))

    # --- user tower ---------------------------------------------------------------------------------
    def user_vectors(self, pooled: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``pooled``: (b, d) mean history item vectors; ``users``: (b,) indices, -1 unknown -> (b, d)."""
        known = (users >= 0).unsqueeze(-1).to(pooled.dtype)
        features = self.user_cat(self.user_cat_index[users.clamp_min(0)]) * known  # (b, d)
        if not self.config.user_features:
            features = torch.zeros_like(features)
        h = pooled
        if self.user_mlp is not None:
            h = h + self.user_mlp(torch.cat([pooled, features], dim=-1))
        else:
            h = h + features
        return F.normalize(h, dim=-1)


@dataclass(frozen=True, eq=False)
class TowerData:
    """Examples = observed (user, item) pairs; each batch draws the user tower's input,
    up to ``max_history`` of the user's other items, padded with ``n_items``.

    Kept as the log's CSR over users and nothing else: example ``e`` is the pair at
    position ``e`` of ``items`` (int32), its user found from ``indptr`` when a batch is
    gathered, so the examples cost 4 bytes each and an epoch copies none of them (it
    permutes example indices).
    """

    indptr: np.ndarray  # (n_users + 1,) int64: user u's items are items[indptr[u]:indptr[u + 1]]
    items: np.ndarray  # (n_pairs,) int32 item_idx, sorted by user
    n_items: int
    max_history: int
    rng: np.random.Generator

    @classmethod
    def from_log(cls, log: Interactions, max_history: int, seed: int) -> TowerData:
        csr = log.to_csr()
        return cls(csr.indptr.astype(np.int64), csr.indices.astype(np.int32, copy=False), log.n_items, max_history,
                   np.random.default_rng([seed, 1]))

    @classmethod
    def open(cls, directory: str | Path, n_items: int, max_history: int, seed: int) -> TowerData:
        """The arrays ``save`` wrote to ``directory``, memory-mapped read-only."""
        directory = Path(directory)
        return cls(np.load(directory / "indptr.npy", mmap_mode="r"), np.load(directory / "items.npy", mmap_mode="r"),
                   n_items, max_history, np.random.default_rng([seed, 1]))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "indptr.npy", self.indptr)
        np.save(directory / "items.npy", self.items)

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        index = np.asarray(index, dtype=np.int64)
        users = np.searchsorted(self.indptr, index, side="right") - 1
        targets = self.items[index].astype(np.int64)
        history = np.full((len(index), self.max_history), self.n_items, dtype=np.int64)
        for row, (user, target) in enumerate(zip(users, targets)):
            own = self.items[self.indptr[user]:self.indptr[user + 1]]
            own = own[own != target]
            if len(own) > self.max_history:
                own = self.rng.choice(own, self.max_history, replace=False)
            history[row, :len(own)] = own
        return {"user": torch.from_numpy(users), "item": torch.from_numpy(targets),
                "history": torch.from_numpy(history)}


@dataclass(frozen=True, eq=False)
class UserRows:
    """DP-SGD training rows: row ``u`` is user ``u`` (users without items are left out).

    ``batch(rows)`` draws, per user, up to ``targets`` of their items as targets (padded
    with ``n_items``) and up to ``max_history`` of the others as the input history, plus
    ``negatives`` catalog items drawn uniformly, shared by the batch.
    """

    indptr: np.ndarray
    items: np.ndarray
    users: np.ndarray  # (n_rows,) user_idx of each row
    n_items: int
    max_history: int
    targets: int
    negatives: int
    rng: np.random.Generator

    @classmethod
    def from_log(cls, log: Interactions, max_history: int, targets: int, negatives: int, seed: int) -> UserRows:
        csr = log.to_csr()
        users = np.flatnonzero(np.diff(csr.indptr) > 0)
        return cls(csr.indptr.astype(np.int64), csr.indices.astype(np.int64), users, log.n_items, max_history,
                   targets, negatives, np.random.default_rng([seed, 3]))

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        users = self.users[np.asarray(index, dtype=np.int64)]
        targets = np.full((len(users), self.targets), self.n_items, dtype=np.int64)
        history = np.full((len(users), self.max_history), self.n_items, dtype=np.int64)
        for row, user in enumerate(users):
            own = self.rng.permutation(self.items[self.indptr[user]:self.indptr[user + 1]])
            chosen = own[:self.targets]
            rest = own[self.targets:self.targets + self.max_history]
            targets[row, :len(chosen)] = chosen
            history[row, :len(rest)] = rest
        negatives = self.rng.integers(0, self.n_items, self.negatives)
        return {"user": torch.from_numpy(users), "targets": torch.from_numpy(targets),
                "history": torch.from_numpy(history), "negatives": torch.from_numpy(negatives)}


class TwoTower(NeuralRecommender):
    name = "two-tower"
    config_class = TwoTowerConfig
    privacy_unit = "user"
    #: The ways ``text_to_item_vectors`` can map text into the item space.
    text_projections = PROJECTIONS

    @property
    def scores_depend_on_user_id(self) -> bool:
        """Only through user side features; without them a user is their history."""
        return bool(self.config.user_features and not self.user_cat_.empty)

    # --- fitting ------------------------------------------------------------------------------------
    def prepare(self, train: Interactions) -> None:
        cfg = self.config
        if (cfg.use_genres or cfg.use_text) and self.item_features_ is None:
            raise ConfigError(f"TwoTower uses item genres or text (use_genres = {cfg.use_genres}, item_repr = "
                              f"{cfg.item_repr!r}) but fit() got no item features: pass fit(train, "
                              "item_features=dataset.item_features), or set use_genres = false and item_repr = 'id'")
        self.item_cat_ = CategoricalInputs.from_features(self.item_features_ if cfg.use_genres else None, train.items)
        self.user_cat_ = CategoricalInputs.from_features(self.user_features_ if cfg.user_features else None,
                                                         train.users)
        self.item_text_ = np.zeros((self.n_items, 0), dtype=np.float32)
        if cfg.use_text:
            self.item_text_ = item_text_embeddings(self.item_features_, train.items, self.text_encoder(),
                                                   cfg.text_fields)
        counts = distributed.item_counts(train).astype(np.float64)  # the whole log's, when split by user
        self.item_known_ = counts > 0
        if self.private:  # which items were seen is a statistic of the private log: the catalog is public
            self.item_known_ = np.ones(self.n_items, dtype=bool)
        q = counts / counts.sum()
        self.log_q_ = np.log(np.where(q > 0, q, q[q > 0].min())).astype(np.float32)

    def text_encoder(self) -> TextEncoder:
        """The encoder that produced this model's item text embeddings."""
        return TextEncoder(TextEncoderConfig(model=self.config.text_model, cache_dir=self.config.text_cache_dir))

    def embed_items(self, features: Features) -> np.ndarray:
        """Text embeddings of the rows of ``features`` as this model encodes item text (its
        encoder and ``text_fields``): the input of :meth:`text_to_item_vectors` for new items."""
        return embed_features(features, self.text_encoder(), self.config.text_fields or None)

    def build_network(self) -> nn.Module:
        return TwoTowerNetwork(self.n_items, self.config, self.item_cat_, self.item_text_, self.user_cat_,
                               self.item_known_, self.log_q_)

    def training_data(self, train: Interactions) -> TowerData | UserRows:
        cfg = self.config
        if self.private:
            return UserRows.from_log(train, cfg.max_history, cfg.private_targets, cfg.private_negatives,
                                     cfg.train.seed)
        data = TowerData.from_log(train, cfg.max_history, cfg.train.seed)
        if not cfg.train_data_dir:
            return data
        data.save(cfg.train_data_dir)
        return TowerData.open(cfg.train_data_dir, self.n_items, cfg.max_history, cfg.train.seed)

    def loss(self, batch) -> torch.Tensor:
        if self.private:
            return self._private_loss(batch)
        net, cfg = self.network_, self.config
        items, history = batch["item"], batch["history"]  # (B,), (B, L)
        vectors = net.item_vectors()  # (n_items, d)
        padded = torch.cat([vectors, vectors.new_zeros(1, vectors.shape[1])])  # row n_items = padding
        mask = (history < self.n_items).unsqueeze(-1).to(vectors.dtype)  # (B, L, 1)
        pooled = (padded[history] * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, d)
        users = net.user_vectors(pooled, batch["user"])  # (B, d)
        logits = users @ vectors[items].T / cfg.temperature  # (B, B): row j, in-batch candidate k
        if cfg.logq:
            logits = logits - net.log_q[items].unsqueeze(0)
        duplicate = items.unsqueeze(0) == items.unsqueeze(1)
        duplicate.fill_diagonal_(False)
        logits = logits.masked_fill(duplicate, float("-inf"))
        return F.cross_entropy(logits.float(), torch.arange(len(items), device=logits.device))

    def _private_loss(self, batch) -> torch.Tensor:
        """Mean over user rows of each row's sampled-softmax loss (see the module
        docstring); every tensor keeps the row as its first dimension."""
        net, cfg = self.network_, self.config
        targets, history, negatives = batch["targets"], batch["history"], batch["negatives"]  # (B, M), (B, L), (K,)
        b, m = targets.shape
        candidates = torch.cat([targets, negatives.unsqueeze(0).expand(b, -1), history], dim=1)  # (B, M + K + L)
        vectors = net.item_vectors_of(candidates.clamp_max(self.n_items - 1))  # (B, T, d)
        k = negatives.shape[0]
        target_v, negative_v, history_v = vectors[:, :m], vectors[:, m:m + k], vectors[:, m + k:]
        mask = (history < self.n_items).unsqueeze(-1).to(vectors.dtype)  # (B, L, 1)
        pooled = (history_v * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, d)
        users = net.user_vectors(pooled, batch["user"])  # (B, d)
        positive = (users.unsqueeze(1) * target_v).sum(-1) / cfg.temperature  # (B, M)
        negative = torch.einsum("bd,bkd->bk", users, negative_v) / cfg.temperature  # (B, K)
        hit = negatives.unsqueeze(0).unsqueeze(0) == targets.unsqueeze(-1)  # (B, M, K): a negative that is the target
        logits = torch.cat([positive.unsqueeze(-1), negative.unsqueeze(1).expand(b, m, k).masked_fill(
            hit, float("-inf"))], dim=-1)  # (B, M, 1 + K)
        per_target = torch.logsumexp(logits, -1) - positive  # (B, M)
        valid = (targets < self.n_items).to(per_target.dtype)
        return ((per_target * valid).sum(1) / valid.sum(1).clamp_min(1.0)).mean()

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self.ridge_ = None
        if self.config.use_text:
            # Warm items' text -> their learned vectors, weighted by the evidence behind each vector.
            warm = np.flatnonzero(self.item_known_)
            weights = np.log1p(distributed.item_counts(train)[warm].astype(np.float64))
            if self.private:  # post-processing of the private vectors only: no counts of the log
                weights = np.ones(len(warm))
            self.ridge_ = RidgeProjection(self.config.ridge_l2).fit(self.item_text_[warm],
                                                                   self.item_vectors()[warm], weights)

    # --- scoring ------------------------------------------------------------------------------------
    def _item_matrix(self) -> torch.Tensor:
        return self.network_.item_vectors()

    def _user_matrix(self, user_idx: np.ndarray, history: UserHistories, items: torch.Tensor) -> torch.Tensor:
        x = history.to_csr()  # distinct items per user, as in training
        lengths = np.diff(x.indptr)
        device = items.device
        rows = torch.from_numpy(np.repeat(np.arange(len(lengths)), lengths)).to(device)
        cols = torch.from_numpy(x.indices.astype(np.int64)).to(device)
        pooled = items.new_zeros(len(lengths), items.shape[1]).index_add_(0, rows, items[cols])  # (b, d)
        pooled = pooled / torch.from_numpy(np.maximum(lengths, 1)).to(device, items.dtype).unsqueeze(-1)
        return self.network_.user_vectors(pooled, torch.from_numpy(user_idx).to(device))

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        items = self._item_matrix()
        return self._user_matrix(user_idx, history, items) @ items.T

    def item_vectors(self) -> np.ndarray:
        """Unit item vectors ``(n_items, d)``: ``score = user_vectors @ item_vectors.T``."""
        self._check_fitted("item_vectors")
        with self.inference():
            return self._item_matrix().cpu().numpy()

    def user_vectors(self, user_idx: np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        self._check_fitted("user_vectors")
        user_idx, history = self._query_histories(user_idx, history)
        with self.inference():
            return self._user_matrix(user_idx, history, self._item_matrix()).cpu().numpy()

    def text_to_item_vectors(self, text_embeddings: np.ndarray, projection: str | None = None) -> np.ndarray:
        """Item vectors ``(n, d)`` for items known only by their text embeddings (from
        :meth:`text_encoder`); ``projection`` overrides the config's ``"tower"``/``"ridge"``."""
        self._check_fitted("text_to_item_vectors")
        projection = projection or self.config.projection
        if projection not in PROJECTIONS:
            raise ConfigError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        if not self.config.use_text:
            raise ConfigError("this two-tower model was trained without text (item_repr = 'id'); "
                              "it cannot place items by their text")
        text = np.asarray(text_embeddings, dtype=np.float32)
        if projection == "ridge":
            vectors = self.ridge_.transform(text)
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        with self.inference():
            return self.network_.text_vectors(torch.from_numpy(text).to(self.device)).cpu().numpy()

    # --- persistence --------------------------------------------------------------------------------
    def _get_state(self):
        state = {**super()._get_state(),
                 "side.item_cat": self.item_cat_.index, "side.item_cat_n": np.array([self.item_cat_.n_values]),
                 "side.user_cat": self.user_cat_.index, "side.user_cat_n": np.array([self.user_cat_.n_values]),
                 "side.item_text": self.item_text_, "side.item_known": self.item_known_.astype(np.int8),
                 "side.log_q": self.log_q_}
        if self.ridge_ is not None:
            state.update(self.ridge_.get_state())
        return state

    def _set_state(self, state):
        self.item_cat_ = CategoricalInputs(state["side.item_cat"], int(state["side.item_cat_n"][0]))
        self.user_cat_ = CategoricalInputs(state["side.user_cat"], int(state["side.user_cat_n"][0]))
        self.item_text_ = state["side.item_text"]
        self.item_known_ = state["side.item_known"].astype(bool)
        self.log_q_ = state["side.log_q"]
        self.ridge_ = RidgeProjection(self.config.ridge_l2).set_state(state) if "projection.weights" in state else None
        super()._set_state(state)
