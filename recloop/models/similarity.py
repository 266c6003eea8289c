"""Item-to-item similarity shared by the embedding models (ALS, BPR)."""

from __future__ import annotations

import numpy as np
import torch


def cosine_similar_items(vectors: np.ndarray, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items whose vectors have the highest cosine with ``item_idx``'s, the item
    itself left out: ``(item_idx, scores)``, each ``(k,)``, padded with -1 and -inf
    when the catalog is smaller than ``k + 1``."""
    if not 0 <= item_idx < len(vectors):
        raise IndexError(f"item_idx {item_idx} is out of range for {len(vectors)} items")
    v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))  # (items, f)
    unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cosine = unit @ unit[item_idx]  # (items,)
    cosine[item_idx] = -torch.inf
    values, items = torch.topk(cosine, min(k, len(vectors) - 1))
    out_items = np.full(k, -1, dtype=np.int64)
    out_scores = np.full(k, -np.inf, dtype=np.float32)
    out_items[:len(items)], out_scores[:len(items)] = items.numpy(), values.numpy()
    return out_items, out_scores
