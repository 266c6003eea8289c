"""Transfer across domains: a text-based SASRec trained on one catalog (amazon-beauty),
used on another (amazon-scientific) zero-shot, fine-tuned on a fraction of its training
users, against the same model trained from scratch on the same users.

    PYTHONPATH=. python benchmarks/text_transfer.py configs/scientific-sasrec-text.toml \
        --source runs/beauty-text/seed0 --fractions 0.1 1.0 --seeds 0 --json runs/transfer.json

``--source`` is a saved sasrec model with ``item_repr = "text"`` and the same sizes (e.g.
``benchmarks/sasrec_beauty.py configs/beauty-sasrec-text.toml --save DIR``). The target
config's model is run with ``item_repr = "text"`` (no per-item parameter, so every weight
transfers). For a fraction ``f`` a seeded ``f`` of the users with training items is kept:
their training items train the model and their validation items stop it early; every
user's test item is ranked (all items, history = train + valid of every user), so every
row of the table is tested on the same 8,317 users. No refit on train + valid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from recloop.config import load_config
from recloop.evaluate.evaluator import Evaluator
from recloop.experiment import build_model, fit, prepare_data
from recloop.utils import make_rng

ROOT = Path(__file__).resolve().parents[1]


def keep_users(log, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the users with interactions in ``log`` (sorted)."""
    users = log.active_users()
    if fraction >= 1:
        return users
    return np.sort(make_rng(seed).choice(users, size=max(1, round(fraction * len(users))), replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--source", required=True, help="a saved text sasrec model (folder)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--modes", nargs="+", default=["zero-shot", "scratch", "fine-tuned"],
                        help="among zero-shot, scratch, fine-tuned, fine-tuned-frozen (transformer kept fixed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = parser.parse_args()
    overrides = [*args.set, "model.item_repr=text", "model.train.progress=false", "refit=false"]
    base = load_config(args.config, overrides)
    data = prepare_data(base, data_dir=args.data_dir, download=False)
    parts, features = data.split, data.dataset.item_features
    evaluator = Evaluator(base.evaluation)
    history = parts.history("test")
    report = {"config": args.config, "source": args.source, "overrides": overrides,
              "load_average_at_start": os.getloadavg(), "runs": []}

    def record(mode, fraction, seed, model, seconds, users):
        test = evaluator.evaluate(model, parts.test, history, train=parts.train)
        trained = getattr(model, "train_result_", None)
        row = {"mode": mode, "fraction": fraction, "seed": seed, "train_users": int(users),
               "test": {k: v for k, v in test.summary().items() if "@" in k}, "fit_seconds": seconds,
               "best_epoch": None if trained is None else trained.best_epoch,
               "valid_best": None if trained is None else trained.best_metric}
        report["runs"].append(row)
        print(f"{mode} {fraction:.0%} seed {seed}: test ndcg@10 {row['test']['ndcg@10']:.4f} "
              f"(best epoch {row['best_epoch']}, {seconds:.0f} s)", file=sys.stderr, flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))

    if "zero-shot" in args.modes:
        config = load_config(args.config, [*overrides, f"model.init_from={args.source}"])
        start = time.perf_counter()
        model = build_model(config.model).fit_zero_shot(parts.train, item_features=features)
        record("zero-shot", 0.0, 0, model, time.perf_counter() - start, 0)
    for fraction in args.fractions:
        for seed in args.seeds:
            users = keep_users(parts.train, fraction, seed)
            train = parts.train.select(np.isin(parts.train.user_idx, users))
            valid = parts.valid.select(np.isin(parts.valid.user_idx, users))
            for mode in [m for m in args.modes if m != "zero-shot"]:
                extra = [f"model.init_from={args.source}"] if mode != "scratch" else []
                if mode == "fine-tuned-frozen":  # UniSRec's parameter-efficient fine-tuning
                    extra.append("model.freeze_encoder=true")
                config = load_config(args.config, [*overrides, *extra, f"model.train.seed={seed}"])
                model = build_model(config.model)
                seconds = fit(model, data, train, valid)
                record(mode, fraction, seed, model, seconds, len(users))


if __name__ == "__main__":
    main()
