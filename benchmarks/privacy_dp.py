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


def report(folders: list[Path]) -> None:
    """The ``privacy-dp`` section of docs/privacy.md and its plot, from the runs saved in
    ``folders`` (one series per config variant: its folder and ``--set`` overrides)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            record = json.loads(path.read_text())
            record.setdefault("series", " ".join(record["overrides"])
                              or "as committed: no item ids, 16 targets, 64 negatives, lr 1e-2")
            runs.append(record)
    runs.sort(key=lambda r: (r["series"], float(r["target_epsilon"])))
    popular = popularity()
    rows = []
    for r in runs:
        p = r["privacy"]
        rows.append([r["series"], r["target_epsilon"], "inf" if math.isinf(p["epsilon"]) else f"{p['epsilon']:.2f}",
                     f"{p['noise_multiplier']:.3f}", *(r[m] for m in METRICS),
                     f"{r['ndcg@10'] / NON_PRIVATE_NDCG:.0%}", r["steps"], f"{r['fit_seconds']:.0f}"])
    rows.append(["popularity (reference)", "0", "0", "-", *(popular[m] for m in METRICS),
                 f"{popular['ndcg@10'] / NON_PRIVATE_NDCG:.0%}", "-", "-"])
    rows.append(["two-tower, not private (reference)", "-", "-", "-", NON_PRIVATE_NDCG, "-", "-", "-", "100%", "-", "-"])
    table = markdown_table(["config variant", "target epsilon", "spent epsilon (delta = 1/943)", "noise multiplier",
                            *METRICS, "of non-private ndcg@10", "noisy steps", "fit s"], rows)
    sources = ", ".join(f"`{f}`" for f in folders)
    text = (f"Command: `nice -n 10 python benchmarks/privacy_dp.py --epsilons E ... [--set KEY=VALUE] --results DIR`, "
            f"then `python benchmarks/privacy_dp.py --report --results {' '.join(str(f) for f in folders)}` "
            f"(runs in {sources}; {runs[0]['machine'] if runs else '?'}). Non-private two-tower: {NON_PRIVATE_NDCG} "
            "(configs/ml100k-twotower.toml, median of 3 seeds, docs/benchmarks.md).\n\n"
            + table + "\n\n![NDCG@10 against epsilon](privacy-dp.png)")
    update_section("privacy-dp", text, DOC)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    infinite_x = 32.0  # where epsilon = inf is drawn
    for n, series in enumerate(dict.fromkeys(r["series"] for r in runs)):
        points = [r for r in runs if r["series"] == series]
        xs = [infinite_x if r["target_epsilon"] == "inf" else float(r["target_epsilon"]) for r in points]
        ax.plot(xs, [r["ndcg@10"] for r in points], "o-", color=f"C{n}", label=series, ms=5)
    ax.axhline(NON_PRIVATE_NDCG, color="k", ls="--", lw=1, label="two-tower, not private")
    ax.axhline(0.7 * NON_PRIVATE_NDCG, color="k", ls=":", lw=0.8, label="70% of not private")
    ax.axhline(popular["ndcg@10"], color="gray", ls="--", lw=1, label="popularity")
    ax.set_xscale("log", base=2)
    ticks = [1, 2, 4, 8, infinite_x]
    ax.set_xticks(ticks, ["1", "2", "4", "8", "inf\n(clip only)"])
    ax.set_xlabel("epsilon (delta = 1/#users), per user")
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title("ml-100k, two-tower trained with DP-SGD (Opacus)")
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", nargs="*", type=float, default=[])
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS],
                        help="folder(s) of the per-epsilon JSON files (runs write to the first)")
    args = parser.parse_args()
    if args.epsilons:
        run(args.epsilons, args.overrides, args.results[0])
    if args.report:
        report(args.results)


if __name__ == "__main__":
    main()
