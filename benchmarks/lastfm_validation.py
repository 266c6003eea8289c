"""Validation NDCG@10 of one model over a list of settings on Last.fm (never the test rows).

The split is that of ``configs/lastfm-baselines.toml``: per-user random 80/20 with seed 42,
then 10% of each user's artists carved out of the training part as validation
(``valid_ratio = 0.1``). Each setting is fitted on the remaining 70% (early stopping on
validation for neural models) and scored on validation, full ranking over all artists.
Used to choose the settings of ``configs/lastfm-*.toml`` (see docs/music-and-social.md)::

    python benchmarks/lastfm_validation.py als '[{"factors": 64, "alpha": 10, "regularization": 60}]'
    python benchmarks/lastfm_validation.py lightgcn '[{"train": {"epochs": 400, "batch_size": 65536, "lr": 0.02}}]'

An optional third argument is the share of cold users (``split.cold_users``); the data is
read from ``RECLOOP_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from recloop.data import SplitConfig, load_dataset, split
from recloop.evaluate.evaluator import EvaluationConfig, Evaluator, validation_metric
from recloop.models import get_model_class


def main(argv: list[str]) -> None:
    name, grid = argv[0], json.loads(argv[1])
    cold = float(argv[2]) if len(argv) > 2 else 0.0
    data = load_dataset("lastfm-2k", data_dir=os.environ.get("RECLOOP_DATA_DIR"), download=False)
    parts = split(data.interactions, SplitConfig(method="ratio", test_ratio=0.2, valid_ratio=0.1, seed=42,
                                                 cold_users=cold))
    evaluator = Evaluator(EvaluationConfig(k=(10,), metrics=("ndcg",), beyond=()))
    for params in grid:
        wall, cpu = time.perf_counter(), time.process_time()
        model = get_model_class(name)(**params)
        early = {}
        if model.uses_validation:
            early = {"valid": parts.valid, "validate": validation_metric(model, parts.train, parts.valid)}
        model.fit(parts.train, item_features=data.item_features, user_graph=data.user_graph, **early)
        result = evaluator.evaluate(model, parts.valid, parts.train)
        best = getattr(getattr(model, "train_result_", None), "best_epoch", None)
        print(name, json.dumps(params), f"valid ndcg@10={result['ndcg@10']:.4f}",
              f"wall={time.perf_counter() - wall:.0f}s cpu={time.process_time() - cpu:.0f}s",
              "" if best is None else f"best_epoch={best}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
