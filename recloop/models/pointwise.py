"""Training data and loss of pointwise models (NeuMF, MLP): observed pairs against
uniformly sampled negatives, with the log loss of He et al. (WWW 2017, eq. 7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recloop.data.interactions import Interactions


@dataclass(frozen=True, eq=False)
class PairData:
    """The distinct (user, item) pairs of a log, as the trainer's examples."""

    user_idx: np.ndarray
    item_idx: np.ndarray

    @classmethod
    def from_log(cls, log: Interactions) -> PairData:
        matrix = log.to_csr().tocoo()
        return cls(matrix.row.astype(np.int64), matrix.col.astype(np.int64))

    def __len__(self) -> int:
        return len(self.user_idx)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {"user": torch.from_numpy(self.user_idx[index]), "item": torch.from_numpy(self.item_idx[index])}


def sampled_log_loss(logit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], users: torch.Tensor,
                     items: torch.Tensor, n_items: int, n_negatives: int) -> torch.Tensor:
    """Binary cross-entropy of each positive pair and ``n_negatives`` items drawn uniformly
    per positive (an occasional false negative is accepted, as in the paper).

    ``logit(users, items)`` scores aligned 1-D batches of pairs.
    """
    b = len(users)
    negatives = torch.randint(0, n_items, (b, n_negatives), device=users.device)  # (b, n_neg)
    pair_users = torch.cat([users, users.repeat_interleave(n_negatives)])  # (b * (1 + n_neg),)
    pair_items = torch.cat([items, negatives.reshape(-1)])
    labels = torch.cat([torch.ones(b, device=users.device), torch.zeros(b * n_negatives, device=users.device)])
    return F.binary_cross_entropy_with_logits(logit(pair_users, pair_items).float(), labels)


def score_all_items(logit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], users: torch.Tensor, n_items: int,
                    max_pairs: int = 1 << 20) -> torch.Tensor:
    """``(len(users), n_items)`` logits of every pair, in chunks of about ``max_pairs`` pairs."""
    out = torch.empty(len(users), n_items, device=users.device)
    items = torch.arange(n_items, device=users.device)
    step = max(1, max_pairs // max(1, n_items))
    for start in range(0, len(users), step):
        chunk = users[start:start + step]
        out[start:start + len(chunk)] = logit(chunk.repeat_interleave(n_items), items.repeat(len(chunk))).view(
            len(chunk), n_items).float()
    return out
