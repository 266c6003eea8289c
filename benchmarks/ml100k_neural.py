"""NeuMF, MLP and two-tower beside EASE and popularity on ml-100k (MS-Recommenders
protocol), each neural model trained with several seeds; median and per-seed NDCG@10.

    PYTHONPATH=. python benchmarks/ml100k_neural.py --seeds 0 1 2 --json docs/results/ml100k-neural.json

The neural configs (``configs/ml100k-{neumf,mlp,twotower}.toml``) carve 5% of each user's
training interactions out for early stopping; their test set is exactly the one of
``configs/ml100k-ease.toml``. Writes the table to the ``ml100k-neural`` section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, data_dir, machine, markdown_table, update_section

from recloop.config import load_config
from recloop.experiment import prepare_data, run_model

CONFIGS = {"NeuMF": "configs/ml100k-neumf.toml", "MLP": "configs/ml100k-mlp.toml",
           "two-tower": "configs/ml100k-twotower.toml"}
REFERENCE = "configs/ml100k-compare.toml"  # popularity and EASE on the plain 75/25 split
METRICS = ["ndcg@10", "precision@10", "recall@10", "map@10"]


def run_config(path: str, seeds: list[int], threads: int) -> list[dict]:
    runs = []
    data = prepare_data(load_config(ROOT / path), data_dir=data_dir(), download=False)  # the seeds share the split
    for seed in seeds:
        overrides = [f"model.train.seed={seed}", f"model.train.num_threads={threads}", "model.train.progress=false"]
        config = load_config(ROOT / path, overrides)
        run = run_model(config.model, data, config)
        trained = run.model.train_result_
        summary = run.test.summary()
        runs.append({"seed": seed, **{m: summary[m] for m in METRICS}, "best_epoch": trained.best_epoch,
                     "epochs_run": len(trained.history), "seconds_per_epoch": trained.seconds_per_epoch,
                     "fit_seconds": run.fit_seconds})
        print(f"{path} seed {seed}: ndcg@10 {summary['ndcg@10']:.4f}, fit {run.fit_seconds:.0f}s", flush=True)
    return runs


def references() -> list[list]:
    config = load_config(ROOT / REFERENCE)
    data = prepare_data(config, data_dir=data_dir(), download=False)
    rows = []
    for spec in config.models:
        if spec.name not in ("popular", "ease"):
            continue
        run = run_model(spec, data, config)
        summary = run.test.summary()
        rows.append([f"{spec.display_name} (reference)", *(summary[m] for m in METRICS), "-", "-", "-",
                     run.fit_seconds])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {name: run_config(CONFIGS[name], args.seeds, args.threads) for name in args.models}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    rows = references()
    for name, runs in results.items():
        median = {m: statistics.median(r[m] for r in runs) for m in METRICS}
        rows.append([f"{name} (median of {len(runs)} seeds)"] + [median[m] for m in METRICS]
                    + [", ".join(f"{r['ndcg@10']:.4f}" for r in runs),
                       statistics.median(r["best_epoch"] for r in runs),
                       statistics.median(r["seconds_per_epoch"] for r in runs),
                       statistics.median(r["fit_seconds"] for r in runs)])
    header = ["model", *METRICS, "ndcg@10 per seed", "best epoch", "s/epoch", "fit s"]
    update_section("ml100k-neural", f"""## Neural models on ml-100k (MS-Recommenders protocol)

Command: `python benchmarks/ml100k_neural.py --seeds {' '.join(map(str, args.seeds))}` ({machine()}).
Per-user random 75/25 split, seed 42, full ranking with training items masked. The neural
configs carve 5% of each user's training part out for early stopping (same test rows).

{markdown_table(header, rows)}
""")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
