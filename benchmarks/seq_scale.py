"""Sequence models at scale: memory of SASRec's and two-tower's training data, what an
epoch copies, and SASRec's training throughput with the sampled softmax.

    PYTHONPATH=. python benchmarks/seq_scale.py --data /tmp/ml100k-1e7 --steps 40 --json FILE

1. Loads the log (Parquet shards, e.g. from ``recloop data expand ml-100k --interactions 1e7``).
2. Builds each model's training data (``SequenceBatches`` for SASRec, ``TowerData`` for
   two-tower) under tracemalloc: bytes kept, peak while building, and the bytes an
   epoch allocates beyond the batches (the epoch's index order).
3. Trains ``--steps`` SASRec steps (hidden 64, 2 layers, max_len 50, sampled softmax with
   1,024 popularity negatives, batch 128 users, 1 torch thread) on the epoch's
   length-bucketed batches and reports trained positions/s and interactions/s, with the
   epoch's cost extrapolated from the per-position cost (an estimate, not a full epoch);
   ``--full-epoch`` then trains one whole epoch through ``fit`` and reports its time.

One SASRec epoch trains every user's latest ``max_len`` positions (the paper's window),
not every interaction: interactions/s per epoch is the log's size over the epoch's time.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from recloop.data import ColumnMapping, load_dataset
from recloop.models.sasrec import SASRec, SASRecConfig
from recloop.models.two_tower import TowerData
from recloop.train.config import TrainerConfig
from recloop.train.sampler import epoch_batches
from recloop.train.trainer import make_optimizer


def nbytes(data) -> int:
    return sum(v.nbytes for v in vars(data).values() if isinstance(v, np.ndarray))


def traced(build):
    tracemalloc.start()
    started = time.perf_counter()
    value = build()
    seconds = time.perf_counter() - started
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, {"build_s": round(seconds, 2), "kept_mb": round(kept / 2**20, 1),
                   "peak_mb": round(peak / 2**20, 1), "arrays_mb": round(nbytes(value) / 2**20, 1)}


def epoch_overhead(data, batch_size: int, lengths) -> dict:
    """Bytes one epoch's batch order allocates, and the mean CPU time to gather a batch."""
    tracemalloc.start()
    batches = epoch_batches(len(data), batch_size, epoch=1, seed=0, lengths=lengths)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.process_time()
    for index in batches[:50]:
        data.batch(index)
    gather = (time.process_time() - started) / min(50, len(batches))
    return {"epoch_order_mb": round(peak / 2**20, 1), "batches": len(batches), "gather_cpu_ms": round(1e3 * gather, 3),
            "epoch_gather_cpu_s": round(gather * len(batches), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/ml100k-1e7")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-epoch", action="store_true", help="also train one whole epoch through fit()")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train = load_dataset(args.data, columns=ColumnMapping(rating="rating", timestamp="timestamp")).interactions
    report = {"data": args.data, "interactions": len(train), "users": train.n_users,
              "items": train.n_items, "load_s": round(time.perf_counter() - started, 1), "threads": args.threads}

    config = SASRecConfig(hidden=64, layers=2, max_len=50, loss="sampled", n_negatives=1024,
                          negatives="popularity", train=TrainerConfig(batch_size=128, seed=0))
    model = SASRec(config)
    sequences, report["sasrec_data"] = traced(lambda: model.training_data(train))
    report["sasrec_data"].update(epoch_overhead(sequences, 128, sequences.lengths))
    towers, report["two_tower_data"] = traced(lambda: TowerData.from_log(train, 50, 0))
    report["two_tower_data"].update(epoch_overhead(towers, 512, None))
    del towers

    model.users_, model.items_, model.history_, model.item_features_ = train.users, train.items, train, None
    torch.manual_seed(0)
    model.prepare(train)
    model.network_ = model.build_network().train()
    optimizer = make_optimizer(model.network_, config.train)
    batches = epoch_batches(len(sequences), 128, epoch=1, seed=0, lengths=sequences.lengths)
    positions_per_batch = [int((sequences.batch(index)[1] != -100).sum()) for index in batches]
    for index in batches[:3]:  # warm-up
        optimizer.zero_grad()
        model.loss(sequences.batch(index)).backward()
        optimizer.step()
    timed = range(3, min(len(batches), 3 + args.steps))
    wall, cpu = time.perf_counter(), time.process_time()
    for step in timed:
        optimizer.zero_grad()
        model.loss(sequences.batch(batches[step])).backward()
        optimizer.step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    timed_positions = sum(positions_per_batch[step] for step in timed)
    epoch_positions = sum(positions_per_batch)
    per_position = cpu / timed_positions  # CPU seconds: what the process needs, whatever else runs here
    epoch_s = per_position * epoch_positions
    report["sasrec_train"] = {
        "steps_timed": len(timed), "steps_per_epoch": len(batches), "positions_timed": timed_positions,
        "positions_per_epoch": epoch_positions, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "positions_per_cpu_s": round(timed_positions / cpu), "epoch_cpu_s_estimate": round(epoch_s),
        "interactions_per_cpu_s_epoch": round(len(train) / epoch_s), "cpu_us_per_position": round(1e6 * per_position, 1)}
    if args.full_epoch:  # the real path: Trainer, bucketed batches gathered from SequenceBatches
        fitted = SASRec(replace(config, train=replace(config.train, epochs=1, patience=0, num_threads=args.threads,
                                                      progress=False))).fit(train)
        record = fitted.train_result_.history[0]
        report["sasrec_full_epoch"] = {
            "train_s": round(record.train_seconds, 1), "train_cpu_s": round(record.train_cpu_seconds, 1),
            "interactions_per_s": round(len(train) / record.train_seconds),
            "interactions_per_cpu_s": round(len(train) / record.train_cpu_seconds), "loss": round(record.loss, 4)}
    report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
