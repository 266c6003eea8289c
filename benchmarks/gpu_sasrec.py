"""SASRec on amazon-beauty on a GPU with mixed precision: epoch time and sequences/s.

    PYTHONPATH=. python benchmarks/gpu_sasrec.py --device cuda --epochs 30 --json gpu-sasrec.json
    PYTHONPATH=. python benchmarks/gpu_sasrec.py --device cpu --epochs 1    # the same script on CPU

Trains ``configs/beauty-sasrec.toml`` (or ``--config``) for a fixed number of epochs with
validation every ``--eval-every`` epochs (early stopping still applies), then evaluates
the best epoch on test, and reports: seconds per training epoch (median), training
sequences/s and next-item positions/s, validation seconds, time to the best epoch and
the test metrics. ``--amp`` picks ``bf16``/``fp16``/``off`` (mixed precision is used
on CUDA only). ``--set key=value`` overrides config fields like the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from recloop.config import load_config
from recloop.experiment import prepare_data, run_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "beauty-sasrec.toml"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = parser.parse_args()

    overrides = [f"model.train.device={args.device}", f"model.train.epochs={args.epochs}",
                 f"model.train.eval_every={args.eval_every}", f"model.train.seed={args.seed}",
                 "model.train.progress=false", f"model.train.amp={'false' if args.amp == 'off' else 'true'}"]
    if args.amp != "off":
        overrides.append(f"model.train.amp_dtype={args.amp}")
    if args.batch_size:
        overrides.append(f"model.train.batch_size={args.batch_size}")
    config = load_config(args.config, overrides + args.set)
    data = prepare_data(config, data_dir=args.data_dir, download=False)
    if config.model.params.get("train", {}).get("device", "auto").startswith("cuda") or \
            (args.device == "auto" and torch.cuda.is_available()):
        torch.backends.cuda.matmul.allow_tf32 = True

    start = time.perf_counter()
    run = run_model(config.model, data, config)
    wall = time.perf_counter() - start
    model, trained = run.model, run.model.train_result_
    sequences = int((data.split.train.user_counts() > 0).sum())
    positions = len(data.split.train)  # one next-item target per training interaction (BOS predicts the first)
    epoch_seconds = trained.seconds_per_epoch
    device = model.device
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "amp": args.amp if device.type == "cuda" else "off (cpu)",
        "epochs_run": len(trained.history),
        "seconds_per_epoch": epoch_seconds,
        "sequences_per_second": sequences / epoch_seconds if epoch_seconds else None,
        "positions_per_second": positions / epoch_seconds if epoch_seconds else None,
        "valid_seconds_median": statistics.median([r.valid_seconds for r in trained.history if r.metric is not None]
                                                  or [0.0]),
        "best_epoch": trained.best_epoch,
        "seconds_to_best": trained.seconds_to_best,
        "test": {k: v for k, v in run.test.summary().items() if k.startswith(("ndcg", "hr"))},
        "wall_seconds": wall,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
        "history": trained.to_dict()["history"],
    }
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    summary = {k: v for k, v in report.items() if k != "history"}
    print(json.dumps(summary, indent=1), file=sys.stdout)


if __name__ == "__main__":
    main()
