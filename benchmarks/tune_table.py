"""Tabulate ``recloop tune`` outputs: one row per study, from the ``tune.json`` each writes.

    PYTHONPATH=. python benchmarks/tune_table.py runs/tune/ml100k-als/tune.json runs/tune/ml100k-ease/tune.json

Columns: the study, its trials (complete / pruned / failed), the validation metric of the
first trial (the config's own settings, when the study started from them) and of the best
trial, the best trial's searched values, the test metrics of the best config (measured
once, after the search), the tuning and final minutes. ``--json`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(path: Path) -> dict:
    report = json.loads(path.read_text())
    metric = report["metric"]
    trials = report["trials"]
    first = trials[0] if trials and trials[0].get("from_config") else None
    test = report["test"]
    return {
        "study": report["study_name"], "file": str(path), "metric": metric, "trials": len(trials),
        "counts": report["counts"],
        "config_valid": None if first is None else first["value"],
        "config_params": None if first is None else first["params"],
        "best_valid": report["best"][f"valid_{metric}"], "best_trial": report["best"]["trial"],
        "best_params": report["best"]["params"],
        "test": test["metrics"], "test_before_refit": test.get("test_before_refit"),
        "refit": report["best_config"]["refit"],
        "trial_minutes": sum(t["seconds"] or 0 for t in trials) / 60,
        "final_minutes": report["final_seconds"] / 60,
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def markdown(rows: list[dict], metrics: list[str]) -> str:
    metric = rows[0]["metric"]
    head = (f"| study | trials (complete/pruned/failed) | valid {metric}, config's settings | valid {metric}, best "
            "| best values | " + " | ".join(f"test {m}" for m in metrics) + " | trial min | final min |")
    lines = [head, "|" + "---|" * (7 + len(metrics))]
    for r in rows:
        c = r["counts"]
        counts = f"{r['trials']} ({c.get('complete', 0)}/{c.get('pruned', 0)}/{c.get('fail', 0)})"
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in r["best_params"].items())
        tests = " | ".join(_fmt(r["test"].get(m)) for m in metrics)
        lines.append(f"| {r['study']} | {counts} | {_fmt(r['config_valid'])} | {_fmt(r['best_valid'])} "
                     f"(trial {r['best_trial']}) | {values} | {tests} | {r['trial_minutes']:.1f} | "
                     f"{r['final_minutes']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+", help="tune.json files written by `recloop tune`")
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10", "hr@10"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [row(f) for f in args.files]
    print(markdown(rows, args.metrics))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
