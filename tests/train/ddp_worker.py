"""A data-parallel training job for the distributed tests (importable by spawned workers)."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from recloop.data import Interactions, leave_one_out
from recloop.data.ids import IdMap
from recloop.evaluate import validation_metric
from recloop.models import SASRec


def equal_length_log(n_users: int = 64, length: int = 8, n_items: int = 30, seed: int = 0) -> Interactions:
    """Every user has the same number of items, so every shard's loss is a mean over the
    same number of positions and the mean of the shard means is the global mean."""
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, size=length, replace=False) for _ in range(n_users)])
    users = IdMap([f"u{u}" for u in range(n_users)], "user")
    vocabulary = IdMap([f"i{i}" for i in range(n_items)], "item")
    return Interactions(np.repeat(np.arange(n_users), length), items.reshape(-1), users, vocabulary,
                        timestamp=np.tile(np.arange(length), n_users))


def fit_model(epochs: int = 2) -> SASRec:
    parts = leave_one_out(equal_length_log())
    model = SASRec(hidden=16, layers=1, heads=2, max_len=8, dropout=0.0, attention_dropout=0.0,
                   train={"epochs": epochs, "batch_size": 16, "lr": 1e-2, "seed": 3, "progress": False,
                          "num_threads": 1, "patience": 0})
    return model.fit(parts.train, valid=parts.valid, validate=validation_metric(model, parts.train, parts.valid))


def run_worker(rank: int, world_size: int, init_file: str, out_dir: str, epochs: int) -> None:
    from recloop.train import distributed as D

    torch.set_num_threads(1)
    D.setup(D.DistributedContext(rank, world_size, rank, "gloo"), init_method=f"file://{init_file}")
    try:
        model = fit_model(epochs)
        weights = {k: v.detach().contiguous() for k, v in model.network_.state_dict().items()}
        save_file(weights, f"{out_dir}/rank{rank}.safetensors")
        metrics = [r.metric for r in model.train_result_.history]
        np.save(f"{out_dir}/metrics{rank}.npy", np.asarray(metrics, dtype=np.float64))
    finally:
        D.teardown()


# --- a model that learns, evaluated sharded (tests/train/test_distributed_eval.py) ------------------
def synthetic_split():
    """A small log with planted topics and sequential habits; users' lengths vary, so the
    ranks' shards hold unequal numbers of positions (the usual, inexact case)."""
    from recloop.data.synthetic import SyntheticConfig, generate

    log = generate(SyntheticConfig(n_users=400, n_items=120, mean_interactions=12, sequential_strength=0.8,
                                   seed=1)).interactions
    return leave_one_out(log)


def fit_learner(parts) -> SASRec:
    model = SASRec(hidden=32, layers=1, heads=2, max_len=12, train={
        "epochs": 6, "batch_size": 32, "lr": 5e-3, "seed": 5, "progress": False, "num_threads": 1, "patience": 0})
    return model.fit(parts.train)


def evaluation_config():
    from recloop.evaluate import EvaluationConfig

    # 16 users a batch: 25 batches, so each of 2 ranks ranks 12 or 13 of them.
    return EvaluationConfig(k=(10,), batch_size=16, beyond=("coverage", "novelty"))


def learn_and_evaluate_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """Train data-parallel, then evaluate the test split sharded across the ranks and, on
    rank 0, also in one piece with the same model."""
    from recloop.evaluate import Evaluator
    from recloop.train import distributed as D

    torch.set_num_threads(1)
    context = D.setup(D.DistributedContext(rank, world_size, rank, "gloo"), init_method=f"file://{init_file}")
    try:
        parts = synthetic_split()
        model = fit_learner(parts)
        history = parts.history("test")
        sharded = Evaluator(evaluation_config(), distributed=context).evaluate(model, parts.test, history)
        save_result(f"{out_dir}/sharded{rank}.npz", sharded)
        if rank == 0:
            whole = Evaluator(evaluation_config()).evaluate(model, parts.test, history)
            save_result(f"{out_dir}/whole.npz", whole)
    finally:
        D.teardown()


def save_result(path: str, result) -> None:
    np.savez(path, users=result.users, recommendations=result.recommendations,
             **{f"user:{k}": v for k, v in result.per_user.items()}, **{f"agg:{k}": v for k, v in result.aggregate.items()})
