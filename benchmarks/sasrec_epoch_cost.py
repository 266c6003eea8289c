"""CPU cost of one SASRec training epoch on amazon-beauty, full-softmax CE against the
sampled softmax, measured the way ``recbole_sasrec.py`` measures RecBole's SASRec.

    PYTHONPATH=. python benchmarks/sasrec_epoch_cost.py --batches 30 --json docs/results/epoch-cost.json

Builds the model of ``configs/beauty-sasrec.toml`` (hidden 64, 2 layers, max length 50),
trains ``--batches`` steps of its whole-sequence data (length-bucketed batches of 128
users) with each loss, and extrapolates CPU and wall seconds per epoch from the mean
per step. CPU seconds are what a process needs whatever else runs on the machine; wall
seconds on a shared machine are larger by the load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from recloop.config import load_config
from recloop.experiment import build_model, prepare_data
from recloop.train.sampler import epoch_batches
from recloop.train.trainer import make_optimizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(ROOT / "configs" / "beauty-sasrec.toml")
    data = prepare_data(base, data_dir=args.data_dir, download=False)
    train = data.split.train
    report = {"threads": args.threads, "batches_timed": args.batches}
    for loss in ("ce", "sampled"):
        config = load_config(ROOT / "configs" / "beauty-sasrec.toml", [f"model.loss={loss}"])
        model = build_model(config.model)
        model.users_, model.items_, model.history_, model.item_features_ = train.users, train.items, train, None
        torch.manual_seed(0)
        model.prepare(train)
        model.network_ = model.build_network().train()
        examples = model.training_data(train)
        optimizer = make_optimizer(model.network_, model.config.train)
        batches = epoch_batches(len(examples), model.config.train.batch_size, epoch=1, seed=0, lengths=examples.lengths)
        for index in batches[:3]:  # warm-up
            optimizer.zero_grad()
            model.loss(examples.batch(index)).backward()
            optimizer.step()
        timed = batches[3:3 + args.batches]
        wall, cpu = time.perf_counter(), time.process_time()
        for index in timed:
            optimizer.zero_grad()
            model.loss(examples.batch(index)).backward()
            optimizer.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        report[loss] = {"steps_per_epoch": len(batches), "cpu_seconds_per_epoch": cpu / len(timed) * len(batches),
                        "wall_seconds_per_epoch": wall / len(timed) * len(batches),
                        "parameters": sum(p.numel() for p in model.network_.parameters())}
    report["load_average"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
