"""``/recommend`` end to end on a model with 1e6 items: latency at a fixed offered load and
the faiss index's recall@10 in the served answers.

    PYTHONPATH=$PWD python benchmarks/serve_1m.py configs/serve-1m.toml [--json FILE] [--skip-recall]

1. Data: the config's fractal expansion (``recloop data expand``), made once and kept.
2. Model: ALS fitted on it and saved as an artifact (kept; a few iterations, since the
   latency depends on the model's shape, not its quality).
3. Index: the HNSW index the server will use is built here once into
   ``retrieval.cache_dir``, so that the server (and a restart) loads it in seconds.
4. Recall: ``recloop serve`` with the config's retrieval settings and a second one with
   ``retrieval.index=exact`` answer the same sampled users (one request at a time);
   recall@k is the overlap of the two answers, i.e. of what users are shown.
5. Load: ``repeats`` runs of ``seconds`` at ``rate`` requests/s open loop
   (``loadgen.py``, Poisson arrivals, random known users) against the HNSW server;
   p50/p95/p99 per run and their medians, the server's CPU ms per request, and the
   machine's load average around each run (it is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recloop.utils import configure_threads  # before torch loads

configure_threads()

import numpy as np
from loadgen import run as offer
from loadgen import run_sync
from serve_load import env, free_port, group_cpu_seconds, start, stop


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_data(c: dict) -> Path:
    folder = ROOT / c["folder"]
    if not (folder / "manifest.json").is_file():
        log(f"expanding {c['source']} to {c['interactions']:.0e} interactions into {folder} ...")
        subprocess.run([sys.executable, "-m", "recloop", "data", "expand", c["source"], "--interactions",
                        str(c["interactions"]), "--output", str(folder), "--block-density", str(c["block_density"]),
                        "--seed", str(c["seed"])], check=True, env=env(), cwd=ROOT)
    return folder


def ensure_artifact(data: Path, c: dict) -> tuple[Path, dict]:
    """The saved ALS model, fitted when missing; returns it and how it was made."""
    artifact = ROOT / c["artifact"]
    info = artifact / "extra.json"
    if not (artifact / "model.json").is_file():
        from recloop.data import load_dataset
        from recloop.models import ALS

        start_time = time.perf_counter()
        interactions = load_dataset(data).interactions
        load_s = time.perf_counter() - start_time
        log(f"loaded {interactions!r} in {load_s:.1f} s; fitting ALS ...")
        model = ALS(factors=c["factors"], iterations=c["iterations"], regularization=c["regularization"],
                    alpha=c["alpha"])
        start_time, cpu = time.perf_counter(), time.process_time()
        model.fit(interactions)
        made = {"load_s": round(load_s, 1), "fit_s": round(time.perf_counter() - start_time, 1),
                "fit_cpu_s": round(time.process_time() - cpu, 1), "load_average": os.getloadavg()}
        model.save(artifact, extra=made)
        log(f"ALS fitted and saved to {artifact}: {made}")
    return artifact, json.loads(info.read_text()) if info.is_file() else {}


def retrieval_overrides(retrieval: dict) -> list[str]:
    out = []
    for key, value in retrieval.items():
        if key == "cache_dir":
            value = str(ROOT / value)
        out += ["--set", f"retrieval.{key}={json.dumps(value)}"]
    return out


def ensure_index(artifact: Path, retrieval: dict) -> dict:
    """Build the server's faiss index into the cache (the server then loads it)."""
    from recloop.artifact import load_model
    from recloop.rank.index import RetrievalConfig, build_index, index_key

    model = load_model(artifact)
    config = RetrievalConfig(**{**retrieval, "cache_dir": str(ROOT / retrieval["cache_dir"])})
    vectors = np.ascontiguousarray(model.item_vectors(), dtype=np.float32)
    folder = Path(config.cache_dir) / index_key(vectors, config, config.resolved_kind(len(vectors)))
    built = folder / "build.json"
    if not built.is_file():
        log(f"building the {config.resolved_kind(len(vectors))} index of {vectors.shape} into {folder} ...")
        start_time = time.perf_counter()
        build_index(vectors, config)
        built.write_text(json.dumps({"build_s": round(time.perf_counter() - start_time, 1),
                                     "load_average": os.getloadavg()}))
    out = json.loads(built.read_text())
    log(f"index {folder.name}: {out}")
    return {"users": model.n_users, "items": model.n_items, "factors": vectors.shape[1],
            "interactions": len(model.history_), "index_build": out}


