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
