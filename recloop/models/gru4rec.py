"""GRU4Rec: recurrent next-item recommendation.

B. Hidasi, A. Karatzoglou, L. Baltrunas and D. Tikk, "Session-based Recommendations with
Recurrent Neural Networks", ICLR 2016.

A GRU reads the user's last ``max_len`` items; its state after each position, projected
to the embedding width, is dotted with the item table to score the next item.
Departures from the paper: user histories play the role of sessions and are trained as
whole sequences with softmax cross-entropy over all items at every position (instead of
session-parallel mini-batches with TOP1/BPR over in-batch negatives), the output table is
tied with the input embeddings, and a learned start token scores empty histories (see
:mod:`recloop.models.sequential`). The CE variant is the strong one in Hidasi & Czapp,
"The effect of third party implementations on reproducibility", RecSys 2023.

Shapes: ``b`` batch, ``w`` window (<= ``max_len``), ``d`` embedding, ``g`` GRU width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recloop.errors import ConfigError
from recloop.models.sequential import PAD, ItemTable, SequenceRecommender, check_sequence_config, item_representation
from recloop.train.config import TrainerConfig


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec hyperparameters.

    Attributes
    ----------
    embedding, hidden, layers:
        Item embedding width, GRU width and depth.
    max_len:
        Items of history the model reads (the most recent ones).
    dropout:
        Dropout on the input embeddings and the GRU output.
    loss, n_negatives, negatives, text_init, text_model, train_data_dir, train:
        As :class:`~recloop.models.sasrec.SASRecConfig`.
    """

    embedding: int = 64
    hidden: int = 128
    layers: int = 1
    max_len: int = 50
    dropout: float = 0.3
    loss: str = "ce"
    n_negatives: int = 256
    negatives: str = "uniform"
    text_init: bool = False
    text_model: str = ""
    train_data_dir: str = ""
    train: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=100, patience=5, lr=1e-3,
                                                                       batch_size=128))

    def __post_init__(self):
        check_sequence_config("gru4rec", self.max_len, self.dropout, self.loss, self.negatives, self.n_negatives)
        if self.embedding < 1 or self.hidden < 1 or self.layers < 1:
            raise ConfigError(f"gru4rec sizes must be positive: embedding={self.embedding}, hidden={self.hidden}, "
                              f"layers={self.layers}")


class GRU4RecNetwork(nn.Module):
    def __init__(self, n_items: int, config: GRU4RecConfig, text: torch.Tensor | None = None):
        super().__init__()
        c = config
        self.items = ItemTable(n_items, c.embedding, text, item_representation(c))
        self.dropout = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.embedding, c.hidden, num_layers=c.layers, batch_first=True)
        self.project = nn.Linear(c.hidden, c.embedding)

    def encode(self, tokens: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` (b, w), left-padded -> the state after each position (b, w, d);
        ``table`` is the item table when the caller has it already."""
        _, w = tokens.shape
        lengths = (tokens != PAD).sum(dim=1).clamp(min=1)  # (b,) every row holds BOS or items
        # Left-align rows so the GRU starts from its initial state at the first real token
        # whatever the padding (batch scores then equal single-user scores).
        shift = (torch.arange(w, device=tokens.device)[None, :] + (w - lengths)[:, None]) % w  # (b, w)
        x = self.dropout(self.items(tokens.gather(1, shift), table))  # (b, w, d), left-aligned
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=w)  # (b, w, g), left-aligned
        back = (torch.arange(w, device=tokens.device)[None, :] - (w - lengths)[:, None]) % w
        out = out.gather(1, back[..., None].expand(-1, -1, out.shape[2]))  # (b, w, g), right-aligned again
        return self.project(self.dropout(out))  # (b, w, d)


class GRU4Rec(SequenceRecommender):
    """GRU4Rec trained on whole sequences with a next-item loss at every position."""

    name = "gru4rec"
    config_class = GRU4RecConfig

    def build_network(self) -> GRU4RecNetwork:
        return self._prepare_network(GRU4RecNetwork(self.n_items, self.config, self._text_tensor()))
