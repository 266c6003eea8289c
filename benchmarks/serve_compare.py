"""``/recommend`` latency of two checkouts of recloop, one sitting, as a ratio.

    python benchmarks/serve_compare.py OLD_ROOT NEW_ROOT ARTIFACT [--rate 200] [--seconds 15] [--repeats 3]

Serves the same artifact from each checkout in turn (``python -m recloop serve`` with
that checkout on ``PYTHONPATH``, one worker, a fresh SQLite store), offers the same
open-loop Poisson load of random known users (``loadgen.py``), and alternates the order
of the two in each repeat so that drift on a shared machine hits both alike. Prints
per-run p50/p99 and the medians' ratio new/old, and writes the JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run as offer
from loadgen import run_sync
from serve_load import free_port, start, stop


def measure(root: Path, artifact: Path, users: list[str], rate: float, seconds: float, k: int,
            folder: Path) -> dict:
    port = free_port()
    db = Path(tempfile.mkdtemp(dir=folder)) / "events.db"
    server = start(artifact, db, port, 1, folder / "server.log", root=root)
    try:
        rng = np.random.default_rng(0)
        encoded = [json.dumps({"user_id": str(u), "k": k}).encode() for u in rng.choice(users, size=2000)]

        def bodies(i: int) -> bytes:
            return encoded[i % len(encoded)]

        url = f"http://127.0.0.1:{port}/recommend"
        run_sync(offer(url, bodies, rate=rate, seconds=3))  # warm-up
        result = run_sync(offer(url, bodies, rate=rate, seconds=seconds))
        return result.summary()
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    users = json.loads((args.artifact / "users.json").read_text())
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = ("old", "new") if repeat % 2 == 0 else ("new", "old")
            for name in order:
                root = getattr(args, name).resolve()
                summary = measure(root, args.artifact.resolve(), users, args.rate, args.seconds, args.k, Path(tmp))
                runs[name].append(summary)
                print(f"repeat {repeat} {name}: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, "
                      f"{summary['achieved_rps']:.0f} req/s, non-2xx {summary['non_2xx']}", flush=True)
    out: dict = {"rate": args.rate, "seconds": args.seconds, "repeats": args.repeats, "runs": runs}
    for q in ("p50_ms", "p99_ms"):
        old, new = (statistics.median(r[q] for r in runs[name]) for name in ("old", "new"))
        out[q] = {"old": old, "new": new, "ratio_new_over_old": new / old}
        print(f"median {q}: old {old:.2f}, new {new:.2f}, new/old {new / old:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
