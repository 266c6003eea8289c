"""SASRec with 1 and 2 data-parallel processes (gloo, CPU): training throughput of one
epoch over a fixed set of users, and sharded evaluation time.

    PYTHONPATH=. python benchmarks/ddp_scale.py --data /tmp/ml100k-1e6 --users 9430 \\
        --json docs/results/ddp-scale-1e6.json

For each layout of ``--layouts`` (default: 1 process x 1 thread, 1 process x 2 threads,
2 processes x 1 thread)
it spawns the processes, each loads the expanded dataset (every rank holds all of it),
keeps the first ``--users`` users, splits leave-one-out, trains SASRec (sampled softmax)
for one epoch of ``--users / --batch-size`` global steps, then evaluates the test items of
those users with the :class:`~recloop.evaluate.Evaluator` (sharded across the ranks when
there are 2). Reported: the epoch's wall and CPU seconds, training interactions/s (the
log's training interactions of those users over the epoch's wall seconds) and trained
positions/s (at most ``max_len`` per user), the evaluation seconds, the load average.
The machine is shared: read the load average next to every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

LAYOUTS = "1x1,1x2,2x1"  # processes x threads per process


def worker(rank: int, world_size: int, threads: int, init_file: str, args: dict, out: str) -> None:
    from recloop.data import ColumnMapping, leave_one_out, load_dataset
    from recloop.evaluate import EvaluationConfig, Evaluator
    from recloop.models import SASRec
    from recloop.train import distributed as D

    torch.set_num_threads(threads)
    context = D.setup(D.DistributedContext(rank, world_size, rank, "gloo"), init_method=f"file://{init_file}")
    try:
        started = time.perf_counter()
        log = load_dataset(args["data"], columns=ColumnMapping(rating="rating", timestamp="timestamp")).interactions
        load_s = time.perf_counter() - started
        log = log.select(log.user_idx < args["users"])
        parts = leave_one_out(log)
        model = SASRec(hidden=64, layers=2, heads=1, max_len=args["max_len"], loss="sampled", n_negatives=256,
                       train={"epochs": 1, "batch_size": args["batch_size"], "lr": 1e-3, "seed": 0,
                              "progress": False, "num_threads": threads, "patience": 0})
        model.fit(parts.train)
        epoch = model.train_result_.history[0]
        evaluation = EvaluationConfig(k=(10,), beyond=(), batch_size=args["eval_batch"],
                                      sample_users=args["eval_users"])
        result = Evaluator(evaluation, distributed=context).evaluate(model, parts.test, parts.history("test"))
        seconds = D.all_gather_objects({"epoch_s": epoch.train_seconds, "epoch_cpu_s": epoch.train_cpu_seconds,
                                        "eval_s": result.seconds, "load_s": load_s}, context)
        if rank == 0:
            positions = int(np.minimum(np.diff(parts.train.user_indptr), args["max_len"]).sum())
            epoch_s = max(s["epoch_s"] for s in seconds)
            record = {"processes": world_size, "threads": threads, "users": len(parts.train.active_users()),
                      "items": int(log.n_items), "train_interactions": len(parts.train), "trained_positions": positions,
                      "steps": model.train_result_.steps, "epoch_s": epoch_s,
                      "epoch_cpu_s": sum(s["epoch_cpu_s"] for s in seconds),
                      "interactions_per_s": len(parts.train) / epoch_s, "positions_per_s": positions / epoch_s,
                      "eval_s": max(s["eval_s"] for s in seconds), "eval_users": len(result.users),
                      "ndcg@10": result["ndcg@10"], "load_s": max(s["load_s"] for s in seconds)}
            Path(out).write_text(json.dumps(record))
    finally:
        D.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/ml100k-1e6", help="an expansion written by `recloop data expand`")
    parser.add_argument("--users", type=int, default=2560)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--eval-users", type=int, default=0, help="a seeded sample of test users; 0 = all")
    parser.add_argument("--layouts", default=LAYOUTS, help="processes x threads, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = {"data": args.data, "users": args.users, "batch_size": args.batch_size, "max_len": args.max_len,
                "eval_batch": args.eval_batch, "eval_users": args.eval_users}
    rows = []
    for layout in args.layouts.split(","):
        processes, threads = (int(x) for x in layout.split("x"))
        with tempfile.TemporaryDirectory() as folder:
            load_before = os.getloadavg()[0]
            mp.spawn(worker, args=(processes, threads, f"{folder}/init", settings, f"{folder}/out.json"),
                     nprocs=processes, join=True)
            row = json.loads(Path(f"{folder}/out.json").read_text())
        row["load_average"] = [load_before, os.getloadavg()[0]]
        rows.append(row)
        print(f"{processes} process(es) x {threads} thread(s): epoch {row['epoch_s']:.1f} s "
              f"({row['epoch_cpu_s']:.1f} CPU s), {row['interactions_per_s']:,.0f} interactions/s, "
              f"{row['positions_per_s']:,.0f} positions/s; evaluation {row['eval_s']:.2f} s; "
              f"load average {row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": settings, "cores": os.cpu_count(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
