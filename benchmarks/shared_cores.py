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

``/recommend`` p99 (``--serve``, on by default): a SASRec fitted as above (one epoch) is
saved and served by ``recloop serve`` (one worker, ``torch_threads`` 1, its defaults) in a
child process per setting: "after" is the command as shipped (``recloop.cli.main``, which
sets ``OMP_WAIT_POLICY=PASSIVE`` first); "before" imports torch before calling the same
``main``, so that OpenMP loads with its default policy. ``loadgen.py`` offers ``--rate``
requests/s (Poisson arrivals, random known users, k = 10) for ``--seconds``; runs alternate
idle and beside the neighbours, ``--repeats`` of each, and the p99 of each kind is the
median of its runs. The slowdown is p99 beside the neighbours over p99 idle.
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
SERVE_PATH = "/recommend p99 (SASRec)"
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
    from recloop.models import ALS

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
    sasrec = timed("SASRec epoch", lambda: sasrec_epoch(interactions))
    if als is not None:
        timed("score 1,000 users (ALS)", lambda: als.recommend(users, k=10))
    if sasrec is not None:
        timed("score 1,000 users (SASRec)", lambda: sasrec.recommend(users, k=10))
    return {"setting": setting, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch_threads": torch.get_num_threads(), "runs": times, "cpu_seconds": cpu,
            "median": {name: statistics.median(runs) for name, runs in times.items()}}


def sasrec_epoch(interactions):
    from recloop.models import SASRec

    return SASRec(hidden=32, layers=2, max_len=50,
                  train={"epochs": 1, "batch_size": 256, "progress": False, "patience": 0, "seed": 0}).fit(interactions)


def save_model(folder: str) -> None:
    """The served model: the SASRec epoch above, saved as an artifact."""
    from recloop.utils import configure_threads

    configure_threads()
    from recloop.data import load_dataset

    sasrec_epoch(load_dataset("ml-100k", data_dir=data_dir(), download=False).interactions).save(folder)


def serve_child(setting: str, argv: list[str]) -> int:
    """``recloop serve ARGV`` as the command runs it ("after"), or with torch loaded first,
    so that OpenMP keeps its default wait policy ("before")."""
    if setting == "before":
        import warnings

        import torch  # noqa: F401  OpenMP reads the (absent) OMP_WAIT_POLICY now

        warnings.simplefilter("ignore", RuntimeWarning)  # configure_threads: "torch was imported before ..."
    from recloop.cli import main as recloop_main

    return recloop_main(["serve", *argv])


