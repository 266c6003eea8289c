"""Scaling study: SASRec test NDCG@10 on amazon-beauty against parameter count.

    PYTHONPATH=. python benchmarks/sasrec_scaling.py --sizes 16:1:1 32:1:1 128:2:2 \
        --set model.train.max_minutes=30 --json docs/results/beauty-sasrec-scaling.json
    PYTHONPATH=. python benchmarks/sasrec_scaling.py --plot docs/results/beauty-sasrec-scaling*.json \
        docs/results/beauty-sasrec.json --png docs/sasrec-scaling.png

Each size is ``hidden:layers:heads`` on top of ``configs/beauty-sasrec.toml`` (same loss,
dropout, optimiser and early stopping), trained once (seed 0) with the same wall-clock
budget per size (``--set model.train.max_minutes=...``), so on a slow machine larger
models may be stopped by the budget before their best epoch: the table says when.
``--plot`` merges result files (of this script or of ``sasrec_beauty.py``) into one
table (markdown, printed) and a PNG of NDCG@10 against parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sasrec_beauty import ROOT, run  # noqa: E402


def measure(sizes: list[str], overrides: list[str], data_dir: str, out: Path | None) -> list[dict]:
    rows = []
    for spec in sizes:
        hidden, layers, heads = (int(x) for x in spec.split(":"))
        size = [f"model.hidden={hidden}", f"model.layers={layers}", f"model.heads={heads}"]
        report = run(str(ROOT / "configs" / "beauty-sasrec.toml"), [0], size + overrides, data_dir, None)
        record = report["runs"][0]
        rows.append({"size": spec, "hidden": hidden, "layers": layers, "heads": heads, **record})
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"overrides": overrides, "machine": report["machine"], "runs": rows}, indent=1))
    return rows


def plot(files: list[Path], png: Path | None) -> str:
    rows = []
    for file in files:
        report = json.loads(file.read_text())
        for record in report["runs"]:
            if "size" not in record:  # a sasrec_beauty.py run of the main config
                record = {**record, "size": "64:2:1 (main config)"}
            rows.append(record)
    rows.sort(key=lambda r: r["params"])
    # Sizes compare on the early-stopped model (runs made before the refit existed have
    # only that); the refitted model's test NDCG@10 is shown beside it where there is one.
    for r in rows:
        r["early_ndcg"] = (r.get("test_before_refit") or r["test"])["ndcg@10"]
        r["early_hr"] = (r.get("test_before_refit") or r["test"])["hr@10"]
        r["refit_ndcg"] = r["test"]["ndcg@10"] if r.get("test_before_refit") else None
    lines = ["| size (hidden:layers:heads) | parameters | seed | valid NDCG@10 | test NDCG@10 | test HR@10 "
             "| test NDCG@10 after refit | best epoch | epochs run | stopped by | wall min to best | CPU s/epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        refit = "-" if r["refit_ndcg"] is None else f"{r['refit_ndcg']:.4f}"
        lines.append(f"| {r['size']} | {r['params']:,} | {r['seed']} | {r['valid_best']:.4f} | {r['early_ndcg']:.4f} | "
                     f"{r['early_hr']:.4f} | {refit} | {r['best_epoch']} | {r['epochs_run']} | {r['stopped']} | "
                     f"{r['seconds_to_best'] / 60:.1f} | {r.get('cpu_seconds_per_epoch', float('nan')):.1f} |")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["params"] for r in rows], [r["early_ndcg"] for r in rows], "o-", label="early-stopped model")
        for r in rows:
            ax.annotate(r["size"].split(" ")[0], (r["params"], r["early_ndcg"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.axhline(0.0446, color="grey", ls="--", lw=1, label="EASE (0.0446)")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test NDCG@10 (full ranking)")
        ax.set_title("SASRec on amazon-beauty: NDCG@10 vs size")
        ax.legend()
        fig.tight_layout()
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=120)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=[], help="hidden:layers:heads, e.g. 32:1:1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, nargs="*", default=None, help="result files to tabulate and plot")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = parser.parse_args()
    if args.sizes:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        measure(args.sizes, args.set, args.data_dir, args.json)
    if args.plot:
        print(plot(args.plot, args.png))


if __name__ == "__main__":
    main()
