"""SASRec on amazon-beauty (full-ranking leave-one-out): seconds per epoch, time to the
best validation epoch and test metrics, for several seeds.

    PYTHONPATH=. python benchmarks/sasrec_beauty.py configs/beauty-sasrec.toml --seeds 0 1 2 \
        --json docs/results/beauty-sasrec.json

Runs exactly what ``recloop train CONFIG`` runs (``recloop.experiment.run_model``: fit on
train with validation for early stopping, test with train + valid as history), once per
seed, and writes every epoch's record plus the test metrics as JSON (rewritten after
each seed, so a long run can be inspected while it goes). ``--set key=value`` overrides
config fields as the CLI does. One line per epoch goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from recloop.artifact import save_artifact
from recloop.config import load_config
from recloop.experiment import prepare_data, run_model

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}


def ranking_metrics(result) -> dict:
    return {k: v for k, v in result.summary().items() if "@" in k}


def run(config_path: str, seeds: list[int], overrides: list[str], data_dir: str | None, out: Path | None,
        save: Path | None = None) -> dict:
    base = load_config(config_path, overrides)
    data = prepare_data(base, data_dir=data_dir, download=False)
    report = {"config": config_path, "overrides": overrides, "machine": machine(), "runs": []}
    for seed in seeds:
        config = load_config(config_path, [*overrides, f"model.train.seed={seed}", "model.train.progress=false"])
        start = time.perf_counter()
        result = run_model(config.model, data, config)
        # With refit the tested model was retrained on train + valid; early stopping
        # (best epoch, time to it) is the first model's.
        early = result.before_refit[0] if result.before_refit else result.model
        trained = early.train_result_
        record = {
            "seed": seed,
            "params": sum(p.numel() for p in result.model.network_.parameters()),
            "test": ranking_metrics(result.test),
            "test_before_refit": ranking_metrics(result.before_refit[1]) if result.before_refit else None,
            "refit_seconds": result.model.train_result_.seconds if result.before_refit else None,
            "valid_best": trained.best_metric,
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "seconds_per_epoch": trained.seconds_per_epoch,
            "cpu_seconds_per_epoch": trained.cpu_seconds_per_epoch,
            "valid_seconds_median": statistics.median([r.valid_seconds for r in trained.history if r.metric is not None]
                                                      or [0.0]),
            "seconds_to_best": trained.seconds_to_best,
            "fit_seconds": result.fit_seconds,
            "total_seconds": time.perf_counter() - start,
            "stopped": trained.stopped,
            "history": trained.to_dict()["history"],
        }
        report["runs"].append(record)
        if save is not None:  # e.g. the artifact the serving load test uses
            save_artifact(result.model, save / f"seed{seed}", metrics=result.record())
        print(f"seed {seed}: test ndcg@10 {record['test'].get('ndcg@10', float('nan')):.4f} "
              f"hr@10 {record['test'].get('hr@10', float('nan')):.4f}; best epoch {record['best_epoch']} "
              f"({record['seconds_to_best'] / 60:.1f} min), {record['seconds_per_epoch']:.1f} s/epoch",
              file=sys.stderr, flush=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1))
    runs = report["runs"]
    report["median"] = {key: statistics.median(r[key] for r in runs)
                        for key in ("seconds_per_epoch", "cpu_seconds_per_epoch", "seconds_to_best", "best_epoch")}
    report["median"]["test"] = {k: statistics.median(r["test"][k] for r in runs) for k in runs[0]["test"]}
    if all(r["test_before_refit"] for r in runs):
        report["median"]["test_before_refit"] = {k: statistics.median(r["test_before_refit"][k] for r in runs)
                                                 for k in runs[0]["test_before_refit"]}
    if out is not None:
        out.write_text(json.dumps(report, indent=1))
    return report


def table(files: list[Path]) -> str:
    """One markdown row per seed of the given result files, then the medians."""
    runs = [r for f in files for r in json.loads(Path(f).read_text())["runs"]]
    runs.sort(key=lambda r: r["seed"])
    header = ("| seed | best epoch | epochs run | wall s/epoch | CPU s/epoch | wall min to best | valid NDCG@10 "
              "| test NDCG@10 early-stopped | test NDCG@10 refitted | test HR@10 refitted | test NDCG@20 refitted "
              "| total fit min |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]

    def row(label, r, bold=""):
        early = r["test_before_refit"]["ndcg@10"] if r.get("test_before_refit") else float("nan")
        return (f"| {label} | {r['best_epoch']} | {r['epochs_run']} | {r['seconds_per_epoch']:.1f} | "
                f"{r['cpu_seconds_per_epoch']:.1f} | {r['seconds_to_best'] / 60:.1f} | {r['valid_best']:.4f} | "
                f"{early:.4f} | {bold}{r['test']['ndcg@10']:.4f}{bold} | {r['test']['hr@10']:.4f} | "
                f"{r['test']['ndcg@20']:.4f} | {r['fit_seconds'] / 60:.1f} |")

    for r in runs:
        lines.append(row(str(r["seed"]), r))
    median = {key: statistics.median(r[key] for r in runs)
              for key in ("best_epoch", "epochs_run", "seconds_per_epoch", "cpu_seconds_per_epoch", "seconds_to_best",
                          "valid_best", "fit_seconds")}
    median["test"] = {k: statistics.median(r["test"][k] for r in runs) for k in ("ndcg@10", "hr@10", "ndcg@20")}
    if all(r.get("test_before_refit") for r in runs):
        median["test_before_refit"] = {"ndcg@10": statistics.median(r["test_before_refit"]["ndcg@10"] for r in runs)}
    lines.append(row("**median**", median, bold="**"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "beauty-sasrec.toml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--save", type=Path, default=None, help="write each seed's artifact to SAVE/seedN")
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="print the markdown table of these result files instead of training")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    report = run(args.config, args.seeds, args.set, args.data_dir, args.json, args.save)
    median = report["median"]
    print(json.dumps({"median_test": median["test"], "median_seconds_per_epoch": median["seconds_per_epoch"],
                      "median_seconds_to_best": median["seconds_to_best"]}, indent=1))


if __name__ == "__main__":
    main()
