"""NDCG@10 of the two-tower model trained with DP-SGD (Opacus) against epsilon, on
ml-100k (MS-Recommenders protocol), beside popularity: ``docs/privacy.md``.

    PYTHONPATH=. python benchmarks/privacy_dp.py --epsilons inf 8 4 2 1
    PYTHONPATH=. python benchmarks/privacy_dp.py --report   # table and plot from the saved runs

Each epsilon is one fit of ``configs/ml100k-twotower-dp.toml`` with
``model.train.privacy.epsilon=E`` (``inf``: per-user clipping, no noise), the accountant's
spent epsilon at delta = 1/#users reported beside the target. Runs are saved one JSON file
per epsilon under ``docs/results/privacy-dp/``, so several processes can share a sweep;
``--report`` writes the ``privacy-dp`` section of ``docs/privacy.md`` and
``docs/privacy-dp.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, data_dir, machine, markdown_table, update_section

from recloop.config import load_config
from recloop.experiment import prepare_data, run_model

CONFIG = "configs/ml100k-twotower-dp.toml"
REFERENCE = "configs/ml100k-compare.toml"  # popularity on the same 75/25 split
RESULTS = ROOT / "docs" / "results" / "privacy-dp"
DOC = ROOT / "docs" / "privacy.md"
PLOT = ROOT / "docs" / "privacy-dp.png"
METRICS = ["ndcg@10", "precision@10", "recall@10", "map@10"]
#: The non-private two-tower of configs/ml100k-twotower.toml (in-batch softmax, early
#: stopped; median of 3 seeds, docs/benchmarks.md "Neural models on ml-100k").
NON_PRIVATE_NDCG = 0.4620


def _name(epsilon: float) -> str:
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def run(epsilons: list[float], overrides: list[str], results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    data = prepare_data(load_config(ROOT / CONFIG), data_dir=data_dir(), download=False)
    for epsilon in epsilons:
        config = load_config(ROOT / CONFIG, [f"model.train.privacy.epsilon={_name(epsilon)}", *overrides])
        started = time.time()
        result = run_model(config.model, data, config)
        trained = result.model.train_result_
        summary = result.test.summary()
        record = {"target_epsilon": _name(epsilon), **{m: summary[m] for m in METRICS},
                  "privacy": trained.privacy, "epochs": len(trained.history), "steps": trained.steps,
                  "seconds_per_epoch": trained.seconds_per_epoch, "fit_seconds": result.fit_seconds,
                  "wall_seconds": time.time() - started, "overrides": overrides, "machine": machine()}
        (results / f"eps-{_name(epsilon)}.json").write_text(json.dumps(record, indent=2))
        print(f"epsilon {_name(epsilon)}: ndcg@10 {summary['ndcg@10']:.4f}, spent {trained.privacy['epsilon']:.3f}, "
              f"sigma {trained.privacy['noise_multiplier']:.3f}, fit {result.fit_seconds:.0f}s", flush=True)


def popularity() -> dict:
    config = load_config(ROOT / REFERENCE)
    data = prepare_data(config, data_dir=data_dir(), download=False)
    spec = next(s for s in config.models if s.name == "popular")
    summary = run_model(spec, data, config).test.summary()
    return {m: summary[m] for m in METRICS}


def report() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in RESULTS.glob("eps-*.json")]
    runs.sort(key=lambda r: float(r["target_epsilon"]))
    popular = popularity()
    rows = []
    for r in runs:
        p = r["privacy"]
        rows.append([r["target_epsilon"], "inf" if math.isinf(p["epsilon"]) else f"{p['epsilon']:.2f}",
                     f"{p['noise_multiplier']:.3f}", *(r[m] for m in METRICS),
                     f"{r['ndcg@10'] / NON_PRIVATE_NDCG:.0%}", r["steps"], f"{r['fit_seconds']:.0f}"])
    rows.append(["popularity (reference)", "0", "-", *(popular[m] for m in METRICS),
                 f"{popular['ndcg@10'] / NON_PRIVATE_NDCG:.0%}", "-", "-"])
    rows.append(["two-tower, not private (reference)", "-", "-", NON_PRIVATE_NDCG, "-", "-", "-", "100%", "-", "-"])
    first = runs[0] if runs else {}
    table = markdown_table(["target epsilon", "spent epsilon (delta = 1/943)", "noise multiplier", *METRICS,
                            "of non-private ndcg@10", "noisy steps", "fit s"], rows)
    text = (f"Command: `nice -n 10 python benchmarks/privacy_dp.py --epsilons E ...` then `--report` "
            f"({first.get('machine', '?')}).\n"
            f"Config `{CONFIG}`{' with ' + ' '.join(first['overrides']) if first.get('overrides') else ''}; "
            f"non-private two-tower: `{NON_PRIVATE_NDCG}` (configs/ml100k-twotower.toml, median of 3 seeds, "
            "docs/benchmarks.md).\n\n" + table + "\n\n![NDCG@10 against epsilon](privacy-dp.png)")
    update_section("privacy-dp", text, DOC)
    finite = [r for r in runs if r["target_epsilon"] != "inf"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([float(r["target_epsilon"]) for r in finite], [r["ndcg@10"] for r in finite], "o-",
            label="two-tower, DP-SGD (per user)")
    for r in runs:
        if r["target_epsilon"] == "inf":
            ax.axhline(r["ndcg@10"], color="C0", ls=":", label="same training, clipping only (epsilon = inf)")
    ax.axhline(NON_PRIVATE_NDCG, color="C2", ls="--", label="two-tower, not private")
    ax.axhline(0.7 * NON_PRIVATE_NDCG, color="C2", ls=":", lw=0.8, label="70% of not private")
    ax.axhline(popular["ndcg@10"], color="C3", ls="--", label="popularity")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("epsilon (delta = 1/#users)")
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title("ml-100k, two-tower with DP-SGD")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", nargs="*", type=float, default=[])
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the per-epsilon JSON files")
    args = parser.parse_args()
    if args.epsilons:
        run(args.epsilons, args.overrides, args.results)
    if args.report:
        report()


if __name__ == "__main__":
    main()
