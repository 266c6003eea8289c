"""Small helpers shared across recloop: random state, devices, timing, the Gini coefficient."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The one way recloop makes random state: a seed or an existing generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) global generators."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def timer():
    """``with timer() as t: ...; t()`` gives the seconds elapsed inside the block."""
    start = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0] if elapsed else time.perf_counter() - start
    elapsed.append(time.perf_counter() - start)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, -> 1 = one takes all):
    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)``, ``x_(i)`` sorted ascending."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))
