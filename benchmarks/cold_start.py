"""Cold-start benchmark: cold items and new users (given N), medians over split seeds.

    PYTHONPATH=. RECLOOP_DATA_DIR=/work/shared/datasets HF_HUB_OFFLINE=1 \
        python benchmarks/cold_start.py configs/ml-latest-small-cold-start.toml --json runs/cold-start.json

Prints one markdown table per protocol (the median over seeds, then each seed's value) and
writes every record as JSON. ``--set key=value`` overrides config fields (``--set seeds=[42]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from recloop.cold_start import load_cold_start_config, median_table, run_cold_start

METRICS = ("ndcg@10", "recall@20", "hr@10")


def markdown(rows: list[dict], metrics=METRICS) -> str:
    lines = ["| model | " + " | ".join(metrics) + " | per seed " + metrics[0] + " | fit s |",
             "| --- | " + " | ".join("---:" for _ in metrics) + " | --- | ---: |"]
    for row in rows:
        seeds = ", ".join(f"{v:.4f}" for v in row[f"{metrics[0]}_seeds"])
        lines.append(f"| {row['model']} | " + " | ".join(f"{row[m]:.4f}" for m in metrics)
                     + f" | {seeds} | {row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR"))
    args = parser.parse_args()
    config = load_cold_start_config(args.config, args.set)
    start = time.perf_counter()
    records = run_cold_start(config, data_dir=args.data_dir, download=False,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"## {config.name}: seeds {list(config.seeds)} ({time.perf_counter() - start:.0f}s)\n")
    if config.cold_items.models:
        rows = median_table(records, METRICS, "cold-items")
        print(f"### Cold items: rank all cold items ({rows[0]['n_users']} users, "
              f"median of {len(config.seeds)} seeds)\n")
        print(markdown(rows) + "\n")
    for n in config.new_users.given if config.new_users.models else ():
        rows = median_table(records, METRICS, "new-users", given=n)
        print(f"### New users given {n} ({rows[0]['n_users']} users, median of {len(config.seeds)} seeds)\n")
        print(markdown(rows) + "\n")
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps({"config": args.config, "overrides": args.set,
                                                    "records": [r.to_dict() for r in records]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
