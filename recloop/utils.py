"""Small helpers shared across recloop: random state, devices, timing, provenance."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recloop import __version__


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


def git_commit() -> str | None:
    """The commit recloop runs from when it runs from a git checkout (with ``+dirty``
    when files differ from it); None when installed, without git, or on any failure."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy inside someone else's repository is not ours
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def provenance() -> dict:
    """Where a result comes from: recloop version, git commit (or None), UTC date, machine."""
    import torch

    return {
        "recloop": __version__,
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpus": os.cpu_count()},
    }
