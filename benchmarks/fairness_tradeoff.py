"""Exposure-aware re-ranking: NDCG@10 against tail-item exposure share and exposure Gini.

    PYTHONPATH=. python benchmarks/fairness_tradeoff.py configs/fairness-ml100k.toml \
        configs/fairness-beauty.toml --json docs/results/fairness-tradeoff.json \
        --plot docs/fairness-tradeoff.png

For each config and each of its models: fit on the training split (the config says
``refit = false``; SASRec stops early on validation), take every user's best
``[rerank] candidates`` items once on the validation split (history: train) and once on
the test split (history: train + valid), then re-rank them with each setting of the
sweep through :class:`recloop.rank.fairness.FairRanker`, the re-ranker the service and
``recloop evaluate`` use, and measure with :meth:`Evaluator.evaluate_candidates`.

Sweep: Steck calibration of the head/tail popularity mix (lambda), the exposure quota
on the tail (min share of the top 10), and, where items have genres, calibration of
the genre mix. Tail = items outside the 20% most popular of training; "tail share" is
``long_tail@10`` (the mean share of tail items in the lists); Gini is ``gini@10``.

Runs can be split (one dataset per process) and merged with ``--from-json A.json B.json``
(no configs: only the plot and the table).

Two choices on validation, each reported on test against the unconstrained model:
``target``: the best validation NDCG@10 among the settings whose validation tail share
is at least ``--tail-ratio`` (2) times the unconstrained one's (the issue's target,
reached at the least cost); ``most tail``: the largest validation tail share whose
validation NDCG@10 is within ``--max-loss`` (5%) of the unconstrained model's. Writes a JSON of
every point and, with ``--doc``, the section ``fairness-tradeoff`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import data_dir, machine, markdown_table, update_section

from recloop.config import load_config
from recloop.evaluate.evaluator import Evaluator
from recloop.experiment import build_fair_ranker, build_model, fit, prepare_data
from recloop.rank.fairness import FairnessConfig

CALIBRATION = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
QUOTA = (0.1, 0.2, 0.3, 0.4, 0.5)


def settings(has_genre: bool) -> list[tuple[str, float, FairnessConfig]]:
    out = [("none", 0.0, FairnessConfig())]
    out += [("calibrated popularity", lam, FairnessConfig(calibration=lam, calibration_feature="popularity"))
            for lam in CALIBRATION]
    out += [("tail quota", share, FairnessConfig(min_share={"tail": share})) for share in QUOTA]
    if has_genre:
        out += [("calibrated genre", lam, FairnessConfig(calibration=lam, calibration_feature="genre"))
                for lam in (0.2, 0.6, 0.9, 0.99)]
    return out


def measure(evaluator, found, target, history, train, ranker) -> dict:
    result = evaluator.evaluate_candidates(found, target, history, train, rerank=ranker)
    summary = result.summary()
    keys = ("ndcg@10", "hr@10", "long_tail@10", "gini@10", "coverage@10", "calibration@10", "popularity@10")
    return {key: float(summary[key]) for key in keys if key in summary}


def choose(points: list[dict], rule: str, max_loss: float, tail_ratio: float) -> dict:
    """The setting a rule picks on validation (the unconstrained one if none qualifies)."""
    base, others = points[0]["valid"], points[1:]
    if rule == "target":
        eligible = [p for p in others if p["valid"]["long_tail@10"] >= tail_ratio * base["long_tail@10"]]
        return max(eligible, key=lambda p: p["valid"]["ndcg@10"]) if eligible else points[0]
    eligible = [p for p in others if p["valid"]["ndcg@10"] >= (1.0 - max_loss) * base["ndcg@10"]]
    return max(eligible, key=lambda p: p["valid"]["long_tail@10"]) if eligible else points[0]


def run_config(path: str, max_loss: float, tail_ratio: float, only: list[str] | None) -> list[dict]:
    config = load_config(path)
    data = prepare_data(config, data_dir=data_dir(), download=False)
    parts, dataset = data.split, data.dataset
    has_genre = dataset.item_features is not None and "genre" in dataset.item_features.categorical
    evaluator = Evaluator(config.evaluation, item_features=dataset.item_features)
    k = max(config.evaluation.k)
    rows = []
    for spec in config.models:
        if only and spec.name not in only:
            continue
        start = time.perf_counter()
        model = build_model(spec)
        fit_seconds = fit(model, data, parts.train, parts.valid if model.uses_validation else None)
        print(f"{config.name} {spec.name}: fitted in {fit_seconds:.0f}s", file=sys.stderr, flush=True)
        stages = {"valid": (parts.valid, parts.train), "test": (parts.test, parts.history("test"))}
        found = {stage: evaluator.candidates(model, target, history, config.rerank.candidates)
                 for stage, (target, history) in stages.items()}
        points = []
        for family, value, fairness in settings(has_genre):
            ranker = build_fair_ranker(fairness, k, dataset, parts.train).rerank_users if fairness.enabled else None
            point = {"family": family, "value": value}
            for stage, (target, history) in stages.items():
                point[stage] = measure(evaluator, found[stage], target, history, parts.train, ranker)
            points.append(point)
            print(f"  {family} {value}: valid ndcg {point['valid']['ndcg@10']:.4f} tail "
                  f"{point['valid']['long_tail@10']:.4f} | test ndcg {point['test']['ndcg@10']:.4f} tail "
                  f"{point['test']['long_tail@10']:.4f} gini {point['test']['gini@10']:.4f}",
                  file=sys.stderr, flush=True)
        base_test = points[0]["test"]
        for rule in ("target", "most tail"):
            chosen = choose(points, rule, max_loss, tail_ratio)
            test = chosen["test"]
            loss = 1.0 - test["ndcg@10"] / base_test["ndcg@10"]
            ratio = test["long_tail@10"] / max(base_test["long_tail@10"], 1e-12)
            rows.append({
                "config": path, "dataset": dataset.name, "model": spec.name, "rule": rule,
                "fit_seconds": fit_seconds, "seconds": time.perf_counter() - start, "points": points,
                "chosen": {"family": chosen["family"], "value": chosen["value"]},
                "test_ndcg_relative_loss": loss, "test_tail_share_ratio": ratio,
                "target_met": loss <= max_loss and ratio >= tail_ratio,
            })
        del model
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row["rule"] == "target"]  # one panel per model, not per rule
    figure, axes = plt.subplots(2, len(rows), figsize=(4.2 * len(rows), 7), squeeze=False)
    for column, row in enumerate(rows):
        for family in dict.fromkeys(p["family"] for p in row["points"]):
            points = [p for p in row["points"] if p["family"] in (family, "none")]
            for line, metric in enumerate(("long_tail@10", "gini@10")):
                axes[line][column].plot([p["test"][metric] for p in points], [p["test"]["ndcg@10"] for p in points],
                                        marker="o", markersize=3, label=family)
        base = row["points"][0]["test"]["ndcg@10"]
        for line, metric in enumerate(("tail-item exposure share@10", "exposure Gini@10")):
            ax = axes[line][column]
            ax.axhline(0.95 * base, color="gray", linestyle="--", linewidth=0.8)
            ax.set_xlabel(f"{metric} (test)")
            ax.set_ylabel("NDCG@10 (test)")
            ax.set_title(f"{row['dataset']} {row['model']}", fontsize="small")
        axes[0][column].legend(fontsize="x-small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def markdown(rows: list[dict], command: str, load: tuple, where: str) -> str:
    table = []
    for row in rows:
        base = row["points"][0]["test"]
        chosen = next(p for p in row["points"] if (p["family"], p["value"]) ==
                      (row["chosen"]["family"], row["chosen"]["value"]))["test"]
        table.append([row["dataset"], row["model"], row["rule"], f"{row['chosen']['family']} {row['chosen']['value']}",
                      base["ndcg@10"], chosen["ndcg@10"], f"{-100 * row['test_ndcg_relative_loss']:+.1f}%",
                      base["long_tail@10"], chosen["long_tail@10"], f"{row['test_tail_share_ratio']:.1f}x",
                      base["gini@10"], chosen["gini@10"], "yes" if row["target_met"] else "no"])
    header = ["dataset", "model", "rule", "chosen on validation", "NDCG@10 none", "NDCG@10 chosen", "change",
              "tail share none", "tail share chosen", "ratio", "Gini none", "Gini chosen", "target met"]
    return ("## Exposure-aware re-ranking: NDCG@10 against tail exposure\n\n"
            f"Written by `{command}` ({where}; load average {load[0]:.1f} at start, other jobs sharing the "
            "2 cores). Test split. Settings are chosen on validation: `target` = the best NDCG@10 with at "
            "least 2x the unconstrained tail share, `most tail` = the largest tail share within 5% relative "
            "NDCG@10 loss. Target: <= 5% loss and >= 2x the unconstrained tail share on test. Tail = items "
            "outside the 20% most popular of training; tail share = `long_tail@10`; Gini = `gini@10` over all "
            "items. Every point of the curves is in `docs/results/fairness-tradeoff.json`, the plot is "
            "`docs/fairness-tradeoff.png`; see docs/fairness.md.\n\n" + markdown_table(header, table) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*")
    parser.add_argument("--from-json", nargs="*", default=[], metavar="JSON",
                        help="also take the rows of earlier runs' JSON files (e.g. one run per dataset), "
                             "then plot and tabulate them all")
    parser.add_argument("--max-loss", type=float, default=0.05, help="relative NDCG@10 loss allowed (0.05)")
    parser.add_argument("--tail-ratio", type=float, default=2.0, help="tail share multiple sought (2)")
    parser.add_argument("--models", nargs="*", default=None, help="only these model names")
    parser.add_argument("--json", default="docs/results/fairness-tradeoff.json")
    parser.add_argument("--plot", default="docs/fairness-tradeoff.png")
    parser.add_argument("--doc", action="store_true", help="rewrite the section in docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a paragraph added under the table (e.g. how merged runs were made)")
    args = parser.parse_args()
    load = os.getloadavg()
    rows, machines, loads = [], [], []
    for path in args.from_json:
        earlier = json.loads(Path(path).read_text())
        rows += earlier["rows"]
        machines.append(earlier["machine"])
        loads.append(tuple(earlier["load_average_at_start"]))
    for path in args.configs:
        rows += run_config(path, args.max_loss, args.tail_ratio, args.models)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine(), "load_average_at_start": load,
                                               "rows": rows}, indent=1))
    if args.configs or not machines:
        machines.append(machine())
        loads.append(load)
    where = "; ".join(dict.fromkeys(machines))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": where, "load_average_at_start": max(loads), "rows": rows},
                                          indent=1))
    plot(rows, Path(args.plot))
    command = "PYTHONPATH=. python benchmarks/fairness_tradeoff.py " + " ".join(sys.argv[1:])
    text = markdown(rows, command, max(loads), where) + (f"\n{args.note}\n" if args.note else "")
    print(text)
    if args.doc:
        update_section("fairness-tradeoff", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
