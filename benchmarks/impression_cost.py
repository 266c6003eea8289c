"""What logging every ``/recommend`` answer as an impression costs the answer:
``python benchmarks/impression_cost.py configs/impression-cost.toml``.

Two ``recloop serve`` processes on the same artifact, one with ``online.impressions =
false``, one with the default (every answer logged through the impression log's group
committer). Open-loop ``/recommend`` load (``loadgen.py``) at each offered rate, the two
servers measured in alternation, ``repeats`` times, so that a change in the shared
machine's load hits both alike; medians of p50/p99 and of the server's CPU per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run as offer
from loadgen import run_sync
from online_sim import ensure_artifact
from serve_load import free_port, group_cpu_seconds, start, stop, users_of

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--output", default=None, help="folder for the stores, logs and results.json")
    args = parser.parse_args(argv)
    config = tomllib.loads(Path(args.config).read_text())
    out = Path(args.output or ROOT / config["output"])
    out.mkdir(parents=True, exist_ok=True)
    artifact = ensure_artifact(config["train_config"], ROOT / config["artifact"], config.get("model"))
    rng = np.random.default_rng(0)
    bodies = [json.dumps({"user_id": u, "k": config["k"]}).encode()
              for u in rng.choice(users_of(artifact), size=20_000, replace=True)]
    servers = {}
    for label, logged in (("off", "false"), ("on", "true")):
        db = out / f"{label}.db"
        db.unlink(missing_ok=True)
        port = free_port()
        servers[label] = (start(artifact, db, port, 1, out / f"{label}.log",
                                ["--set", f"online.impressions={logged}"]), f"http://127.0.0.1:{port}")
    results: dict = {"config": config, "load_before": os.getloadavg(), "runs": {}}
    try:
        for _, url in servers.values():
            run_sync(offer(url + "/recommend", lambda i: bodies[i % len(bodies)], 50, config["warmup_seconds"]))
        for rate in config["rates"]:
            for repeat in range(config["repeats"]):
                for label, (process, url) in servers.items():
                    cpu = group_cpu_seconds(process.pid)
                    result = run_sync(offer(url + "/recommend", lambda i: bodies[i % len(bodies)], rate,
                                            config["seconds"], seed=repeat))
                    row = result.summary() | {"load": os.getloadavg()[0], "server_cpu_ms_per_request": round(
                        1000 * (group_cpu_seconds(process.pid) - cpu) / max(1, result.completed), 3)}
                    results["runs"].setdefault(f"{label}@{rate}", []).append(row)
                    print(f"impressions {label:<3} {rate:>4} rps: {row}", file=sys.stderr)
    finally:
        for process, _ in servers.values():
            stop(process)
    import sqlite3

    with sqlite3.connect(out / "on.db") as connection:
        results["impressions_logged"] = connection.execute("SELECT COUNT(*) FROM impressions").fetchone()[0]
    table = ["| impressions | offered rps | p50 ms | p99 ms | server CPU ms/request | load |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    summary = {}
    for key, rows in results["runs"].items():
        median = {m: statistics.median(r[m] for r in rows) for m in ("p50_ms", "p99_ms", "server_cpu_ms_per_request",
                                                                      "load", "achieved_rps")}
        summary[key] = median
        label, rate = key.split("@")
        table.append(f"| {label} | {rate} | {median['p50_ms']:.2f} | {median['p99_ms']:.2f} | "
                     f"{median['server_cpu_ms_per_request']:.3f} | {median['load']:.1f} |")
    results["summary"] = summary
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(table))
    print(f"{results['impressions_logged']} impressions logged by the 'on' server")
    return results


if __name__ == "__main__":
    main()