# --- the parent: the grid of children ---------------------------------------------------------------
def child_env() -> dict:
    """This environment without any thread or wait-policy setting, recloop first on the path."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def neighbours_started(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def neighbours_stopped(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def run_cell(setting: str, neighbours: int, repeats: int, paths: list[str]) -> dict:
    env = child_env()
    hogs = neighbours_started(neighbours)
    try:
        time.sleep(0.5 if hogs else 0)
        load_before = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", setting, "--repeats", str(repeats),
                              "--paths", json.dumps(paths)], env=env, capture_output=True, text=True, check=False)
    finally:
        neighbours_stopped(hogs)
    if out.returncode != 0:
        raise RuntimeError(f"child {setting}/{neighbours} failed:\n{out.stderr[-3000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record.update(neighbours=neighbours, load_average_1m=[load_before, os.getloadavg()[0]])
    print(f"{setting:6s} neighbours={neighbours}: " + ", ".join(f"{k} {v:.2f}s" for k, v in record["median"].items())
          + f" (load {load_before:.1f})", file=sys.stderr, flush=True)
    return record


def serve_cells(settings: list[str], neighbours: int, repeats: int, rate: float, seconds: float,
                warmup: float) -> list[dict]:
    """``/recommend`` latency of ``recloop serve`` per setting, idle and beside the
    neighbours, runs alternating; p99 per kind is the median of its runs."""
    import tempfile

    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loadgen import run as offer
    from loadgen import run_sync
    from serve_load import free_port, group_cpu_seconds, stop, users_of

    folder = Path(tempfile.mkdtemp(prefix="recloop-shared-cores-"))
    artifact = folder / "sasrec"
    subprocess.run([sys.executable, __file__, "--save-model", str(artifact)], env=child_env(), check=True)
    users = users_of(artifact)
    bodies_list = [json.dumps({"user_id": u, "k": 10}).encode()
                   for u in np.random.default_rng(0).choice(users, size=20_000)]
    def bodies(i):
        return bodies_list[i % len(bodies_list)]
    records = []
    for setting in settings:
        port = free_port()
        argv = [str(artifact), "--port", str(port), "--db", str(folder / f"events-{setting}.db"), "--workers", "1",
                "--log-level", "warning"]
        with open(folder / f"server-{setting}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, __file__, "--serve-child", setting, "--", *argv],
                                       env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_healthy(process, port)
            url = f"http://127.0.0.1:{port}/recommend"
            run_sync(offer(url, bodies, rate, warmup))
            runs = []
            for repeat in range(repeats):
                for count in (0, neighbours):
                    hogs = neighbours_started(count)
                    try:
                        time.sleep(0.5 if hogs else 0)
                        load, cpu = os.getloadavg()[0], group_cpu_seconds(process.pid)
                        result = run_sync(offer(url, bodies, rate, seconds, seed=repeat))
                        cpu = group_cpu_seconds(process.pid) - cpu
                    finally:
                        neighbours_stopped(hogs)
                    run = dict(result.summary(), neighbours=count, load_average_1m=load,
                               server_cpu_ms_per_request=round(1000 * cpu / max(1, result.completed), 3))
                    runs.append(run)
                    print(f"serve {setting:6s} neighbours={count}: p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} "
                          f"ms, {run['achieved_rps']:.0f} req/s, {run['non_2xx'] + run['errors']} failed "
                          f"(load {load:.1f})", file=sys.stderr, flush=True)
        finally:
            stop(process)
        median = {str(count): {key: statistics.median(r[key] for r in runs if r["neighbours"] == count)
                               for key in ("p50_ms", "p99_ms", "server_cpu_ms_per_request")}
                  for count in (0, neighbours)}
        records.append({"setting": setting, "rate": rate, "seconds": seconds, "runs": runs, "median": median})
    return records


def wait_healthy(process: subprocess.Popen, port: int, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("server did not come up")


def table(cells: list[dict], neighbours: int, serving: list[dict] | None = None) -> str:
    by = {(c["setting"], c["neighbours"]): dict(c["median"]) for c in cells}
    implicit = {s: by[(s, neighbours)]["implicit ALS fit"] / by[(s, 0)]["implicit ALS fit"]
                for s in ("before", "after") if "implicit ALS fit" in by.get((s, 0), {})}
    for record in serving or []:
        by[(record["setting"], 0)][SERVE_PATH] = record["median"]["0"]["p99_ms"]
        by[(record["setting"], neighbours)][SERVE_PATH] = record["median"][str(neighbours)]["p99_ms"]
    lines = [("| path | before: idle | before: neighbour | before: slowdown | after: idle | "
              "after: neighbour | after: slowdown | slowdown / implicit's, before | slowdown / implicit's, after |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in [*PATHS, SERVE_PATH]:
        if path not in by[("before", 0)]:
            continue
        row = [path + (" ms" if path == SERVE_PATH else " s")]
        ratios = []
        for setting in ("before", "after"):
            idle, busy = by[(setting, 0)][path], by[(setting, neighbours)][path]
            row += [f"{idle:.2f}", f"{busy:.2f}", f"{busy / idle:.2f}x"]
            ratios.append(f"{busy / idle / implicit[setting]:.2f}" if setting in implicit else "-")
        lines.append("| " + " | ".join(row + ratios) + " |")
    return "\n".join(lines)


def cpu_table(cells: list[dict], neighbours: int, serving: list[dict] | None = None) -> str:
    """Medians of CPU seconds (all threads), idle / beside the neighbours; for
    ``/recommend``, the server's CPU ms per request."""
    by = {(c["setting"], c["neighbours"]): c["cpu_seconds"] for c in cells}
    lines = ["| path | CPU before: idle / neighbour | CPU after: idle / neighbour |", "|---|---:|---:|"]
    for path in PATHS:
        if path in by[("before", 0)]:
            cells_ = [f"{statistics.median(by[(s, 0)][path]):.2f} / {statistics.median(by[(s, neighbours)][path]):.2f}"
                      for s in ("before", "after")]
            lines.append(f"| {path} s | " + " | ".join(cells_) + " |")
    serve = {record["setting"]: record["median"] for record in serving or []}
    if "before" in serve and "after" in serve:
        cells_ = [f"{serve[s]['0']['server_cpu_ms_per_request']:.2f} / "
                  f"{serve[s][str(neighbours)]['server_cpu_ms_per_request']:.2f}" for s in ("before", "after")]
        lines.append("| /recommend, server CPU ms per request | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def doc_block(report: dict) -> str:
    cells, serving, neighbours = report["cells"], report.get("serving", []), report["neighbours"]
    low, high = report["load_average_1m_range"]
    serve = (f"; `/recommend`: SASRec, 1 worker, {serving[0]['rate']:g} requests/s for {serving[0]['seconds']:g} s "
             "per run" if serving else "")
    return (f"Measured {report['date']} on {report['cores']} cores, torch {cells[0]['torch_threads']} threads, "
            f"{neighbours} neighbour(s), medians of {report['repeats']}{serve}; the machine's 1-minute load average "
            f"(other jobs included) was {low:.1f}-{high:.1f} during the run, so \"idle\" means no neighbour of ours. "
            f"Total {report['seconds']:.0f} s.\n\n{table(cells, neighbours, serving)}\n\nCPU time (medians):\n\n"
            f"{cpu_table(cells, neighbours, serving)}")


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
    parser.add_argument("--save-model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", choices=SETTINGS[:2], help=argparse.SUPPRESS)
    parser.add_argument("serve_argv", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure /recommend p99 of `recloop serve` (default: yes)")
    parser.add_argument("--rate", type=float, default=50.0, help="/recommend requests per second offered")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one /recommend run")
    parser.add_argument("--warmup", type=float, default=5.0, help="/recommend warm-up seconds per server")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=1, help="CPU-bound neighbour processes (default 1)")
    parser.add_argument("--paths", default=json.dumps(PATHS), help="JSON list of paths to time (default: all)")
    parser.add_argument("--settings", default="before,after",
                        help="comma-separated, of: before, after, after-1thread (after with torch.set_num_threads(1))")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", action="store_true", help="write the table into docs/scale.md")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="write the tables of a saved --json report into docs/scale.md, measuring nothing")
    args = parser.parse_args()
    paths = json.loads(args.paths)
    if args.from_json:
        update_doc(doc_block(json.loads(args.from_json.read_text())))
        return
    if args.save_model:
        save_model(args.save_model)
        return
    if args.serve_child:
        sys.exit(serve_child(args.serve_child, args.serve_argv))
    if args.child:
        print(json.dumps(child(args.child, args.repeats, paths)))
        return
    start = time.perf_counter()
    settings = args.settings.split(",")
    cells = [run_cell(setting, n, args.repeats, paths) for setting in settings for n in (0, args.neighbours)]
    serving = (serve_cells([s for s in settings if s in ("before", "after")], args.neighbours, args.repeats,
                           args.rate, args.seconds, args.warmup) if args.serve else [])
    loads = [value for cell in cells for value in cell["load_average_1m"]]
    loads += [run["load_average_1m"] for record in serving for run in record["runs"]]
    report = {"cells": cells, "serving": serving, "neighbours": args.neighbours, "repeats": args.repeats,
              "cores": os.cpu_count(), "load_average_1m_range": [min(loads), max(loads)],
              "seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    markdown = table(cells, args.neighbours, serving) if len(cells) == 4 else ""
    print(markdown or json.dumps([c["median"] for c in cells], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.doc and markdown:
        update_doc(doc_block(report))


if __name__ == "__main__":
    main()
