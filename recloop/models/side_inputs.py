"""Side features as network inputs: categorical values as padded index rows, text as vectors.

Feature-based models (MLP, two-tower) embed a row's categorical values (genres; age,
gender, occupation) and average them, and project a frozen text embedding. This module
turns a :class:`~recloop.data.Features` table into the arrays those layers need, plus
the pooling layer itself. Arrays are plain numpy, saved in the model's state, so a
reloaded model needs neither the features nor the text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recloop.data.features import Features
from recloop.data.ids import IdMap


@dataclass(frozen=True, eq=False)
class CategoricalInputs:
    """``index[r]``: the row's categorical values as ids ``1..n_values-1`` (one vocabulary
    over all features, each offset by the ones before it), right-padded with 0."""

    index: np.ndarray  # (n_rows, max_values) int64
    n_values: int  # including the padding id 0

    @classmethod
    def from_features(cls, features: Features | None, ids: IdMap, names: tuple[str, ...] = ()) -> CategoricalInputs:
        """All categorical features of ``features`` (or only ``names``), rows aligned to ``ids``."""
        if features is None or not features.categorical:
            return cls(np.zeros((len(ids), 1), dtype=np.int64), 1)
        if features.ids != ids:
            features = features.aligned_to(ids)
        chosen = [n for n in features.categorical if not names or n in names]
        rows: list[list[int]] = [[] for _ in range(len(ids))]
        offset = 1
        for name in chosen:
            matrix = features.categorical[name].matrix.tocsr()
            for r in range(matrix.shape[0]):
                rows[r].extend((matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]] + offset).tolist())
            offset += matrix.shape[1]
        width = max(1, max((len(r) for r in rows), default=1))
        index = np.zeros((len(ids), width), dtype=np.int64)
        for r, values in enumerate(rows):
            index[r, :len(values)] = values
        return cls(index, offset)

    @property
    def empty(self) -> bool:
        return self.n_values <= 1


class MeanEmbedding(nn.Module):
    """The mean embedding of each row's non-padding ids (a zero vector for none)."""

    def __init__(self, n_values: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(max(1, n_values), dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        # index: (..., m) -> (..., dim)
        mask = (index > 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        total = (self.embedding(index) * mask).sum(-2)
        return total / mask.sum(-2).clamp_min(1.0)


def item_text_embeddings(features: Features | None, ids: IdMap, encoder, fields: tuple[str, ...] = ()) -> np.ndarray:
    """Text embeddings of the items ``ids`` (zero rows for items without text)."""
    from recloop.text.items import embed_features

    if features.ids != ids:
        features = features.aligned_to(ids)
    return embed_features(features, encoder, fields or None)
