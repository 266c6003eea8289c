"""Load test of the HTTP service: ``python benchmarks/serve_load.py configs/serve-load.toml``.

1. Trains the configured artifact once (``recloop train``, with the config's
   ``train_set`` overrides) if it is missing.
2. Starts ``recloop serve`` (SQLite event store, ``workers`` processes) on a free port.
3. ``/recommend`` for random known users at each offered rate, open loop
   (``loadgen.py``): p50/p95/p99 from each request's due time; median over repeats.
4. Saturation: ``wrk`` (closed loop, ``saturation_connections`` connections) on
   ``/recommend``; requests/s, median over repeats.
5. ``/events`` at each offered rate (one event per request, unique ``event_id``), then
   in batches; afterwards every acknowledged event is checked to be in the store.

Writes ``runs/serve-load/results.json``, a markdown table on stdout and the plot
``docs/serving-latency.png``. The generator and wrk run on the same machine as the
server (loopback), so their CPU is not available to the server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run as offer
from loadgen import run_sync

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(root: Path = ROOT) -> dict:
    """This process's environment with ``root``'s recloop first on the path."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(root) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out.setdefault("HF_HUB_OFFLINE", "1")
    return out


def ensure_artifact(config: dict) -> Path:
    artifact = ROOT / config["artifact"]
    if not (artifact / "model.json").is_file():
        print(f"training {config['train_config']} into {artifact} ...", file=sys.stderr)
        overrides = [arg for value in config.get("train_set", []) for arg in ("--set", value)]
        subprocess.run([sys.executable, "-m", "recloop", "train", str(ROOT / config["train_config"]),
                        "--output", str(artifact), "--quiet", *overrides], check=True, env=env(), cwd=ROOT)
    return artifact


def start(artifact: Path, db: Path, port: int, workers: int, log: Path, extra=(), root: Path = ROOT) -> subprocess.Popen:
    """``recloop serve`` of checkout ``root`` on ``port``, once ``/health`` answers."""
    import urllib.request

    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "recloop", "serve", str(artifact), "--port", str(port),
                                    "--db", str(db), "--workers", str(workers), "--log-level", "warning", *extra],
                                   stdout=out, stderr=subprocess.STDOUT, env=env(root), cwd=root,
                                   start_new_session=True)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("server did not come up")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process of a process group:
    the server's own cost per request, whatever else the shared machine runs."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def users_of(artifact: Path) -> list[str]:
    return json.loads((artifact / "users.json").read_text())


