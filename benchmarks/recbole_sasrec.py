"""RecBole 1.2.1's SASRec on the same amazon-beauty file: CPU and wall seconds per epoch.

RecBole is an optional dependency of this benchmark only, and needs numpy<2, pandas<3,
scipy 1.11 and no ray, so it lives in its own virtual environment::

    python3 -m venv /work/recbole-venv
    /work/recbole-venv/bin/pip install 'numpy<2' 'pandas<3' 'scipy==1.11.*' recbole==1.2.1 --no-deps
    /work/recbole-venv/bin/pip install --no-deps colorlog==4.7.2 colorama==0.4.4 pytz pyyaml psutil \
        plotly tabulate texttable thop tqdm scikit-learn
    /work/recbole-venv/bin/pip install tensorboard   # its Trainer opens a TensorBoard writer
    # torch 2.13.0: pip install torch==2.13.0, or reuse a CPU build (a .pth file naming its site-packages)
    /work/recbole-venv/bin/python benchmarks/recbole_sasrec.py --batches 30 --json recbole.json

The configuration follows the issue's reference run: SASRec with CE loss over all items,
hidden 64, 2 layers, max length 50, RecBole's defaults otherwise (2 heads, inner size
256, dropout 0.5, batch 2048, Adam lr 1e-3), leave-one-out ordered by position. RecBole
turns every prefix of every training sequence into its own sample (153,776 of them).
``--batches N`` trains only N batches and extrapolates the epoch from the mean CPU and
wall time per batch (on a shared machine a full epoch takes far longer than the CPU
time says); ``--batches 0`` trains one full epoch.

``--minutes M`` instead trains whole epochs with RecBole's own ``Trainer`` (its
``_train_epoch`` and its full-ranking ``_valid_epoch``: NDCG@10 of each user's
second-to-last item over all items, history masked) until the first epoch end past M
minutes, and writes the validation curve: per epoch the wall seconds since training
started (validation included), the training-only wall seconds, CPU seconds and
validation NDCG@10. ``benchmarks/time_to_quality.py`` runs it this way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_atomic(beauty: Path, folder: Path) -> None:
    """Beauty.txt (``user item1 item2 ...``) as RecBole's ``beauty.inter`` (position = time)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(beauty) as src, open(folder / "beauty.inter", "w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in src:
            user, *items = line.split()
            for t, item in enumerate(items):
                out.write(f"{user}\t{item}\t{t}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="train whole epochs, validating after each, until the first epoch end past this budget")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.utils import init_seed

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="recbole-beauty-"))
    write_atomic(Path(args.data_dir) / "amazon-beauty" / "Beauty.txt", work / "beauty")
    config = Config(model="SASRec", dataset="beauty", config_dict={
        "data_path": str(work), "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
        "loss_type": "CE", "train_neg_sample_args": None, "hidden_size": 64, "n_layers": 2,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10", "device": "cpu", "use_gpu": False,
        "show_progress": False, "seed": 0, "reproducibility": True, "checkpoint_dir": str(work / "saved"),
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = SASRec(config, train_data.dataset).to("cpu")
    if args.minutes:
        report = curve(config, model, train_data, valid_data, args.minutes, args.json)
        report["threads"] = args.threads
        write(report, args.json)
        return
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    n_batches = len(train_data)
    samples = len(train_data.dataset)
    model.train()
    wall, cpu, done = time.perf_counter(), time.process_time(), 0
    for interaction in train_data:
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()
        done += 1
        if args.batches and done >= args.batches:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = {
        "recbole": __import__("recbole").__version__, "torch": torch.__version__, "threads": args.threads,
        "training_samples_per_epoch": samples, "batch_size": config["train_batch_size"],
        "batches_per_epoch": n_batches, "batches_timed": done,
        "cpu_seconds_per_epoch": cpu / done * n_batches, "wall_seconds_per_epoch": wall / done * n_batches,
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_average": os.getloadavg(),
    }
    write(report, args.json)


def curve(config, model, train_data, valid_data, minutes: float, path: Path | None = None) -> dict:
    """Train with RecBole's ``Trainer`` epoch by epoch, validating (full ranking) after
    each, until the first epoch end past ``minutes``; the validation curve (also written
    to ``path`` after every epoch, so that a run stopped from outside keeps its points)."""
    import torch
    from recbole.trainer import Trainer

    trainer = Trainer(config, model)
    points, train_wall, start, cpu_start = [], 0.0, time.perf_counter(), time.process_time()
    epoch = 0
    while True:  # until the budget returns
        begun = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch)
        trained = time.perf_counter()
        train_wall += trained - begun
        score, result = trainer._valid_epoch(valid_data)
        now = time.perf_counter()
        points.append({"epoch": epoch + 1, "metric": float(score), "elapsed": now - start,
                       "train_elapsed": train_wall, "valid_seconds": now - trained,
                       "cpu_seconds": time.process_time() - cpu_start, "loss": float(loss),
                       "hit@10": float(result.get("hit@10", float("nan")))})
        print(f"recbole epoch {epoch + 1}: valid ndcg@10 {score:.4f} at {now - start:.0f} s "
              f"(training {train_wall:.0f} s)", file=sys.stderr, flush=True)
        epoch += 1
        report = {"recbole": __import__("recbole").__version__, "torch": torch.__version__, "minutes": minutes,
                  "training_samples_per_epoch": len(train_data.dataset), "batch_size": config["train_batch_size"],
                  "batches_per_epoch": len(train_data), "metric": "ndcg@10", "curve": points,
                  "parameters": sum(p.numel() for p in model.parameters()), "load_average": os.getloadavg()}
        if path:
            path.write_text(json.dumps(report, indent=1))
        if now - start > minutes * 60:
            return report


def write(report: dict, path: Path | None) -> None:
    text = json.dumps(report, indent=1)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
