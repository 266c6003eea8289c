"""Time to quality on amazon-beauty: recloop's SASRec against RecBole 1.2.1's SASRec.

    setsid .venv/bin/python benchmarks/time_to_quality.py configs/beauty-sasrec-5min.toml \
        --json docs/results/time-to-quality.json --png docs/time-to-quality.png &
    echo -19 > /proc/$!/autogroup     # top CPU priority for the whole sitting (both runs)

One sitting, one after the other, both with the same torch threads (``--threads``, 2):

1. recloop's SASRec with the config's settings and a wall-clock budget
   (``model.train.max_minutes`` = ``--minutes``; the trainer stops at the first epoch end
   past it, then that epoch's validation). The curve is the :class:`~recloop.train.Trainer`'s
   own history: per validated epoch, ``elapsed`` (wall seconds since ``fit`` began, every
   validation so far included) and the sum of ``train_seconds`` (training only).
2. RecBole's SASRec (``benchmarks/recbole_sasrec.py --minutes``, run as a subprocess with
   ``--recbole-python``, RecBole's own venv): RecBole's ``Trainer`` trains whole epochs
   and validates with full ranking after each on its own leave-one-out split of the
   same file, until the first epoch end past ``--recbole-minutes``.

Both validate NDCG@10 of each user's second-to-last item, ranking all items with the
user's training items masked. Data loading and model construction are outside both
clocks (reported apart). The comparison: the best validation NDCG@10 RecBole reached
within its budget, the time each needed to first reach it, and their ratio; and the
first time recloop reached ``--target`` (0.050). ``--plot JSON`` redraws the PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCKS = ("elapsed", "train_elapsed")  # wall with validation included, training only


def first_reaching(curve: list[dict], level: float, clock: str = "elapsed") -> float | None:
    """Seconds on ``clock`` of the first point of ``curve`` whose ``metric`` is at least
    ``level`` (the validation that showed it), or None when no point reaches it."""
    for point in sorted(curve, key=lambda p: p[clock]):
        if point["metric"] is not None and point["metric"] >= level:
            return point[clock]
    return None


def compare(recloop: list[dict], recbole: list[dict], target: float) -> dict:
    """The ratio: the best level RecBole's curve reached, the seconds each curve needed to
    first reach it (on both clocks) and RecBole's over recloop's; and recloop's first
    seconds at ``target``. A ratio is None when recloop never reached RecBole's level."""
    level = max(p["metric"] for p in recbole)
    out: dict = {"level": level, "target": target}
    for clock in CLOCKS:
        theirs, ours = first_reaching(recbole, level, clock), first_reaching(recloop, level, clock)
        out[clock] = {"recbole_seconds": theirs, "recloop_seconds": ours,
                      "ratio": theirs / ours if ours else None,
                      "recloop_seconds_to_target": first_reaching(recloop, target, clock)}
    return out


def recloop_curve(history: list[dict]) -> list[dict]:
    """The validated epochs of a Trainer history as curve points (training-only wall
    seconds summed over every epoch up to the point)."""
    points, train_wall, train_cpu = [], 0.0, 0.0
    for record in history:
        train_wall += record["train_seconds"]
        train_cpu += record["train_cpu_seconds"]
        if record["metric"] is not None:
            points.append({"epoch": record["epoch"], "metric": record["metric"], "elapsed": record["elapsed"],
                           "train_elapsed": train_wall, "valid_seconds": record["valid_seconds"],
                           "train_cpu_seconds": train_cpu, "loss": record["loss"]})
    return points


def run_recloop(config_path: str, overrides: list[str], minutes: float, threads: int, data_dir: str) -> dict:
    from recloop.config import load_config
    from recloop.evaluate import Evaluator
    from recloop.experiment import build_model, fit, prepare_data

    config = load_config(config_path, [*overrides, f"model.train.max_minutes={minutes}",
                                       f"model.train.num_threads={threads}", "model.train.progress=false"])
    started = time.perf_counter()
    data = prepare_data(config, data_dir=data_dir, download=False)
    loaded = time.perf_counter()
    model = build_model(config.model)
    fit_seconds = fit(model, data, data.split.train, data.split.valid)
    trained = model.train_result_
    # The test metric of the model as the budget left it (best validated epoch, no refit):
    # for information only; nothing above looked at it.
    test = Evaluator(config.evaluation).evaluate(model, data.split.test, data.split.history("test")).summary()
    return {"config": config_path, "overrides": overrides, "minutes": minutes, "threads": threads,
            "load_seconds": loaded - started, "fit_seconds": fit_seconds,
            "setup_seconds": fit_seconds - trained.seconds,  # fit() outside the Trainer: batching the sequences
            "stopped": trained.stopped, "best_epoch": trained.best_epoch, "best_metric": trained.best_metric,
            "seconds_per_epoch": trained.seconds_per_epoch, "cpu_seconds_per_epoch": trained.cpu_seconds_per_epoch,
            "curve": recloop_curve(trained.to_dict()["history"]),
            "test_best_epoch_no_refit": {k: v for k, v in test.items() if "@" in k}}