def median_summary(runs: list[dict]) -> dict:
    keys = ["achieved_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "server_cpu_ms_per_request"]
    out = {key: round(statistics.median(r[key] for r in runs), 2) for key in keys}
    out["offered_rps"] = runs[0]["offered_rps"]
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    out["repeats"] = [{k: r[k] for k in ("achieved_rps", "p50_ms", "p95_ms", "p99_ms")} for r in runs]
    return out


def wrk_saturation(url: str, users: list[str], k: int, connections: int, seconds: float, folder: Path) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    sample = np.random.default_rng(0).choice(users, size=min(2000, len(users)), replace=False)
    script = folder / "recommend.lua"
    table = ",".join(json.dumps(u) for u in sample)
    script.write_text(f"""
local users = {{{table}}}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "/recommend", nil, '{{"user_id": "' .. users[(i % #users) + 1] .. '", "k": {k}}}')
end
""")
    done = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(script), url],
                          capture_output=True, text=True, check=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} errors:\n{done.stdout}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--artifact", default=None, help="serve this artifact instead of the config's")
    parser.add_argument("--label", default=None, help="name of this run in the results (default: model name)")
    parser.add_argument("--output", default="runs/serve-load/results.json")
    parser.add_argument("--plot", default="docs/serving-latency.png")
    parser.add_argument("--skip-events", action="store_true")
    args = parser.parse_args()
    config = tomllib.loads(Path(args.config).read_text())
    artifact = Path(args.artifact) if args.artifact else ensure_artifact(config)
    model = json.loads((artifact / "model.json").read_text())["model"]
    label = args.label or config.get("label") or model
    folder = Path(tempfile.mkdtemp(prefix="recloop-load-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    users = users_of(artifact)
    n_items = len(json.loads((artifact / "items.json").read_text()))
    rng = np.random.default_rng(0)
    user_bodies = [json.dumps({"user_id": u, "k": config["k"]}).encode()
                   for u in rng.choice(users, size=20_000, replace=True)]
    results = {"label": label, "model": model, "artifact": str(artifact), "items": n_items, "users": len(users),
               "workers": config["workers"], "cpus": os.cpu_count(), "load_before": os.getloadavg(),
               "recommend": [], "saturation_rps": [], "events": []}
    process = start(artifact, folder / "events.db", port, config["workers"], folder / "server.log")
    try:
        def bodies(i):
            return user_bodies[i % len(user_bodies)]

        run_sync(offer(url + "/recommend", bodies, 50, config["warmup_seconds"]))
        for rate in config["rates"]:
            runs = []
            for repeat in range(config["repeats"]):
                cpu = group_cpu_seconds(process.pid)
                result = run_sync(offer(url + "/recommend", bodies, rate, config["seconds"], seed=repeat))
                runs.append(result.summary())
                runs[-1]["server_cpu_ms_per_request"] = round(
                    1000 * (group_cpu_seconds(process.pid) - cpu) / max(1, result.completed), 3)
                print(f"  /recommend {rate:>5} rps offered: {runs[-1]}", file=sys.stderr)
            results["recommend"].append(median_summary(runs))
        for _ in range(config["repeats"]):
            cpu = group_cpu_seconds(process.pid)
            rps = wrk_saturation(url, users, config["k"], config["saturation_connections"],
                                 config["saturation_seconds"], folder)
            cpu_ms = 1000 * (group_cpu_seconds(process.pid) - cpu) / (rps * config["saturation_seconds"])
            results["saturation_rps"].append(rps)
            results.setdefault("saturation_cpu_ms_per_request", []).append(round(cpu_ms, 3))
            results.setdefault("load_during_saturation", []).append(os.getloadavg()[0])
            print(f"  saturation: {rps:.0f} requests/s, {cpu_ms:.2f} server CPU ms/request, "
                  f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        if not args.skip_events:
            results["events"] = events_benchmark(url, folder / "events.db", config, artifact, process.pid)
    finally:
        stop(process)
    results["load_after"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(Path(args.output).read_text()) if Path(args.output).is_file() else {}
    previous[label] = results
    Path(args.output).write_text(json.dumps(previous, indent=1))
    print(markdown(results))
    plot(previous, Path(args.plot))
    shutil.rmtree(folder, ignore_errors=True)


def events_benchmark(url: str, db: Path, config: dict, artifact: Path, pgid: int) -> list[dict]:
    """Open-loop POST /events; then every acknowledged event must be in the store."""
    sys.path.insert(0, str(ROOT))
    from recloop.serve.store import open_store

    item_ids = json.loads((artifact / "items.json").read_text())
    out = []
    plans = [(rate, 1) for rate in config["event_rates"]] + [(config["event_batch_rate"], config["event_batch"])]
    for run_number, (rate, batch) in enumerate(plans):

        def body(i, batch=batch, run_number=run_number):
            events = [{"user_id": f"load-{i % 5000}", "item_id": item_ids[(i * 7 + j) % len(item_ids)],
                       "type": "click", "event_id": f"r{run_number}-{i}-{j}"} for j in range(batch)]
            return json.dumps(events[0] if batch == 1 else events).encode()

        def ids(i, batch=batch, run_number=run_number):
            return [f"r{run_number}-{i}-{j}" for j in range(batch)]

        cpu = group_cpu_seconds(pgid)
        result = run_sync(offer(url + "/events", body, rate, config["seconds"], ids=ids))
        summary = result.summary()
        summary["server_cpu_ms_per_request"] = round(1000 * (group_cpu_seconds(pgid) - cpu) / max(1, result.completed), 3)
        summary.update(batch=batch, offered_events_per_s=rate * batch,
                       acknowledged_events_per_s=round(len(result.acknowledged_ids) / result.seconds, 1))
        with open_store(db) as store:
            stored = {e.event_id for e in store.iter_events() if e.event_id and e.event_id.startswith(f"r{run_number}-")}
        summary["acknowledged"] = len(result.acknowledged_ids)
        summary["lost"] = len(set(result.acknowledged_ids) - stored)
        print(f"  /events {rate} rps x {batch}: {summary}", file=sys.stderr)
        out.append(summary)
    return out


def markdown(results: dict) -> str:
    lines = [f"`/recommend`, {results['label']} ({results['items']} items), {results['workers']} workers, "
             f"k=10, open loop, median of repeats:", "",
             "| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | server CPU ms/req |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in results["recommend"]:
        lines.append(f"| {row['offered_rps']:.0f} | {row['achieved_rps']:.0f} | {row['p50_ms']:.1f} | "
                     f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['server_cpu_ms_per_request']:.2f} |")
    if results["saturation_rps"]:
        cpu = statistics.median(results["saturation_cpu_ms_per_request"])
        lines += ["", f"Saturation (wrk, closed loop): {statistics.median(results['saturation_rps']):.0f} requests/s "
                      f"(runs: {', '.join(f'{r:.0f}' for r in results['saturation_rps'])}; load average during: "
                      f"{', '.join(f'{x:.1f}' for x in results['load_during_saturation'])}); server CPU "
                      f"{cpu:.2f} ms/request, i.e. {2000 / cpu:.0f} requests/s on two dedicated cores"]
    if results["events"]:
        lines += ["", "| /events offered req/s | events/request | acknowledged events/s | p50 ms | p99 ms | lost "
                      "| server CPU ms/req |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in results["events"]:
            lines.append(f"| {row['offered_rps']:.0f} | {row['batch']} | {row['acknowledged_events_per_s']:.0f} | "
                         f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['lost']} | "
                         f"{row.get('server_cpu_ms_per_request', float('nan')):.2f} |")
    return "\n".join(lines)


def plot(all_results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for number, (label, results) in enumerate(all_results.items()):
        rows = results["recommend"]
        offered = [r["offered_rps"] for r in rows]
        for key, style in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
            ax.plot(offered, [r[key] for r in rows], style, marker="o", markersize=3, color=f"C{number}",
                    label=f"{label} {key.split('_')[0]}")
    ax.axhline(25, color="grey", linewidth=0.8)
    ax.text(ax.get_xlim()[0], 26, " 25 ms target (p99 at 200 req/s)", color="grey", fontsize=8)
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("recloop serve: /recommend latency against offered load")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