def recommend(port: int, user_id: str, k: int) -> list[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/recommend",
                                     data=json.dumps({"user_id": user_id, "k": k}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return [item["item_id"] for item in json.loads(answer.read())["items"]]


def served(artifact: Path, extra: list[str], workers: int, folder: Path, name: str):
    port = free_port()
    started = time.perf_counter()
    process = start(artifact, folder / f"{name}.db", port, workers, folder / f"{name}.log", extra)
    log(f"{name} server up on port {port} in {time.perf_counter() - started:.1f} s")
    return process, port, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--json", default="runs/serve-1m/results.json")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="load runs (default: the config's)")
    parser.add_argument("--server-nice", type=int, default=0,
                        help="diagnostic: the server's nice value (negative: ahead of other jobs on a shared "
                             "machine, to tell the service's own latency from waiting for a core)")
    args = parser.parse_args()
    config = tomllib.loads(Path(args.config).read_text())
    if args.repeats is not None:
        config["load"]["repeats"] = args.repeats
    data = ensure_data(config["data"])
    artifact, made = ensure_artifact(data, config["als"])
    results: dict = {"config": config, "model": made, **ensure_index(artifact, config["retrieval"]),
                     "cpus": os.cpu_count()}
    users = json.loads((artifact / "users.json").read_text())
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="recloop-serve-1m-"))
    workers, load, recall = config["serve"]["workers"], config["load"], config["recall"]
    hnsw = retrieval_overrides(config["retrieval"])
    sample = [str(u) for u in rng.choice(users, size=recall["users"], replace=False)]

    process, port, results["startup_s"] = served(artifact, hnsw, workers, folder, "hnsw")
    results["server_nice"] = args.server_nice
    try:
        if args.server_nice:
            os.setpriority(os.PRIO_PGRP, process.pid, args.server_nice)  # the server and its workers
        approx = {u: recommend(port, u, recall["k"]) for u in sample} if not args.skip_recall else {}
        bodies = [json.dumps({"user_id": str(u), "k": load["k"]}).encode()
                  for u in rng.choice(users, size=load["users"], replace=True)]
        url = f"http://127.0.0.1:{port}/recommend"
        run_sync(offer(url, lambda i: bodies[i % len(bodies)], load["rate"], load["warmup_seconds"]))
        runs = []
        for repeat in range(load["repeats"]):
            before, cpu = os.getloadavg(), group_cpu_seconds(process.pid)
            result = run_sync(offer(url, lambda i: bodies[i % len(bodies)], load["rate"], load["seconds"],
                                    seed=repeat + 1))
            summary = result.summary()
            summary["server_cpu_ms_per_request"] = round(
                1000 * (group_cpu_seconds(process.pid) - cpu) / max(1, result.completed), 3)
            summary["load_average_before"], summary["load_average_after"] = before, os.getloadavg()
            runs.append(summary)
            log(f"run {repeat}: {summary}")
    finally:
        stop(process)
    results["runs"] = runs
    results["median"] = {key: statistics.median(r[key] for r in runs)
                         for key in ("achieved_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                                     "server_cpu_ms_per_request")}
    results["non_2xx"] = sum(r["non_2xx"] for r in runs) + sum(r["errors"] for r in runs)
    log(f"median of {len(runs)} runs: {results['median']}")

    if not args.skip_recall:
        exact = [arg.replace(f"retrieval.index={json.dumps(config['retrieval']['index'])}", 'retrieval.index="exact"')
                 for arg in hnsw]
        process, port, _ = served(artifact, exact, 1, folder, "exact")
        try:
            truth = {u: recommend(port, u, recall["k"]) for u in sample}
        finally:
            stop(process)
        overlaps = [len(set(approx[u]) & set(truth[u])) / max(1, len(truth[u])) for u in sample]
        results["recall"] = {"users": len(sample), "k": recall["k"], "recall": float(np.mean(overlaps)),
                             "users_with_all_k": int(sum(o == 1.0 for o in overlaps))}
        log(f"recall@{recall['k']} of the served answers against exact search: {results['recall']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(markdown(results))


def markdown(results: dict) -> str:
    load, m = results["config"]["load"], results["median"]
    rows = "\n".join(f"| {i + 1} | {r['achieved_rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['server_cpu_ms_per_request']:.2f} | "
                     f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f} |"
                     for i, r in enumerate(results["runs"]))
    recall = results.get("recall")
    return "\n".join([
        (f"ALS, {results['items']:,} items x {results['factors']} factors, {results['users']:,} users, "
         f"{results['interactions']:,} interactions; {results['config']['serve']['workers']} worker(s); "
         f"`/recommend` k={load['k']} at {load['rate']} req/s offered, {load['seconds']} s per run"
         + (f", server at nice {results['server_nice']}" if results.get("server_nice") else "") + ":"), "",
        "| run | achieved req/s | p50 ms | p95 ms | p99 ms | server CPU ms/req | load average before / after |",
        "|---:|---:|---:|---:|---:|---:|---|", rows,
        (f"| median | {m['achieved_rps']:.0f} | {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {m['p99_ms']:.2f} | "
         f"{m['server_cpu_ms_per_request']:.2f} | |"), "",
        (f"recall@{recall['k']} of the served answers against exact search: {recall['recall']:.3f} "
         f"({recall['users']} users)" if recall else "recall not measured"),
    ])


if __name__ == "__main__":
    main()
