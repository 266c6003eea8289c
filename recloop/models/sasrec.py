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

Shapes: ``b`` batch, ``w`` window (<= ``max_len``), ``d`` hidden, ``h`` heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from recloop.errors import ConfigError
from recloop.models.sequential import PAD, ItemTable, SequenceRecommender, check_sequence_config
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
    text_init, text_model:
        Item vectors are id embeddings plus a learned projection of the items' text
        embeddings, encoded by ``text_model`` (a sentence-transformers model; empty means
        recloop.text's default, all-MiniLM-L6-v2). Needs item text.
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
    text_init: bool = False
    text_model: str = ""
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
        self.items = ItemTable(n_items, c.hidden, text)
        self.positions = nn.Embedding(c.max_len, c.hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.hidden, c.heads, c.ffn_size or c.hidden, c.dropout, c.attention_dropout)
                                    for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.hidden)
        for name, p in self.named_parameters():  # GPT-2 init: residual projections scaled by depth
            if name.endswith(("attention.out.weight", "ffn.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * max(1, c.layers)))
            elif p.dim() == 2 and not name.startswith(("items.", "positions.")):
                nn.init.normal_(p, std=0.02)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (b, w), left-padded -> the state after each position (b, w, d)."""
        _, w = tokens.shape
        position = torch.arange(self.max_len - w, self.max_len, device=tokens.device)  # last slot = newest item
        x = self.dropout(self.items(tokens) + self.positions(position))  # (b, w, d)
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
        return SASRecNetwork(self.n_items, self.config, self._text_tensor())
