"""SASRec: self-attentive sequential recommendation.

W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

A causal transformer reads the user's last ``max_len`` items (learned positional
embeddings) and the state after each position, dotted with the item embedding table,
scores the next item. Departures from the paper, all measured to help or to be needed:

* **Loss**: a softmax at every position instead of the paper's binary cross-entropy
  with one sampled negative; a softmax is what makes SASRec beat strong item-based
  baselines on full ranking (Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is
  BERT4Rec really better than SASRec?", RecSys 2023). The default ``loss = "ce"`` is the
  full softmax over the catalog; ``loss = "sampled"`` is a sampled softmax with log-Q
  correction. The headline amazon-beauty result (median test NDCG@10 0.0573 over 3
  seeds, ``configs/beauty-sasrec.toml``, docs/neural.md) used the **sampled softmax
  with 1,024 popularity-drawn negatives** (``loss = "sampled"``, ``n_negatives = 1024``,
  ``negatives = "popularity"``), not the full CE: on that catalog the full softmax costs
  several times the CPU per epoch (4-7x, measured in two sittings).
* **Pre-norm blocks** (as GPT-2/nanoGPT) with a final LayerNorm, GELU feed-forward.
* **Start token**: histories begin with a learned BOS token, so an empty history is
  scored from a trained start state (see :mod:`recloop.models.sequential`).
* **Item text** (``item_repr``): an item is its id embedding (``"id"``, the paper), its
  frozen sentence embedding through UniSRec's whitened mixture-of-experts adaptor
  (``"text"``; Hou et al., "Towards Universal Sequence Representation Learning for
  Recommender Systems", KDD 2022; :mod:`recloop.models.text_adaptor`), or the sum of
  both (``"fused"``, UniSRec's transductive setting). ``temperature > 0`` scores with
  cosine logits over the temperature, as UniSRec does. ``init_from`` starts from the
  catalog-independent weights of a model trained on another catalog (transfer; UniSRec
  pre-trains on several domains with extra contrastive losses, not done here).

Shapes: ``b`` batch, ``w`` window (<= ``max_len``), ``d`` hidden, ``h`` heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from recloop.errors import ConfigError
from recloop.models.sequential import (
    ITEM_REPRESENTATIONS,
    PAD,
    ItemTable,
    SequenceRecommender,
    check_sequence_config,
    item_representation,
)
from recloop.train.config import TrainerConfig


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec hyperparameters.

    Attributes
    ----------
    hidden, layers, heads:
        Width, depth and attention heads (``hidden`` divisible by ``heads``).
    max_len:
        Items of history the model reads (the most recent ones).
    ffn_size:
        Inner width of the feed-forward layers; 0 means ``hidden`` (as the paper).
    dropout, attention_dropout:
        Dropout on embeddings and residual branches, and on attention weights; sparse
        data like amazon-beauty wants them high (~0.5).
    loss, n_negatives, negatives:
        ``ce`` (full softmax over all items) or ``sampled`` (``n_negatives`` shared
        negatives drawn ``uniform`` or by ``popularity``, log-Q corrected).
    item_repr:
        ``"id"`` (an id embedding per item), ``"text"`` (the item's frozen text embedding
        through the learned adaptor; no per-item parameter, so it ranks items never seen
        in training and transfers to other catalogs) or ``"fused"`` (their sum). Items
        without training interactions get no id vector (zero): in ``"fused"`` they are
        their text part, in ``"id"`` they all score 0. Text needs item features with text.
    text_fields:
        The item text fields joined into each item's text, e.g. ``["title", "brand",
        "categories"]``; empty means every text field of the dataset.
    text_model:
        The sentence-transformers model encoding the text (empty: recloop.text's
        default, all-MiniLM-L6-v2, offline; embeddings cached on disk).
    n_experts, adaptor_dropout:
        Experts of the mixture-of-experts adaptor and dropout on its text input (UniSRec: 8, 0.2).
    id_dropout:
        ``"fused"`` only: the share of items whose id vector a training step drops (one
        draw per item and step), so the model also learns to score items from their text
        alone, the way it must score items never seen in training (whose id vector is
        zero). 0 (the default) never drops.
    temperature:
        ``> 0``: logits are cosines divided by it (UniSRec: 0.07); 0: dot products.
    init_from:
        A saved sasrec model folder whose catalog-independent weights (transformer,
        positions, adaptor, start token) initialise this one; same sizes required.
    freeze_encoder:
        With ``init_from``: keep the transferred transformer and positions fixed and train
        the item side only (adaptor, id and start embeddings), as UniSRec fine-tunes.
    text_init:
        The older switch for ``item_repr = "fused"``.
    train_data_dir:
        A folder to write the training examples to once per fit (``.npy``, overwritten)
        and read them back memory-mapped, so they need not stay in RAM; empty (the
        default) keeps them in memory.
    train:
        The :class:`~recloop.train.TrainerConfig` (``[model.train]`` in TOML).
    """

    hidden: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    ffn_size: int = 0
    dropout: float = 0.5
    attention_dropout: float = 0.5
    loss: str = "ce"
    n_negatives: int = 256
    negatives: str = "uniform"
    item_repr: str = "id"
    text_fields: tuple[str, ...] = ()
    text_model: str = ""
    n_experts: int = 8
    adaptor_dropout: float = 0.2
    id_dropout: float = 0.0
    temperature: float = 0.0
    init_from: str = ""
    freeze_encoder: bool = False
    text_init: bool = False
    train_data_dir: str = ""
    train: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=200, patience=10, lr=1e-3,
                                                                       batch_size=128))

    def __post_init__(self):
        check_sequence_config("sasrec", self.max_len, self.dropout, self.loss, self.negatives, self.n_negatives)
        if self.hidden < 1 or self.layers < 0 or self.heads < 1 or self.ffn_size < 0:
            raise ConfigError(f"sasrec sizes must be positive: hidden={self.hidden}, layers={self.layers}, "
                              f"heads={self.heads}, ffn_size={self.ffn_size}")
        if self.hidden % self.heads:
            raise ConfigError(f"sasrec.hidden ({self.hidden}) must be divisible by sasrec.heads ({self.heads})")
        if not 0 <= self.attention_dropout < 1:
            raise ConfigError(f"sasrec.attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.item_repr not in ITEM_REPRESENTATIONS:
            raise ConfigError(f"sasrec.item_repr must be one of {ITEM_REPRESENTATIONS}, got {self.item_repr!r}")
        if not 0 <= self.id_dropout < 1:
            raise ConfigError(f"sasrec.id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.n_experts < 1 or not 0 <= self.adaptor_dropout < 1 or self.temperature < 0:
            raise ConfigError(f"sasrec adaptor settings out of range: n_experts={self.n_experts} (>= 1), "
                              f"adaptor_dropout={self.adaptor_dropout} (in [0, 1)), temperature={self.temperature} "
                              "(>= 0)")


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attention_dropout = attention_dropout
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, w, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (b, w, d)
        q, k, v = (t.view(b, w, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (b, h, w, d/h)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, w, d)  # (b, w, d)
        return self.dropout(self.out(y))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + ffn(ln(x))``."""

    def __init__(self, hidden: int, heads: int, ffn_size: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attention = CausalSelfAttention(hidden, heads, dropout, attention_dropout)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_size), nn.GELU(), nn.Linear(ffn_size, hidden),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)  # (b, w, d)
        return x + self.ffn(self.norm2(x))  # (b, w, d)


class SASRecNetwork(nn.Module):
    def __init__(self, n_items: int, config: SASRecConfig, text: torch.Tensor | None = None):
        super().__init__()
        c = config
        self.max_len = c.max_len
        self.items = ItemTable(n_items, c.hidden, text, item_representation(c), c.n_experts, c.adaptor_dropout,
                               c.id_dropout)
        self.positions = nn.Embedding(c.max_len, c.hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.hidden, c.heads, c.ffn_size or c.hidden, c.dropout, c.attention_dropout)
                                    for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.hidden)
        for name, p in self.named_parameters():  # GPT-2 init: residual projections scaled by depth
            if name.endswith(("attention.out.weight", "ffn.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * max(1, c.layers)))
            elif p.dim() == 2 and not name.startswith(("items.", "positions.")):  # the adaptor inits itself
                nn.init.normal_(p, std=0.02)

    def encode(self, tokens: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` (b, w), left-padded -> the state after each position (b, w, d);
        ``table`` is the ``(n_items, d)`` item table when the caller has it already."""
        _, w = tokens.shape
        position = torch.arange(self.max_len - w, self.max_len, device=tokens.device)  # last slot = newest item
        x = self.dropout(self.items(tokens, table) + self.positions(position))  # (b, w, d)
        # Causal attention over non-padding keys; each position also sees itself, so that
        # padded rows never attend to nothing (their outputs are ignored).
        causal = torch.ones(w, w, dtype=torch.bool, device=tokens.device).tril()  # (w, w)
        keys = (tokens != PAD)[:, None, None, :]  # (b, 1, 1, w)
        mask = causal & (keys | torch.eye(w, dtype=torch.bool, device=tokens.device))  # (b, 1, w, w)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)  # (b, w, d)


class SASRec(SequenceRecommender):
    """SASRec trained on whole sequences with a next-item loss at every position."""

    name = "sasrec"
    config_class = SASRecConfig

    def build_network(self) -> SASRecNetwork:
        return self._prepare_network(SASRecNetwork(self.n_items, self.config, self._text_tensor()))
