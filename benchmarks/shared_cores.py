"""Shared cores: each torch path of recloop idle and beside CPU-bound neighbours, with
OpenMP's default wait policy ("before") and with recloop's setting ("after"), against
``implicit``'s ALS on the same matrix in the same processes.

    PYTHONPATH=. python benchmarks/shared_cores.py --json docs/results/shared-cores.json --doc

Paths, on ml-100k (all 100,000 interactions, 943 users, 1,682 items): recloop's ALS fit
(64 factors, 15 iterations), implicit's ALS fit (same), one SASRec epoch (hidden 32,
2 layers, max length 50, batches of 256, full softmax), and in-process scoring of 1,000
users (top-10 of every item, known items masked) with the fitted ALS and SASRec. Each
path is timed ``--repeats`` times and the median kept.

Every (setting, neighbours) cell runs in a fresh child process of this script, so that
OpenMP reads its environment at load exactly as a user's process would: "before" removes
``OMP_WAIT_POLICY`` from the child's environment and imports torch as is; "after" calls
``recloop.utils.configure_threads()`` before importing torch, as the ``recloop`` command
does first thing ("after-1thread", not in the default grid, also sets one torch thread). A neighbour is ``python -c 'while True: pass'``, started before the
child and killed after it. The slowdown of a path is its median beside the neighbours
divided by its idle median in the same setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["recloop ALS fit", "implicit ALS fit", "SASRec epoch", "score 1,000 users (ALS)",
         "score 1,000 users (SASRec)"]
SECTION = "shared-cores"
SETTINGS = ["before", "after", "after-1thread"]


def data_dir() -> str:
    return os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))


# --- the child: one setting, one neighbour count ----------------------------------------------------
def child(setting: str, repeats: int, paths: list[str]) -> dict:
    if setting.startswith("after"):
        from recloop.utils import configure_threads

        configure_threads(threads=1 if setting == "after-1thread" else None)  # before torch loads, as `recloop` does
    import numpy as np
    import torch

    from recloop.data import load_dataset
    from recloop.models import ALS, SASRec

    interactions = load_dataset("ml-100k", data_dir=data_dir(), download=False).interactions
    users = np.arange(1000) % interactions.n_users
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def timed(name, function):
        if name not in paths:
            return None
        result = None
        for _ in range(repeats):
            wall, process = time.perf_counter(), time.process_time()
            result = function()
            times.setdefault(name, []).append(time.perf_counter() - wall)
            cpu.setdefault(name, []).append(time.process_time() - process)
        return result

    als = timed("recloop ALS fit", lambda: ALS(factors=64, iterations=15, seed=0).fit(interactions))
    if "implicit ALS fit" in paths:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = interactions.to_csr().astype(np.float32)
        with threadpool_limits(1, "blas"):  # as implicit asks; its own OpenMP loop keeps every core
            timed("implicit ALS fit", lambda: AlternatingLeastSquares(factors=64, iterations=15, random_state=0)
                  .fit(matrix, show_progress=False))
    sasrec = timed("SASRec epoch", lambda: SASRec(
        hidden=32, layers=2, max_len=50,
        train={"epochs": 1, "batch_size": 256, "progress": False, "patience": 0, "seed": 0}).fit(interactions))
    if als is not None:
        timed("score 1,000 users (ALS)", lambda: als.recommend(users, k=10))
    if sasrec is not None:
        timed("score 1,000 users (SASRec)", lambda: sasrec.recommend(users, k=10))
    return {"setting": setting, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch_threads": torch.get_num_threads(), "runs": times, "cpu_seconds": cpu,
            "median": {name: statistics.median(runs) for name, runs in times.items()}}


# --- the parent: the grid of children ---------------------------------------------------------------
def run_cell(setting: str, neighbours: int, repeats: int, paths: list[str]) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
    try:
        time.sleep(0.5 if hogs else 0)
        load_before = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", setting, "--repeats", str(repeats),
                              "--paths", json.dumps(paths)], env=env, capture_output=True, text=True, check=False)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if out.returncode != 0:
        raise RuntimeError(f"child {setting}/{neighbours} failed:\n{out.stderr[-3000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record.update(neighbours=neighbours, load_average_1m=[load_before, os.getloadavg()[0]])
    print(f"{setting:6s} neighbours={neighbours}: " + ", ".join(f"{k} {v:.2f}s" for k, v in record["median"].items())
          + f" (load {load_before:.1f})", file=sys.stderr, flush=True)
    return record


def table(cells: list[dict], neighbours: int) -> str:
    by = {(c["setting"], c["neighbours"]): c["median"] for c in cells}
    implicit = {s: by[(s, neighbours)]["implicit ALS fit"] / by[(s, 0)]["implicit ALS fit"]
                for s in ("before", "after") if "implicit ALS fit" in by.get((s, 0), {})}
    lines = [("| path | before: idle s | before: neighbour s | before: slowdown | after: idle s | "
              "after: neighbour s | after: slowdown | after slowdown / implicit's (after) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in PATHS:
        if path not in by[("before", 0)]:
            continue
        row = [path]
        for setting in ("before", "after"):
            idle, busy = by[(setting, 0)][path], by[(setting, neighbours)][path]
            row += [f"{idle:.2f}", f"{busy:.2f}", f"{busy / idle:.2f}x"]
        ratio = (by[("after", neighbours)][path] / by[("after", 0)][path]) / implicit["after"] if implicit else None
        row.append(f"{ratio:.2f}" if ratio is not None else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def update_doc(markdown: str, path: Path = ROOT / "docs" / "scale.md") -> None:
    import re

    text = path.read_text()
    block = f"<!-- BEGIN {SECTION} -->\n{markdown.strip()}\n<!-- END {SECTION} -->"
    pattern = re.compile(rf"<!-- BEGIN {SECTION} -->.*?<!-- END {SECTION} -->", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=1, help="CPU-bound neighbour processes (default 1)")
    parser.add_argument("--paths", default=json.dumps(PATHS), help="JSON list of paths to time (default: all)")
    parser.add_argument("--settings", default="before,after",
                        help="comma-separated, of: before, after, after-1thread (after with torch.set_num_threads(1))")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", action="store_true", help="write the table into docs/scale.md")
    args = parser.parse_args()
    paths = json.loads(args.paths)
    if args.child:
        print(json.dumps(child(args.child, args.repeats, paths)))
        return
    start = time.perf_counter()
    cells = [run_cell(setting, n, args.repeats, paths)
             for setting in args.settings.split(",") for n in (0, args.neighbours)]
    loads = [value for cell in cells for value in cell["load_average_1m"]]
    report = {"cells": cells, "neighbours": args.neighbours, "repeats": args.repeats, "cores": os.cpu_count(),
              "load_average_1m_range": [min(loads), max(loads)], "seconds": time.perf_counter() - start}
    markdown = table(cells, args.neighbours) if len(cells) == 4 else ""
    print(markdown or json.dumps([c["median"] for c in cells], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.doc:
        threads = cells[0]["torch_threads"]
        update_doc(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, torch {threads} threads, "
                   f"{args.neighbours} neighbour(s), medians of {args.repeats}; the machine's 1-minute load "
                   f"average (other jobs included) was {min(loads):.1f}-{max(loads):.1f} during the run, so "
                   f"\"idle\" means no neighbour of ours. Total {report['seconds']:.0f} s.\n\n{markdown}")


if __name__ == "__main__":
    main()
