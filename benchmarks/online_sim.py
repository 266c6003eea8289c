"""Simulated users against the live service: how many users an A/B test and team-draft
interleaving need to pick the better model. ``python benchmarks/online_sim.py configs/online-sim.toml``

The simulator (usable on its own, see :func:`simulate`): each simulated user is a real
user of the dataset, and their hidden preference is their held-out test items, which
the served models never saw (the artifacts are fitted on the training split only).
Per session the user asks ``POST /recommend`` (k items) and looks down the list:
position ``p`` (1-based) is examined with probability ``1 / log2(p + 1)``; an examined
item is clicked with probability ``propensity`` if it is a test item of the user, else
``noise * propensity``. A user's ``propensity`` is drawn once from Beta(a, b): users
differ in how much they click, as real users do. Clicks go back as ``POST /events``
carrying the answer's ``request_id``, so they are attributed, enter the user's live
history and are never recommended to them again.

The benchmark: for each seed and each mode (``ab``, ``interleave``) it starts a real
``recloop serve`` (uvicorn, SQLite store) with the two artifacts, runs every user (in a
seeded random order) for ``sessions`` sessions, then reads the impression log and
computes the online report on the first N users for N on a grid. Users-to-decision is
the smallest N from which the test stays significant (p < alpha, the right winner) up
to the last N: a look at every grid point, so "stays" guards against the early lucky
crossing that repeated looks produce. Medians over seeds are reported.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class ClickModel:
    """Position bias ``1 / log2(p + 1)``; per-user click propensity ~ Beta(a, b);
    clicks on items outside the hidden preference at ``noise`` times the propensity."""

    propensity_a: float = 0.5
    propensity_b: float = 2.0
    noise: float = 0.1

    def examine(self, k: int) -> np.ndarray:
        return 1.0 / np.log2(np.arange(1, k + 1) + 1)


@dataclass(frozen=True)
class SimUser:
    user_id: str
    relevant: frozenset[str]
    propensity: float


def hidden_preferences(config_path: str | Path, data_dir: str | Path) -> dict[str, frozenset[str]]:
    """Each user's test items of the experiment config's split (external ids)."""
    from recloop.config import load_config
    from recloop.experiment import prepare_data

    data = prepare_data(load_config(config_path), data_dir=data_dir, download=False)
    test = data.split.test
    users, items = data.dataset.interactions.users, data.dataset.interactions.items
    out: dict[str, set[str]] = {}
    for u, i in zip(test.user_idx.tolist(), test.item_idx.tolist()):
        out.setdefault(str(users.id(u)), set()).add(str(items.id(i)))
    return {user: frozenset(items) for user, items in out.items()}


def make_users(preferences: dict[str, frozenset[str]], click_model: ClickModel, seed: int,
               limit: int | None = None) -> list[SimUser]:
    """The users in a seeded random order, each with a drawn propensity."""
    rng = np.random.default_rng(seed)
    ids = sorted(preferences)
    order = rng.permutation(len(ids))[:limit]
    propensity = rng.beta(click_model.propensity_a, click_model.propensity_b, len(ids))
    return [SimUser(ids[j], preferences[ids[j]], float(propensity[j])) for j in order]


def simulate(url: str, users: Sequence[SimUser], click_model: ClickModel, sessions: int = 5, k: int = 10,
             seed: int = 0, concurrency: int = 4, api_key: str | None = None) -> dict:
    """Drive the service at ``url`` with ``users`` (``concurrency`` at a time, each user's
    sessions in order); returns counts of requests and clicks. Each user's clicks come
    from their own seeded generator, so a run does not depend on thread timing."""
    import httpx

    examine = click_model.examine(k)
    work: queue.Queue = queue.Queue()
    for index, user in enumerate(users):
        work.put((index, user))
    totals = {"users": len(users), "requests": 0, "clicks": 0, "relevant_clicks": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []
    headers = {"X-API-Key": api_key} if api_key else {}

    def worker():
        with httpx.Client(base_url=url, timeout=60.0, headers=headers) as client:
            while not errors:
                try:
                    index, user = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    counts = _run_user(client, user, examine, click_model, sessions, k, seed, index)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(error)
                    return
                with lock:
                    for key, value in counts.items():
                        totals[key] += value

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return totals


def _run_user(client, user: SimUser, examine: np.ndarray, click_model: ClickModel, sessions: int, k: int,
              seed: int, index: int) -> dict:
    rng = np.random.default_rng([seed, index])
    counts = {"requests": 0, "clicks": 0, "relevant_clicks": 0}
    for _ in range(sessions):
        answer = client.post("/recommend", json={"user_id": user.user_id, "k": k})
        answer.raise_for_status()
        body = answer.json()
        counts["requests"] += 1
        shown = [item["item_id"] for item in body["items"]]
        relevant = np.array([item in user.relevant for item in shown], dtype=bool)
        chance = examine[:len(shown)] * np.where(relevant, user.propensity, click_model.noise * user.propensity)
        clicked = np.flatnonzero(rng.random(len(shown)) < chance)
        if len(clicked):
            events = [{"user_id": user.user_id, "item_id": shown[p], "type": "click",
                       "request_id": body["request_id"]} for p in clicked]
            client.post("/events", json=events).raise_for_status()
            counts["clicks"] += len(clicked)
            counts["relevant_clicks"] += int(relevant[clicked].sum())
    return counts


# --- analysis ------------------------------------------------------------------------------------
def decisions(db: str | Path, part: str, grid: Sequence[int], expected: str, alpha: float = 0.05) -> dict:
    """The report's test on the first N users (by first impression) for each N of
    ``grid``; users-to-decision as in the module docstring."""
    from recloop.serve.impressions import ImpressionLog
    from recloop.serve.online_report import build_report
    from recloop.serve.store import open_store

    with open_store(db) as store, ImpressionLog(store) as log:
        impressions, attributions = log.impressions(), log.attributions(["click"])
    order: dict[str, int] = {}
    for impression in impressions:
        order.setdefault(impression.user_id, len(order))
    points = []
    for n in sorted(g for g in grid if g <= len(order)):
        shown = [i for i in impressions if order[i.user_id] < n]
        ids = {i.request_id for i in shown}
        report = build_report(shown, [a for a in attributions if a.request_id in ids], ["click"], control=expected)
        test = (report[part] or {}).get("test") or {}
        points.append({"users": n, "p": test.get("p"), "winner": test.get("winner")})
    decided = None
    for point in points:
        good = point["p"] is not None and point["p"] < alpha and point["winner"] == expected
        decided = (decided or point["users"]) if good else None
    final = build_report(impressions, attributions, ["click"], control=expected)
    return {"users_to_decision": decided, "users": len(order), "points": points, "report": final}


def power_curve(db: str | Path, part: str, grid: Sequence[int], expected: str, draws: int = 200,
                alpha: float = 0.05, seed: int = 0) -> dict:
    """For each N of ``grid``: the share of ``draws`` random sets of N simulated users (drawn
    without replacement from the run's users) on which the test picks ``expected`` at
    p < alpha; and the smallest N where that power reaches 80%. Drawing users, not
    looking at the first N, makes this a property of the method rather than of one order."""
    from recloop.evaluate.online import ab_test, sign_test, user_preferences
    from recloop.serve.impressions import ImpressionLog
    from recloop.serve.online_report import user_counts
    from recloop.serve.store import open_store

    with open_store(db) as store, ImpressionLog(store) as log:
        counts = user_counts(log.impressions(), log.attributions(["click"]), ["click"], control=expected)
    rng = np.random.default_rng(seed)
    if part == "split":
        arms = counts["split"]
        names = list(arms)
        rows = np.concatenate([arms[n] for n in names])
        arm = np.concatenate([np.full(len(arms[n]), j) for j, n in enumerate(names)])
    else:
        rows, names = counts["interleaving"]["wins"], counts["interleaving"]["arms"]
    assert names[0] == expected, names
    power = {}
    for n in grid:
        if n > len(rows):
            continue
        good = 0
        for _ in range(draws):
            pick = rng.choice(len(rows), n, replace=False)
            if part == "split":
                a, b = rows[pick][arm[pick] == 0], rows[pick][arm[pick] == 1]
                if len(a) < 2 or len(b) < 2:
                    continue
                test = ab_test(a[:, 1], a[:, 0], b[:, 1], b[:, 0], resamples=0)
                good += test.pvalue < alpha and test.difference.mean < 0  # the control (expected) wins
            else:
                prefer_a, prefer_b, ties = user_preferences(rows[pick, 0], rows[pick, 1])
                good += sign_test(prefer_a, prefer_b, ties).pvalue < alpha and prefer_a > prefer_b
        power[n] = good / draws
    needed = next((n for n, p in power.items() if p >= 0.8), None)
    return {"power": power, "users_for_80_power": needed}


# --- the benchmark -------------------------------------------------------------------------------
def ensure_artifact(train_config: str, artifact: Path, model: str | None = None) -> Path:
    from serve_load import env

    if not (artifact / "model.json").is_file():
        print(f"training {train_config} into {artifact} (fitted on the training split) ...", file=sys.stderr)
        pick = ["--model", model] if model else []
        subprocess.run([sys.executable, "-m", "recloop", "train", str(ROOT / train_config), "--output", str(artifact),
                        "--no-refit-all", "--quiet", *pick], check=True, env=env(), cwd=ROOT)
    return artifact


def offline_ndcg(artifact: Path) -> float | None:
    path = artifact / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    found = metrics.get("metrics", metrics)
    return found.get("ndcg@10") if isinstance(found, dict) else None


def run_mode(config: dict, mode: str, seed: int, arms: dict[str, Path], preferences, out: Path,
             reuse: bool = False) -> dict:
    """One server in ``mode``, every simulated user; the decision analysis of its log
    (with ``reuse``, of the log an earlier run left, without simulating again)."""
    names = list(arms)
    db = out / f"{mode}-{seed}.db"
    if reuse:  # the simulation's counts from the earlier run's results, when there
        earlier = out / "results.json"
        runs = json.loads(earlier.read_text())["runs"] if earlier.is_file() else []
        found = next((r for r in runs if r["mode"] == mode and r["seed"] == seed), {})
        totals = {key: found[key] for key in ("users", "requests", "clicks", "relevant_clicks") if key in found}
        seconds = found.get("seconds", float("nan"))
    else:
        totals, seconds = _simulate_mode(config, mode, seed, arms, names, preferences, out, db)
    part = "split" if mode == "ab" else "interleaving"
    result = decisions(db, part, config["grid"], config["expected_winner"], config.get("alpha", 0.05))
    result |= power_curve(db, part, config["grid"], config["expected_winner"], config.get("power_draws", 200),
                          config.get("alpha", 0.05), seed)
    test = result["report"][part]["test"]
    print(f"seed {seed} {mode:<10}: {totals.get('requests')} requests, {totals.get('clicks')} clicks in {seconds:.0f}s; "
          f"users to decision {result['users_to_decision']}, for 80% power {result['users_for_80_power']}; "
          f"all {result['users']} users: p = {test['p']:.3g}, winner {test['winner']}", file=sys.stderr)
    return {"mode": mode, "seed": seed, "seconds": seconds, **totals, **result}


def _simulate_mode(config, mode, seed, arms, names, preferences, out, db):
    from serve_load import free_port, start, stop

    db.unlink(missing_ok=True)
    port = free_port()
    extra = ["--set", f"online.mode={mode}", "--set", f"online.artifact={arms[names[1]]}",
             "--set", f"online.arm_a={names[0]}", "--set", f"online.arm_b={names[1]}",
             "--set", f"online.salt=seed-{seed}", "--set", f"online.seed={seed}", "--set", "sqlite_synchronous=normal"]
    process = start(arms[names[0]], db, port, 1, out / "server.log", extra)
    click_model = ClickModel(*config["propensity_beta"], config["noise"])
    users = make_users(preferences, click_model, seed, config.get("users"))
    try:
        start_time = time.perf_counter()
        totals = simulate(f"http://127.0.0.1:{port}", users, click_model, config["sessions"], config["k"], seed,
                          config.get("concurrency", 4))
        seconds = time.perf_counter() - start_time
    finally:
        stop(process)
    return totals, seconds


def grid_of(spec: dict) -> list[int]:
    return sorted(set(range(spec["start"], spec["stop"] + 1, spec["step"])) | set(spec.get("extra", [])))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="benchmark TOML (configs/online-sim.toml)")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="override the config's seeds")
    parser.add_argument("--output", default=None, help="folder for the databases and results.json")
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: $RECLOOP_DATA_DIR)")
    parser.add_argument("--reuse", action="store_true",
                        help="analyse the stores an earlier run left in the output folder; simulate nothing")
    args = parser.parse_args(argv)
    import os

    config = tomllib.loads(Path(args.config).read_text())
    config["grid"] = grid_of(config["grid"])
    out = Path(args.output or ROOT / config["output"])
    out.mkdir(parents=True, exist_ok=True)
    arms = {name: ensure_artifact(spec["train_config"], ROOT / spec["artifact"], spec.get("model"))
            for name, spec in config["arms"].items()}
    preferences = hidden_preferences(ROOT / config["arms"][config["expected_winner"]]["train_config"],
                                     args.data_dir or os.environ.get("RECLOOP_DATA_DIR") or tempfile.gettempdir())
    runs = [run_mode(config, mode, seed, arms, preferences, out, args.reuse)
            for seed in (args.seeds or config["seeds"]) for mode in ("ab", "interleave")]
    summary = {}
    for mode in ("ab", "interleave"):
        summary[mode] = {}
        for key in ("users_to_decision", "users_for_80_power"):
            found = [r[key] for r in runs if r["mode"] == mode]
            decided = [n for n in found if n is not None]
            summary[mode][key] = found
            summary[mode][f"median_{key}"] = statistics.median(decided) if len(decided) == len(found) else None
    for key in ("users_to_decision", "users_for_80_power"):
        ab, il = summary["ab"][f"median_{key}"], summary["interleave"][f"median_{key}"]
        summary[f"ratio_{key}"] = ab / il if ab and il else None
    summary["offline_ndcg@10"] = {name: offline_ndcg(path) for name, path in arms.items()}
    (out / "results.json").write_text(json.dumps({"config": config, "summary": summary, "runs": [
        {k: v for k, v in r.items() if k != "report"} | {"report": r["report"]} for r in runs]}, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
