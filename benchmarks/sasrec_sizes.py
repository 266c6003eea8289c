"""SASRec sizes compared on test, each size with its own tuned config, several training
seeds, confidence intervals and paired tests on the same users.

    PYTHONPATH=. python benchmarks/sasrec_sizes.py configs/ml100k-sasrec-16-1-1-tuned.toml \
        configs/ml100k-sasrec-32-1-1-tuned.toml --seeds 0 1 2 --json runs/sizes-small.json
    PYTHONPATH=. python benchmarks/sasrec_sizes.py --table runs/sizes-small.json runs/sizes-large.json \
        --tune runs/tune/sasrec-16-1-1/tune.json runs/tune/sasrec-32-1-1/tune.json

Each config (a ``best.toml`` of ``recloop tune``) runs exactly what ``recloop evaluate
CONFIG`` runs (:func:`recloop.experiment.run_model`), once per seed (``model.train.seed``),
and the JSON keeps every run's test metrics, epochs and per-user test values (rewritten
after each run). ``--table`` merges result files into two markdown tables; ``--tune`` adds
the final test that ``recloop tune`` made of each best config (its training seed, the
config's) as one more seed, without per-user values (``tune.json`` keeps none), so that a
seed already tested by the tuner need not be trained again:

* per size: the median over seeds of test NDCG@10 / HR@10 (and the seeds' range), and a
  95% interval over users of the seed-averaged per-user NDCG@10 (Student t, 943 users on
  ml-100k): the spread that another draw of users would give;
* every pair of sizes: the paired difference of the seed-averaged per-user NDCG@10, with
  its 95% interval, the paired t-test and the Wilcoxon signed-rank p-values
  (:func:`recloop.evaluate.stats.paired_test`). Averaging the seeds first removes most of
  the training noise from each user's value; pairing removes the users' own difficulty.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sasrec_beauty import ROOT, machine, ranking_metrics  # noqa: E402

from recloop.config import load_config  # noqa: E402
from recloop.evaluate.stats import mean_confidence_interval, paired_test  # noqa: E402
from recloop.experiment import prepare_data, run_model  # noqa: E402

METRIC = "ndcg@10"


def size_label(config) -> str:
    params = config.model.params
    return f"{params['hidden']}:{params['layers']}:{params['heads']}"


def measure(configs: list[str], seeds: list[int], overrides: list[str], data_dir: str | None,
            out: Path | None) -> dict:
    report = {"seeds": seeds, "overrides": overrides, "machine": machine(), "runs": []}
    for path in configs:
        base = load_config(path, overrides)
        data = prepare_data(base, data_dir=data_dir, download=False)
        for seed in seeds:
            config = load_config(path, [*overrides, f"model.train.seed={seed}", "model.train.progress=false"])
            start, cpu = time.perf_counter(), time.process_time()
            result = run_model(config.model, data, config)
            # With refit the tested model was retrained on train + valid; the epochs are the early-stopped one's.
            trained = (result.before_refit[0] if result.before_refit else result.model).train_result_
            record = {
                "config": path, "size": size_label(config), "seed": seed,
                "params": sum(p.numel() for p in result.model.network_.parameters()),
                "model": config.model.params, "test": ranking_metrics(result.test),
                "valid_best": trained.best_metric, "best_epoch": trained.best_epoch,
                "epochs_run": len(trained.history), "stopped": trained.stopped,
                "cpu_seconds_per_epoch": trained.cpu_seconds_per_epoch,
                "fit_seconds": result.fit_seconds, "total_seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu,
                "users": result.test.users.tolist(),
                "per_user": {m: result.test.per_user[m].tolist() for m in (METRIC, "hr@10")},
            }
            report["runs"].append(record)
            print(f"{record['size']} seed {seed}: test {METRIC} {record['test'][METRIC]:.4f}; best epoch "
                  f"{record['best_epoch']} of {record['epochs_run']} ({record['stopped']}), "
                  f"{record['fit_seconds']:.0f}s fit", file=sys.stderr, flush=True)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(report, indent=1))
    return report


def from_tune(path: Path) -> dict:
    """The final test of a ``recloop tune`` study as a run of its best config (no per-user
    values; epochs are the best trial's, which the final fit repeats)."""
    report = json.loads(Path(path).read_text())
    config = report["best_config"]
    (model,) = config["models"]
    best = next(t for t in report["trials"] if t["number"] == report["best"]["trial"])
    return {"config": str(path), "size": f"{model['hidden']}:{model['layers']}:{model['heads']}",
            "seed": model["train"]["seed"], "params": None, "model": model, "test": report["test"]["metrics"],
            "valid_best": report["best"][f"valid_{report['metric']}"], "best_epoch": best["best_epoch"],
            "epochs_run": best["epochs"], "stopped": best["stopped"], "fit_seconds": report["test"]["fit_seconds"],
            "cpu_seconds_per_epoch": None, "users": None, "per_user": None}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per-size rows (medians over seeds, interval over users) and every pair's paired test,
    from the runs of one or more result files; sizes ordered by hidden, layers, heads.
    Runs without per-user values (:func:`from_tune`) count in the medians only."""
    by_size: dict[str, list[dict]] = {}
    for run in runs:
        by_size.setdefault(run["size"], []).append(run)
    users = next((run["users"] for run in runs if run["users"] is not None), None)
    if any(run["users"] not in (None, users) for run in runs):
        raise ValueError("the runs were tested on different users; paired tests need the same split")
    averaged, rows = {}, []
    for size, group in sorted(by_size.items(), key=lambda item: tuple(int(x) for x in item[0].split(":"))):
        seeds = sorted({run["seed"] for run in group})
        if len(seeds) < len(group):
            raise ValueError(f"size {size} has a seed twice ({[run['seed'] for run in group]}); give each run once")
        paired = [run["per_user"][METRIC] for run in group if run["per_user"] is not None]
        interval = None
        if paired:
            averaged[size] = np.mean(paired, axis=0)
            interval = mean_confidence_interval(averaged[size])
        tests = [run["test"][METRIC] for run in group]
        rows.append({
            "size": size, "params": _median(run["params"] for run in group), "seeds": seeds,
            "paired_seeds": [run["seed"] for run in group if run["per_user"] is not None],
            "test": statistics.median(tests), "test_min": min(tests), "test_max": max(tests),
            "hr": statistics.median(run["test"]["hr@10"] for run in group),
            "valid": statistics.median(run["valid_best"] for run in group),
            "best_epoch": statistics.median(run["best_epoch"] for run in group),
            "epochs_run": statistics.median(run["epochs_run"] for run in group),
            "stopped": sorted({run["stopped"] for run in group}),
            "fit_seconds": statistics.median(run["fit_seconds"] for run in group),
            "cpu_seconds_per_epoch": _median(run["cpu_seconds_per_epoch"] for run in group),
            "mean_over_seeds": interval and interval.mean, "ci_low": interval and interval.low,
            "ci_high": interval and interval.high,
        })
    pairs = []
    for a, b in itertools.combinations([row["size"] for row in rows if row["size"] in averaged], 2):
        test = paired_test(averaged[b], averaged[a], METRIC)  # the larger minus the smaller
        d = test.difference
        pairs.append({"larger": b, "smaller": a, "difference": d.mean, "low": d.low, "high": d.high,
                      "t_pvalue": test.t_pvalue, "wilcoxon_pvalue": test.wilcoxon_pvalue})
    return rows, pairs


def table(files: list[Path], tune_files: list[Path] = ()) -> str:
    runs = [run for file in files for run in json.loads(Path(file).read_text())["runs"]]
    rows, pairs = summarise(runs + [from_tune(path) for path in tune_files])

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["| size (hidden:layers:heads) | parameters | seeds | valid NDCG@10 | test NDCG@10 median (seeds' range) "
             "| test HR@10 | seed-averaged test NDCG@10 (95% CI over users; seeds) | best epoch / epochs run "
             "| stopped by | fit s | CPU s/epoch |", "|" + "---|" * 11]
    for r in rows:
        averaged = ("-" if r["mean_over_seeds"] is None else f"{r['mean_over_seeds']:.4f} ({r['ci_low']:.4f}-"
                    f"{r['ci_high']:.4f}; {','.join(map(str, r['paired_seeds']))})")
        lines.append(f"| {r['size']} | {fmt(r['params'], ',.0f')} | {','.join(map(str, r['seeds']))} | "
                     f"{r['valid']:.4f} | **{r['test']:.4f}** ({r['test_min']:.4f}-{r['test_max']:.4f}) | "
                     f"{r['hr']:.4f} | {averaged} | {r['best_epoch']:g} / {r['epochs_run']:g} | "
                     f"{', '.join(r['stopped'])} | {r['fit_seconds']:.0f} | {fmt(r['cpu_seconds_per_epoch'], '.2f')} |")
    lines += ["", "| larger - smaller | NDCG@10 difference (95% CI) | paired t p | Wilcoxon p |", "|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['larger']} - {p['smaller']} | {p['difference']:+.4f} ({p['low']:+.4f} .. "
                     f"{p['high']:+.4f}) | {p['t_pvalue']:.3g} | {p['wilcoxon_pvalue']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="tuned configs, one per size")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="write the runs here")
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="print the markdown tables of these result files instead of training")
    parser.add_argument("--tune", type=Path, nargs="+", default=[],
                        help="with --table: tune.json files whose final test counts as one more seed")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table, args.tune))
        return None
    if not args.configs:
        parser.error("give the tuned configs to run, or --table FILES")
    return measure(args.configs, args.seeds, args.set, args.data_dir, args.json)


if __name__ == "__main__":
    main()
