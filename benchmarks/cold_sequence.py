"""Cold items inside sequences (:mod:`recloop.cold_sequence`): a seeded fraction of the
items never appears in training; every model ranks all items for every user; NDCG@10 on
users whose test item is cold and on those whose test item is warm, apart.

    PYTHONPATH=. python benchmarks/cold_sequence.py configs/scientific-sasrec-text.toml \
        --fraction 0.15 --split-seed 0 --reprs id text fused --seeds 0 --json runs/cold.json

The config's one model is run once per item representation (``model.item_repr``) and
training seed; ``--set key=value`` overrides config fields as the CLI does. The split
(leave-one-out, then the cold items) depends on ``--split-seed`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from recloop.cold_sequence import load_cold_split, run_cold_sequence
from recloop.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--fraction", type=float, default=0.15)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--reprs", nargs="+", default=["id", "text", "fused"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = parser.parse_args()
    base = load_config(args.config, args.set)
    dataset, parts = load_cold_split(base, args.fraction, args.split_seed, args.data_dir)
    report = {"config": args.config, "overrides": args.set, "fraction": args.fraction, "split_seed": args.split_seed,
              "split": parts.describe(), "load_average_at_start": os.getloadavg(), "runs": []}
    print(f"split: {parts.describe()}", file=sys.stderr, flush=True)
    for item_repr in args.reprs:
        for seed in args.seeds:
            config = load_config(args.config, [*args.set, f"model.item_repr={item_repr}", f"model.train.seed={seed}",
                                               "model.train.progress=false"])
            start = time.perf_counter()
            result = run_cold_sequence(config, dataset, parts, label=item_repr)
            record = {"item_repr": item_repr, "seed": seed, **result.record(), "seconds": time.perf_counter() - start}
            report["runs"].append(record)
            print(f"{item_repr} seed {seed}: ndcg@10 all {record['all_ndcg@10']:.4f} cold {record['cold_ndcg@10']:.4f} "
                  f"warm {record['warm_ndcg@10']:.4f} (best epoch {record['best_epoch']}, {record['seconds']:.0f} s)",
                  file=sys.stderr, flush=True)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=1))
    report["median"] = {r: {k: statistics.median(x[k] for x in report["runs"] if x["item_repr"] == r)
                            for k in ("all_ndcg@10", "cold_ndcg@10", "warm_ndcg@10", "all_hr@10", "cold_hr@10",
                                      "warm_hr@10")}
                        for r in args.reprs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["median"], indent=1))


if __name__ == "__main__":
    main()
