"""Small helpers shared across recloop: random state, devices, timing, the Gini coefficient,
the process's CPU threads, provenance."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recloop import __version__
from recloop.errors import ConfigError


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


def kl_divergence(p: np.ndarray, q: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """``KL(p || q~) = sum_c p(c) log(p(c) / q~(c))`` with ``q~ = (1 - alpha) q + alpha p``
    (Steck's smoothing, so that ``q~ > 0`` wherever ``p > 0``), over the last axis; 0 where
    ``p(c) = 0``; broadcasts. Shared by calibrated re-ranking and the calibration metric."""
    p = np.asarray(p, dtype=np.float64)
    smoothed = (1.0 - alpha) * np.asarray(q, dtype=np.float64) + alpha * p
    shape = np.broadcast_shapes(p.shape, smoothed.shape)
    ratio = np.divide(np.broadcast_to(p, shape), smoothed, out=np.ones(shape),
                      where=(np.broadcast_to(p, shape) > 0) & (smoothed > 0))
    return (p * np.log(ratio)).sum(axis=-1)


WAIT_POLICY = "PASSIVE"


@dataclass(frozen=True)
class ThreadSetup:
    """What :func:`configure_threads` left in place: ``wait_policy`` is the
    ``OMP_WAIT_POLICY`` of the environment (``None``: OpenMP's default, spin then sleep);
    ``in_effect`` is False when torch was imported before the policy was set, so this
    process's OpenMP runtime still runs on the policy it read at load (child processes
    started afterwards inherit the new one); ``threads`` is torch's intra-op thread count
    when it was set, else ``None``."""

    wait_policy: str | None
    in_effect: bool
    threads: int | None


def configure_threads(threads: int | None = None, wait_policy: str | None = WAIT_POLICY,
                      environ: MutableMapping[str, str] | None = None) -> ThreadSetup:
    """Make torch's CPU thread pool yield its cores instead of spinning for them.

    PyTorch's intra-op pool (OpenMP: GNU libgomp in the Linux wheels, shared with MKL and
    ``implicit``) by default spins about 300,000 iterations (milliseconds) at every join
    before it sleeps. On cores that another process also uses, a spinning thread holds a
    core that the thread it waits for needs: ALS on ml-100k took 20 s instead of 0.4 s
    beside one CPU-bound process on 2 cores. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads
    sleep at once, at a small cost when the cores are idle (see ``docs/scale.md``).

    OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it: call this before the
    first ``import torch`` of the process (``recloop``'s command line does, first thing).
    An explicit ``OMP_WAIT_POLICY`` already in ``environ`` (default ``os.environ``) wins.
    Called after torch is imported, it still sets the variable for child processes and
    warns that this process keeps its policy. ``wait_policy=None`` leaves the environment
    alone. ``threads`` (optional) is passed to ``torch.set_num_threads``, which works at
    any time; ``None`` keeps torch's default (the cores available to the process).
    The library never calls it on its own: entry points (the CLI) and scripts do.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"configure_threads(threads={threads}): threads must be at least 1 (or None)")
    environ = os.environ if environ is None else environ
    torch_loaded = "torch" in sys.modules
    in_effect = True
    if wait_policy is not None and "OMP_WAIT_POLICY" not in environ:
        environ["OMP_WAIT_POLICY"] = wait_policy
        if torch_loaded:
            in_effect = False
            warnings.warn(f"configure_threads(): torch was imported before OMP_WAIT_POLICY={wait_policy} was set, "
                          "so this process keeps OpenMP's default wait policy (only child processes get the new "
                          "one); call it before the first `import torch`, or set OMP_WAIT_POLICY in the shell",
                          RuntimeWarning, stacklevel=2)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return ThreadSetup(environ.get("OMP_WAIT_POLICY"), in_effect, threads)
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
