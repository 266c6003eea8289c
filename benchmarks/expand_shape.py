"""Fractal expansion of a real log: time, peak memory, and whether the shape is kept.

    python benchmarks/expand_shape.py ml-100k --interactions 1e7 --output /tmp/ml100k-1e7 --seed 0

expands the source with :func:`recloop.data.expand.expand`, then reads the shards back
one at a time (two int32 columns, never the whole log) to count interactions per item and
per user, and writes

- ``docs/expansion-shape.png``: item popularity and user activity of the source and the
  expansion on one figure, log-log, each curve as (rank / count of ids, count / mean);
  equal shapes give overlapping curves whatever the scale;
- ``docs/results/expansion-shape-<N>.json``: sizes, seconds, peak RSS and, for source and
  expansion, Gini and top-1%/top-20% shares of both distributions.

``expand_s`` is wall time and ``expand_cpu_s`` the process' CPU time for the expansion
alone (the second is the steadier figure on a shared machine; the 1-minute load average
is recorded beside them). Peak RSS is the process' high-water mark (``resource.getrusage``) right after the
expansion: it includes Python, NumPy, pandas and the source log (``peak_rss_before_expand_gb``, the
mark just before), not the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import data_dir
from recloop.data import load_dataset
from recloop.data.expand import ExpansionConfig, expand
from recloop.evaluate.metrics import gini


def shape(counts: np.ndarray) -> dict:
    """Summary of one count distribution over the ids that have at least one interaction."""
    counts = np.sort(counts[counts > 0])[::-1].astype(np.float64)
    total = counts.sum()
    return {"ids": len(counts), "mean": float(counts.mean()), "median": float(np.median(counts)),
            "max": int(counts.max()), "gini": gini(counts),
            "top_1pct_share": float(counts[: max(1, len(counts) // 100)].sum() / total),
            "top_20pct_share": float(counts[: max(1, len(counts) // 5)].sum() / total)}


def expansion_counts(output_dir: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """Interactions per item and per user, read shard by shard."""
    items = np.zeros(manifest["items"], dtype=np.int64)
    users = np.zeros(manifest["users"], dtype=np.int64)
    for shard in manifest["shards"]:
        table = pq.read_table(output_dir / shard["file"], columns=["user_id", "item_id"])
        users += np.bincount(table.column("user_id").to_numpy(), minlength=len(users))
        items += np.bincount(table.column("item_id").to_numpy(), minlength=len(items))
    return items, users


def plot(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, index, what in ((axes[0], 0, "item popularity (interactions per item)"),
                              (axes[1], 1, "user activity (interactions per user)")):
        for label, pair in curves.items():
            counts = np.sort(pair[index][pair[index] > 0])[::-1].astype(np.float64)
            rank = np.arange(1, len(counts) + 1) / len(counts)
            axis.loglog(rank, counts / counts.mean(), label=f"{label} ({len(counts):,} ids)",
                        lw=2 if label.startswith("source") else 1.2, ls="-" if label.startswith("source") else "--")
        axis.set_xlabel("rank / number of ids")
        axis.set_ylabel("count / mean count")
        axis.set_title(what, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="dataset name (ml-100k, ml-latest-small) or path, read with load_dataset")
    parser.add_argument("--interactions", type=float, required=True, help="target number of interactions, e.g. 1e7")
    parser.add_argument("--output", type=Path, required=True, help="new folder for the shards and manifest.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-density", type=float, default=ExpansionConfig.block_density)
    parser.add_argument("--shard-rows", type=int, default=ExpansionConfig.shard_rows)
    parser.add_argument("--data-dir", default=data_dir())
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "expansion-shape.png",
                        help="figure to write; 'none' to skip")
    parser.add_argument("--json", type=Path, default=None,
                        help="summary to write (default docs/results/expansion-shape-<N>.json)")
    args = parser.parse_args(argv)
    target = int(args.interactions)

    source = load_dataset(args.source, data_dir=args.data_dir)
    log = source.interactions
    config = ExpansionConfig(block_density=args.block_density, shard_rows=args.shard_rows)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    manifest = expand(log, target, args.output, args.seed, config=config, source_name=source.name)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_rss_gb = after.ru_maxrss / 2**20  # KiB on Linux

    items, users = expansion_counts(args.output, manifest)
    source_items = np.bincount(log.item_idx, minlength=log.n_items)
    source_users = log.user_counts()
    result = {
        "source": source.name, "seed": args.seed, "target_interactions": target,
        "interactions": manifest["interactions"], "relative_error": manifest["relative_error"],
        "users": manifest["users"], "items": manifest["items"],
        "active_users": manifest["active_users"], "active_items": manifest["active_items"],
        "pattern_shape": manifest["pattern_shape"], "shards": len(manifest["shards"]),
        "bytes_on_disk": sum((args.output / s["file"]).stat().st_size for s in manifest["shards"]),
        "expand_s": round(seconds, 2), "expand_cpu_s": round(cpu_seconds, 2),
        "load_average_1min": round(os.getloadavg()[0], 2), "peak_rss_gb": round(peak_rss_gb, 3),
        "peak_rss_before_expand_gb": round(before.ru_maxrss / 2**20, 3),
        "item_popularity": {"source": shape(source_items), "expansion": shape(items)},
        "user_activity": {"source": shape(source_users), "expansion": shape(users)},
    }
    json_path = args.json or ROOT / "docs" / "results" / f"expansion-shape-{target:.0e}.json".replace("+0", "")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    if str(args.plot) != "none":
        plot(args.plot, {f"source {source.name}": (source_items, source_users),
                         f"expansion, {manifest['interactions']:,} interactions": (items, users)},
             f"Fractal expansion of {source.name} (seed {args.seed}): shapes of source and expansion")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
