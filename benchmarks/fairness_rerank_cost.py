"""Cost of exposure-aware re-ranking: one request (a batch of one, as the service runs
it) and batches of users (as offline evaluation runs it), on random candidates.

    PYTHONPATH=. python benchmarks/fairness_rerank_cost.py

12,000 items (popularity tiers from random counts), 100 candidates per user, k = 10,
20 history items per user. Prints milliseconds per user for calibration on popularity
(lambda 0.5) and a 30% tail quota.
"""

from __future__ import annotations

import os
import time

import numpy as np

from recloop.rank.fairness import FairnessConfig, FairRanker, popularity_tiers


def main() -> None:
    rng = np.random.default_rng(0)
    tiers = popularity_tiers(rng.integers(0, 100, 12_000))
    users, n = 4096, 100
    items = np.stack([rng.choice(12_000, n, replace=False) for _ in range(users)])
    scores = -np.sort(-rng.random((users, n)), axis=1).astype(np.float32)
    history = rng.choice(12_000, users * 20)
    indptr = np.arange(0, users * 20 + 1, 20)
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, config in (("calibration 0.5", FairnessConfig(calibration=0.5, calibration_feature="popularity")),
                         ("tail quota 0.3", FairnessConfig(min_share={"tail": 0.3}))):
        ranker = FairRanker(config, 10, tiers, tiers)
        start = time.perf_counter()
        ranker.rerank(items, scores, indptr, history)
        batch = (time.perf_counter() - start) / users * 1e3
        start = time.perf_counter()
        for u in range(500):
            ranker(items[u], scores[u], history[u * 20:(u + 1) * 20])
        single = (time.perf_counter() - start) / 500 * 1e3
        print(f"{name}: {single:.2f} ms per request (one user), {batch:.3f} ms per user in batches of {users}")


if __name__ == "__main__":
    main()
