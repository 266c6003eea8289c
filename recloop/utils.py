"""Small helpers shared across recloop: random state, devices, timing."""

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
