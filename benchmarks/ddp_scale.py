"""SASRec with 1 and 2 data-parallel processes (gloo, CPU): training throughput of one
epoch over a fixed set of users, and sharded evaluation time.

    PYTHONPATH=. python benchmarks/ddp_scale.py --data /tmp/ml100k-1e6 --users 9430 \\
        --json docs/results/ddp-scale-1e6.json

For each layout of ``--layouts`` (default: 1 process x 1 thread, 1 process x 2 threads,
2 processes x 1 thread; a trailing ``s``, as in ``2x1s``, splits the data by user: each
rank loads and keeps only its own users' rows, ``[data] shard_by_user``)
it spawns the processes, each loads the expanded dataset (all of it, or its users' rows),
keeps the first ``--users`` users, splits leave-one-out, trains SASRec (sampled softmax)
for one epoch of ``--users / --batch-size`` global steps, then evaluates the test items of
those users with the :class:`~recloop.evaluate.Evaluator` (sharded across the ranks when
there are 2). Reported: the epoch's wall and CPU seconds, training interactions/s (the
log's training interactions of those users over the epoch's wall seconds) and trained
positions/s (at most ``max_len`` per user), the evaluation seconds, the load average.
Also per rank: the rows it holds and their bytes (the log's columns), the load seconds, the
peak RSS before loading (torch imported), after loading and at the end (``ru_maxrss``).
``--load-only`` stops after loading (for sizes where training would not fit the machine). The machine is shared: read the load average next to
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

LAYOUTS = "1x1,1x2,2x1"  # processes x threads per process


def worker(rank: int, world_size: int, threads: int, shard: bool, init_file: str, args: dict, out: str) -> None:
    from recloop.data import ColumnMapping, leave_one_out, load_dataset
    from recloop.evaluate import EvaluationConfig, Evaluator
    from recloop.models import SASRec
    from recloop.train import distributed as D

    torch.set_num_threads(threads)
    context = D.setup(D.DistributedContext(rank, world_size, rank, "gloo"), init_method=f"file://{init_file}")
    try:
        if shard:
            context = D.shard_data()
        peak_before_load = peak_rss_gb()
        started = time.perf_counter()
        log = load_dataset(args["data"], columns=ColumnMapping(rating="rating", timestamp="timestamp"),
                           shard=D.user_shard(context) if shard else None).interactions
        load_s = time.perf_counter() - started
        held = {"rows": len(log), "log_mb": sum(a.nbytes for a in log.to_arrays().values()) / 2**20,
                "peak_rss_before_load_gb": peak_before_load, "peak_rss_after_load_gb": peak_rss_gb(), "load_s": load_s}
        if args["load_only"]:
            gathered = D.all_gather_objects(held, context)
            if rank == 0:
                Path(out).write_text(json.dumps({"processes": world_size, "shard_data": shard, "load_only": True,
                                                 "users": int(log.n_users), "items": int(log.n_items),
                                                 "per_rank": gathered}))
            return
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
        positions = int(np.minimum(np.diff(parts.train.user_indptr), args["max_len"]).sum())
        seconds = D.all_gather_objects({"epoch_s": epoch.train_seconds, "epoch_cpu_s": epoch.train_cpu_seconds,
                                        "eval_s": result.seconds, **held, "peak_rss_gb": peak_rss_gb(),
                                        "users": len(parts.train.active_users()), "train": len(parts.train),
                                        "positions": positions}, context)
        if rank == 0:
            if not shard:  # every rank holds everything: count it once
                seconds = [{**s, "users": s["users"] / world_size, "train": s["train"] / world_size,
                            "positions": s["positions"] / world_size} for s in seconds]
            train, positions = int(sum(s["train"] for s in seconds)), int(sum(s["positions"] for s in seconds))
            epoch_s = max(s["epoch_s"] for s in seconds)
            record = {"processes": world_size, "threads": threads, "shard_data": shard,
                      "users": int(sum(s["users"] for s in seconds)), "items": int(log.n_items),
                      "train_interactions": train, "trained_positions": positions,
                      "steps": model.train_result_.steps, "epoch_s": epoch_s,
                      "epoch_cpu_s": sum(s["epoch_cpu_s"] for s in seconds),
                      "interactions_per_s": train / epoch_s, "positions_per_s": positions / epoch_s,
                      "eval_s": max(s["eval_s"] for s in seconds), "eval_users": len(result.users),
                      "ndcg@10": result["ndcg@10"], "load_s": max(s["load_s"] for s in seconds),
                      "rows_per_rank": [s["rows"] for s in seconds],
                      "load_s_per_rank": [s["load_s"] for s in seconds],
                      "peak_rss_gb_per_rank": [s["peak_rss_gb"] for s in seconds], "per_rank": seconds}
            Path(out).write_text(json.dumps(record))
    finally:
        D.teardown()


def peak_rss_gb() -> float:
    """The peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/ml100k-1e6", help="an expansion written by `recloop data expand`")
    parser.add_argument("--users", type=int, default=2560)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--eval-users", type=int, default=0, help="a seeded sample of test users; 0 = all")
    parser.add_argument("--layouts", default=LAYOUTS, help="processes x threads, comma-separated")
    parser.add_argument("--load-only", action="store_true", help="only load (rows, bytes, RSS, seconds per rank)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = {"data": args.data, "users": args.users, "batch_size": args.batch_size, "max_len": args.max_len,
                "eval_batch": args.eval_batch, "eval_users": args.eval_users, "load_only": args.load_only}
    rows = []
    for layout in args.layouts.split(","):
        shard = layout.endswith("s")
        processes, threads = (int(x) for x in layout.rstrip("s").split("x"))
        with tempfile.TemporaryDirectory() as folder:
            load_before = os.getloadavg()[0]
            mp.spawn(worker, args=(processes, threads, shard, f"{folder}/init", settings, f"{folder}/out.json"),
                     nprocs=processes, join=True)
            row = json.loads(Path(f"{folder}/out.json").read_text())
        row["load_average"] = [load_before, os.getloadavg()[0]]
        rows.append(row)
        if args.load_only:
            print(f"{processes} process(es){' (data split by user)' if shard else ''}: " + "; ".join(
                f"rank {r}: {p['rows']:,} rows ({p['log_mb']:.0f} MB), load {p['load_s']:.1f} s, peak RSS "
                f"{p['peak_rss_before_load_gb']:.2f} -> {p['peak_rss_after_load_gb']:.2f} GB"
                for r, p in enumerate(row["per_rank"])), flush=True)
            continue
        print(f"{processes} process(es) x {threads} thread(s){' (data split by user)' if shard else ''}: "
              f"rows/rank {row['rows_per_rank']}, peak RSS/rank {[round(x, 2) for x in row['peak_rss_gb_per_rank']]} GB, "
              f"load {row['load_s']:.1f} s; epoch {row['epoch_s']:.1f} s "
              f"({row['epoch_cpu_s']:.1f} CPU s), {row['interactions_per_s']:,.0f} interactions/s, "
              f"{row['positions_per_s']:,.0f} positions/s; evaluation {row['eval_s']:.2f} s; "
              f"load average {row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": settings, "cores": os.cpu_count(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
