"""Training and evaluation with the data split by user, for tests/train/test_distributed_shard.py
(importable by spawned workers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recloop.config import DataConfig, ExperimentConfig, ModelSpec
from recloop.data.splits import SplitConfig
from recloop.evaluate import EvaluationConfig

# Models small enough for CI; both learn the planted log in a few epochs.
SASREC = {"hidden": 32, "layers": 1, "heads": 2, "max_len": 12,
          "train": {"epochs": 6, "batch_size": 32, "lr": 5e-3, "seed": 5, "progress": False, "num_threads": 1,
                    "patience": 0}}
TWO_TOWER = {"dim": 32, "hidden": [], "max_history": 10, "use_genres": False, "item_repr": "id",
             "user_features": False, "train": {"epochs": 4, "batch_size": 128, "lr": 5e-3, "seed": 5,
                                               "progress": False, "num_threads": 1, "patience": 0}}


def write_planted_log(path: Path) -> Path:
    """The planted log of tests/train/ddp_worker.py (topics, sequential habits, users of
    unequal length) as a Parquet file with text user ids."""
    from recloop.data.synthetic import SyntheticConfig, generate

    log = generate(SyntheticConfig(n_users=400, n_items=120, mean_interactions=12, sequential_strength=0.8,
                                   seed=1)).interactions
    table = pa.table({"user_id": [f"user-{u}" for u in log.users.ids[log.user_idx]],
                      "item_id": np.array([int(i[1:]) for i in log.items.ids])[log.item_idx],  # "i68" -> 68
                      "timestamp": log.timestamp})
    pq.write_table(table, path)
    return path


def experiment(path: Path, model: str, params: dict, shard: bool = True) -> ExperimentConfig:
    # 16 users an evaluation batch, so every rank ranks several batches of its own users.
    return ExperimentConfig(
        name="shard", refit=False,
        data=DataConfig(dataset=str(path), timestamp="timestamp", shard_by_user=shard),
        split=SplitConfig(method="leave-one-out"),
        evaluation=EvaluationConfig(k=(10,), batch_size=16, beyond=("coverage", "novelty")),
        models=(ModelSpec(model, params),))


def shard_worker(rank: int, world_size: int, init_file: str, data_path: str, out_dir: str) -> None:
    """Each rank loads its users' rows, trains SASRec then two-tower data-parallel (with
    validation every epoch) and evaluates the test split by user partition. Rank 0 also
    evaluates the same SASRec on the whole log in one piece."""
    from recloop.data.shard import UserShard
    from recloop.data.splits import split
    from recloop.evaluate import Evaluator
    from recloop.experiment import load_data, prepare_data, run_model
    from recloop.train import distributed as D

    torch.set_num_threads(1)
    D.setup(D.DistributedContext(rank, world_size, rank, "gloo"), init_method=f"file://{init_file}")
    out = Path(out_dir)
    try:
        for name, params in (("sasrec", SASREC), ("two-tower", TWO_TOWER)):
            config = experiment(Path(data_path), name, params)
            data = prepare_data(config)
            log = data.dataset.interactions
            held = {"rows": len(log), "train_rows": len(data.split.train),
                    "user_ids": sorted(set(log.users.ids[log.user_idx].tolist())),
                    "owners_ok": bool((UserShard(rank, world_size).owners(log.users)[log.user_idx] == rank).all()),
                    "n_users": log.n_users, "n_items": log.n_items, "items": log.items.to_list()[:20],
                    "shard_data": D.current().shard_data}
            run = run_model(config.model, data, config)
            result = run.test
            (out / f"{name}-held{rank}.json").write_text(json.dumps(held))
            np.savez(out / f"{name}-sharded{rank}.npz", users=result.users, recommendations=result.recommendations,
                     ndcg=result.per_user["ndcg@10"], novelty=result.per_user["novelty@10"],
                     coverage=result.aggregate["coverage@10"],
                     valid=np.array([r.metric for r in run.model.train_result_.history]),
                     log_q=getattr(run.model, "log_q_", np.zeros(0)))  # two-tower's item popularity
            if rank == 0 and name == "sasrec":
                whole = load_data(config.data, config.preprocess)  # no shard: the whole log
                parts = split(whole.interactions, config.split)
                single = Evaluator(config.evaluation).evaluate(run.model, parts.test, parts.history("test"),
                                                                train=parts.train)  # as run_model does
                np.savez(out / "sasrec-whole.npz", users=single.users, recommendations=single.recommendations,
                         ndcg=single.per_user["ndcg@10"], novelty=single.per_user["novelty@10"],
                         coverage=single.aggregate["coverage@10"])
    finally:
        D.teardown()
