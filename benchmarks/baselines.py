"""Every classic baseline on the two protocols of the core issue, plus EASE speed.

    python benchmarks/baselines.py            # both protocols and the speed check
    python benchmarks/baselines.py --only ml100k

Protocols come from configs/ml100k-baselines.toml and configs/beauty-baselines.toml;
results go to the "baselines" and "ease-speed" sections of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, data_dir, machine, markdown_table, median_time, update_section  # noqa: E402

from recloop.config import load_config  # noqa: E402
from recloop.evaluate import Evaluator  # noqa: E402
from recloop.experiment import prepare_data, run_model  # noqa: E402

PROTOCOLS = {"ml100k": "configs/ml100k-baselines.toml", "beauty": "configs/beauty-baselines.toml"}


def run_protocol(config_path: str) -> tuple[str, list]:
    config = load_config(ROOT / config_path)
    data = prepare_data(config, data_dir=data_dir(), download=False)
    k = 10
    names = ["ndcg", "hr", "recall", "precision", "map", "mrr"]
    rows = []
    for spec in config.models:
        run = run_model(spec, data, config)
        summary = run.test.summary()
        interval = run.test.interval(f"ndcg@{k}")
        chosen = ", ".join(f"{key}={value}" for key, value in run.params.items()) or "-"
        rows.append([spec.display_name, chosen] + [summary[f"{m}@{k}"] for m in names]
                    + [f"±{interval.half_width:.4f}", summary[f"coverage@{k}"], run.fit_seconds, run.test.seconds])
        print(f"{config.name} {spec.display_name}: ndcg@10 {summary['ndcg@10']:.4f} fit {run.fit_seconds:.1f}s",
              flush=True)
    header = ["model", "params"] + [f"{m}@{k}" for m in names] + ["ndcg 95% CI", f"coverage@{k}", "fit s", "eval s"]
    return config.name, [header, rows]


def ease_speed(repeats: int = 3) -> str:
    """EASE on amazon-beauty: float32 Cholesky fit vs a float64 NumPy inverse (the
    baseline), and the full-ranking evaluation of all users."""
    import torch

    from recloop.models import EASE

    config = load_config(ROOT / "configs/beauty-ease.toml")
    data = prepare_data(config, data_dir=data_dir(), download=False)
    train = data.split.history("test")
    fit_time, fit_runs = median_time(lambda: EASE(l2=50.0).fit(train), repeats)

    def numpy_float64_fit():
        x = train.to_csr()
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += 50.0
        p = np.linalg.inv(gram)
        return -p / np.diag(p)
    base_time, base_runs = median_time(numpy_float64_fit, 1)
    model = EASE(l2=50.0).fit(train)
    evaluator = Evaluator(config.evaluation)
    eval_time, eval_runs = median_time(
        lambda: evaluator.evaluate(model, data.split.test, data.split.history("test")), repeats)
    result = evaluator.evaluate(model, data.split.test, data.split.history("test"))
    rows = [
        ["EASE fit, float32 Cholesky (recloop)", f"{fit_time:.1f}", ", ".join(f"{r:.1f}" for r in fit_runs)],
        ["EASE fit, float64 numpy.linalg.inv (baseline)", f"{base_time:.1f}", ", ".join(f"{r:.1f}" for r in base_runs)],
        ["full-ranking evaluation, 22,363 users x 12,101 items, K=5,10,20", f"{eval_time:.1f}",
         ", ".join(f"{r:.1f}" for r in eval_runs)],
    ]
    return (f"EASE (l2=50) on amazon-beauty train+valid, {machine()}, torch threads {torch.get_num_threads()}.\n\n"
            + markdown_table(["step", "median s", "runs s"], rows)
            + f"\n\nFit speed-up over the float64 baseline: **{base_time / fit_time:.1f}x**. "
            f"Test NDCG@10 of this model: {result['ndcg@10']:.4f}.\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=[*PROTOCOLS, "speed"], default=None)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    sections = []
    for key, path in PROTOCOLS.items():
        if args.only not in (None, key):
            continue
        name, (header, rows) = run_protocol(path)
        sections.append(f"### {name} (`{path}`)\n\n" + markdown_table(header, rows))
    if sections:
        update_section("baselines", "## Classic baselines\n\n"
                       f"Command: `python benchmarks/baselines.py` ({started}; {machine()}). "
                       "Full ranking over all items, known items masked; test metrics; hyperparameters "
                       "chosen on validation where the config gives a grid, then refitted on train+valid.\n\n"
                       + "\n\n".join(sections))
    if args.only in (None, "speed"):
        update_section("ease-speed", "## EASE speed on amazon-beauty\n\n"
                       "Command: `python benchmarks/baselines.py --only speed`.\n\n" + ease_speed())


if __name__ == "__main__":
    main()