def run_recbole(python: str, minutes: float, threads: int, data_dir: str, limit_minutes: float) -> dict:
    """RecBole's curve from its subprocess; stopped after ``limit_minutes`` (the points it
    wrote by then are kept, ``stopped_from_outside`` says so)."""
    with tempfile.TemporaryDirectory(prefix="ttq-recbole-") as folder:
        out = Path(folder) / "recbole.json"
        command = [python, str(ROOT / "benchmarks" / "recbole_sasrec.py"), "--minutes", str(minutes),
                   "--threads", str(threads), "--data-dir", str(Path(data_dir).resolve()), "--json", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ""}
        started = time.perf_counter()
        try:
            # In the temporary folder: RecBole's Trainer writes TensorBoard logs into its working directory.
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, timeout=limit_minutes * 60,
                           cwd=folder)
            stopped = False
        except subprocess.TimeoutExpired:
            stopped = True
        report = json.loads(out.read_text()) if out.is_file() else {"curve": []}
        report["stopped_from_outside"] = stopped
    report["process_seconds"] = time.perf_counter() - started  # data preparation included
    report["command"] = " ".join(command)
    return report


def plot(report: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    runs = [("recloop SASRec", report["recloop"]), ("RecBole 1.2.1 SASRec", report.get("recbole"))]
    for ax, clock, title in zip(axes, CLOCKS, ("wall, validation included", "training only")):
        for (label, run), marker in zip(runs, ("o", "s")):
            if run:
                ax.plot([p[clock] / 60 for p in run["curve"]], [p["metric"] for p in run["curve"]],
                        marker=marker, markersize=3, label=label)
        ax.axhline(report["target"], color="grey", linestyle=":", linewidth=1)
        ax.axvline(report["recloop"]["minutes"], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"minutes since training started ({title})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation NDCG@10 (full ranking)")
    axes[0].legend(loc="lower right")
    load = report["load_average_start"][0]
    fig.suptitle(f"amazon-beauty, {report['threads']} threads each, load average {load:.1f} at start")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def table(report: dict) -> str:
    """Markdown: the two curves side by side in time, then the comparison's numbers."""
    lines = ["| run | epoch | wall s (validation included) | training-only wall s | valid NDCG@10 |",
             "|---|---|---|---|---|"]
    for label, key in (("recloop", "recloop"), ("RecBole", "recbole")):
        for p in report.get(key, {}).get("curve", []):
            lines.append(f"| {label} | {p['epoch']} | {p['elapsed']:.1f} | {p['train_elapsed']:.1f} | {p['metric']:.4f} |")
    comparison = report.get("comparison")
    if comparison:
        lines.append("")
        lines.append(f"RecBole's best validation NDCG@10 within its budget: {comparison['level']:.4f}.")
        for clock, words in zip(CLOCKS, ("wall, validation included", "training only")):
            c = comparison[clock]
            ratio = f"{c['ratio']:.1f}x" if c["ratio"] else "n/a"
            ours, target = c["recloop_seconds"], c["recloop_seconds_to_target"]
            lines.append(f"- {words}: RecBole {c['recbole_seconds']:.0f} s, recloop "
                         f"{'never' if ours is None else f'{ours:.1f} s'}, ratio {ratio}; recloop at >= "
                         f"{comparison['target']}: {'never' if target is None else f'{target:.1f} s'}")
    return "\n".join(lines)


def autogroup() -> str | None:
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "beauty-sasrec-5min.toml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--minutes", type=float, default=5.0, help="recloop's training budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.050)
    parser.add_argument("--recbole-python", default="/work/recbole-venv/bin/python",
                        help="python of a venv with recbole 1.2.1; empty: skip RecBole")
    parser.add_argument("--recbole-minutes", type=float, default=15.0)
    parser.add_argument("--recbole-limit-minutes", type=float, default=24.0,
                        help="stop RecBole's process after this long, data preparation included")
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="only redraw --png from this result file")
    parser.add_argument("--table", type=Path, default=None, help="only print the markdown table of this result file")
    args = parser.parse_args(argv)
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.png)
        return {}
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch

    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "threads": args.threads, "target": args.target, "cpus": os.cpu_count(), "torch": torch.__version__,
              "autogroup": autogroup(), "load_average_start": os.getloadavg(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip()}

    def save():
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))

    report["recloop"] = run_recloop(args.config, args.set, args.minutes, args.threads, args.data_dir)
    report["load_average_after_recloop"] = os.getloadavg()
    save()
    if args.recbole_python:
        report["recbole"] = run_recbole(args.recbole_python, args.recbole_minutes, args.threads, args.data_dir,
                                       args.recbole_limit_minutes)
        if report["recbole"]["curve"]:
            report["comparison"] = compare(report["recloop"]["curve"], report["recbole"]["curve"], args.target)
    ours = report["recloop"]["curve"]
    report["recloop_seconds_to_target"] = {clock: first_reaching(ours, args.target, clock) for clock in CLOCKS}
    within = [p["metric"] for p in ours if p["elapsed"] <= args.minutes * 60]
    report["recloop_best_within_budget"] = max(within) if within else None
    report["recloop_last_validation"] = ours[-1] if ours else None
    report["load_average_end"] = os.getloadavg()
    report["autogroup_end"] = autogroup()  # the priority is set from outside, after the start
    save()
    if args.png:
        plot(report, args.png)
    summary = {k: report[k] for k in ("recloop_seconds_to_target", "recloop_best_within_budget", "load_average_start",
                                      "load_average_end")}
    summary["comparison"] = report.get("comparison")
    print(json.dumps(summary, indent=1))
    return report


if __name__ == "__main__":
    main()
