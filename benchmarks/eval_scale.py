"""Full-ranking evaluation on a 1e6-item catalog: time and peak memory of the
:class:`~recloop.evaluate.Evaluator` on a seeded sample of users.

    PYTHONPATH=$PWD python benchmarks/eval_scale.py [--items 1000000] [--users 100000]
        [--sample 10000] [--known 5] [--factors 64] [--budget-mb 256] [--json FILE]

The model is a random factor model (no training): item vectors ``N(0, 1/d)``, and each
user's vector a noisy copy of the vector of its one held-out item, so that hits happen
and the metrics are not all zero; scores are ``user_vectors @ item_vectors.T`` with
``torch.matmul`` in float32. Every user has ``--known`` distinct history items (masked)
and one target, drawn uniformly. The evaluator ranks all items for ``--sample`` users
drawn from the ``--users`` population with ``EvaluationConfig(sample_users=...,
max_batch_bytes=...)``, with every accuracy and beyond-accuracy metric at k = 5, 10, 20
(diversity from the item vectors).

Reported: evaluation wall and CPU seconds (all threads), users per batch, the peak resident memory during
the evaluation alone (the kernel's high-water mark is reset just before it, Linux
``/proc/self/clear_refs``) and of the whole process, the load average before and after
(the machine is shared), and, for one batch, how the time splits between scoring,
masking and top-k.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recloop.data import IdMap, Interactions
from recloop.evaluate import EvaluationConfig, Evaluator
from recloop.models.base import Recommender, mask_items, stable_topk


@dataclass(frozen=True)
class RandomFactorsConfig:
    factors: int = 64
    noise: float = 3.0
    seed: int = 0


class RandomFactors(Recommender):
    """Untrained factor model whose user vectors point (noisily) at given items."""

    name = "random-factors"
    config_class = RandomFactorsConfig

    def __init__(self, config=None, target_of_user: np.ndarray | None = None, **kw):
        super().__init__(config, **kw)
        self.target_of_user = target_of_user

    def _fit(self, train, valid):
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        d = cfg.factors
        self.item_factors_ = torch.randn(train.n_items, d, generator=gen) / d ** 0.5
        noise = torch.randn(train.n_users, d, generator=gen) * (cfg.noise / d ** 0.5)
        self.user_factors_ = self.item_factors_[torch.from_numpy(self.target_of_user)] + noise

    def _score(self, user_idx, history):
        return torch.matmul(self.user_factors_[torch.from_numpy(user_idx)], self.item_factors_.T)

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors_


def synthetic_log(n_users: int, n_items: int, known: int, seed: int):
    """``known`` distinct history items and one distinct target per user, uniform."""
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(n_items, size=known + 1, replace=False) for _ in range(n_users)]) \
        if n_items < 10 * (known + 1) else _distinct_rows(rng, n_users, n_items, known + 1)
    users = IdMap(range(n_users), "user")
    items = IdMap(range(n_items), "item")
    user_idx = np.repeat(np.arange(n_users), known)
    train = Interactions(user_idx, picks[:, :known].ravel(), users, items, _sorted=True)
    test = Interactions(np.arange(n_users), picks[:, known], users, items, _sorted=True)
    return train, test, picks[:, known]


def _distinct_rows(rng, n_rows: int, n_items: int, width: int) -> np.ndarray:
    """Rows of ``width`` distinct items: draw with replacement, redraw rows with a repeat."""
    out = rng.integers(0, n_items, size=(n_rows, width))
    while True:
        s = np.sort(out, axis=1)
        bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        if not len(bad):
            return out
        out[bad] = rng.integers(0, n_items, size=(len(bad), width))


def peak_rss_gb() -> float:
    """The process's resident high-water mark (VmHWM), GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def batch_breakdown(model, train, users: np.ndarray, k: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of score / mask / top-k on one batch of ``users``."""
    times: dict[str, list[float]] = {"score_s": [], "mask_s": [], "topk_s": []}
    for _ in range(repeats):
        seen = train.histories(users)
        t0 = time.perf_counter()
        scores = torch.from_numpy(model.score(users, seen))
        t1 = time.perf_counter()
        mask_items(scores, seen.indptr, seen.item_idx)
        t2 = time.perf_counter()
        stable_topk(scores, k)
        t3 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[name].append(seconds)
    return {name: float(np.median(values)) for name, values in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=float, default=1e6)
    parser.add_argument("--users", type=float, default=1e5, help="population: users with a target")
    parser.add_argument("--sample", type=int, default=10_000, help="users evaluated; 0 = all")
    parser.add_argument("--known", type=int, default=5, help="history items per user (masked)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--budget-mb", type=float, default=256, help="EvaluationConfig.max_batch_bytes in MiB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    n_items, n_users = int(args.items), int(args.users)

    load_before = os.getloadavg()
    start = time.perf_counter()
    train, test, targets = synthetic_log(n_users, n_items, args.known, args.seed)
    model = RandomFactors(RandomFactorsConfig(factors=args.factors, seed=args.seed), target_of_user=targets).fit(train)
    setup_s = time.perf_counter() - start
    config = EvaluationConfig(k=(5, 10, 20), sample_users=args.sample, seed=args.seed,
                              max_batch_bytes=int(args.budget_mb * 2**20))
    per_batch = config.users_per_batch(n_items)
    print(f"setup {setup_s:.1f}s: {n_users:,} users x {n_items:,} items, {len(train):,} known interactions; "
          f"{per_batch} users per batch ({per_batch * n_items * 4 / 2**20:.0f} MiB score block), "
          f"torch {torch.get_num_threads()} threads, load {load_before[0]:.2f}", flush=True)

    rss_before = rss_gb()
    hwm_reset = reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = Evaluator(config).evaluate(model, test, train, progress=sys.stderr.isatty())
    eval_s, eval_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    eval_peak = peak_rss_gb() if hwm_reset else float("nan")
    load_after = os.getloadavg()

    sample = np.random.default_rng(args.seed).choice(result.users, size=min(per_batch, len(result.users)),
                                                     replace=False)
    breakdown = batch_breakdown(model, train, np.sort(sample), max(config.k))
    summary = result.summary()
    record = {
        "items": n_items, "population_users": int(result.population), "eval_users": len(result.users),
        "known_per_user": args.known, "factors": args.factors, "budget_mib": args.budget_mb,
        "users_per_batch": per_batch, "batches": -(-len(result.users) // per_batch),
        "setup_s": setup_s, "eval_s": eval_s, "eval_cpu_s": eval_cpu_s, "users_per_s": len(result.users) / eval_s,
        "rss_before_eval_gb": rss_before, "peak_rss_during_eval_gb": eval_peak,
        "peak_rss_eval_minus_before_gb": eval_peak - rss_before, "peak_rss_process_gb": peak_rss_gb(),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "one_batch": breakdown,
        "users_note": result.users_note(),
        "metrics": {name: summary[name] for name in ("ndcg@10", "hr@10", "recall@20", "coverage@10", "gini@10",
                                                     "novelty@10", "diversity@10") if name in summary},
        "ci95": {name: [result.interval(name).low, result.interval(name).high] for name in ("ndcg@10", "hr@10")},
    }
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
