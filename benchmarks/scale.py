"""The whole run at one size: expansion (cached), load, ALS fit and evaluation, implicit's ALS.

    PYTHONPATH=$PWD python benchmarks/scale.py --interactions 1e7 --json docs/results/scale-1e7.json
    PYTHONPATH=$PWD python benchmarks/scale.py --plot docs/results/scale-1e6.json docs/results/scale-1e7.json

Settings come from ``configs/scale.toml`` (``--config``). For one size ``N``:

1. **expansion**: a fractal expansion of the source (ml-100k) to ``N`` interactions
   (:func:`recloop.data.expand.expand`, as ``recloop data expand``) in
   ``cache_dir/SOURCE-N-seedS``; reused when its manifest names the same source, target,
   seed and :class:`ExpansionConfig`, so its time is reported (``expand_s``) but is not
   part of the other figures;
2. **load**: :func:`recloop.data.load_dataset` on that folder (``load_s``);
3. a leave-one-out split (the last interaction of each user is the test, no validation);
4. **ALS**: recloop's :class:`ALS` fit on the training part (``als_fit_s``), then
   ``implicit``'s ALS on the same matrix and settings (``implicit_fit_s``), set up as in
   ``benchmarks/scale_models.py`` (confidence ``1 + alpha``, conjugate gradient, BLAS on
   one thread, the OpenMP loop on torch's thread count); one fit each;
5. **evaluation**: NDCG@k by recloop's :class:`Evaluator` (full ranking, known items
   masked) for both models on the same users, a seeded sample of ``sample_users`` test
   users when there are more (``eval_s`` is recloop's model's); ``implicit``'s factors
   are scored through ``scale_models.ImplicitFactors``.

Peak RSS is this process's high-water mark (``resource.getrusage``), so run each size in a
fresh process (one ``--interactions`` per call). ``--plot`` reads several result files
and draws the cost per 1e6 interactions of load and ALS fit against ``N`` (log-log) into
``docs/scale-cost.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tomllib
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recloop.utils import configure_threads

configure_threads()  # before torch loads

import numpy as np
import torch

from benchmarks.scale_models import ImplicitFactors, timed
from recloop.data import load_dataset
from recloop.data.expand import ExpansionConfig, expand, read_manifest
from recloop.data.splits import leave_one_out
from recloop.data.tabular import ColumnMapping
from recloop.evaluate import EvaluationConfig, Evaluator
from recloop.models import ALS

CONFIG = ROOT / "configs" / "scale.toml"
PLOT = ROOT / "docs" / "scale-cost.png"
KEYS = ("interactions", "users", "items", "load_s", "als_fit_s", "implicit_fit_s", "ndcg@10", "implicit_ndcg@10",
        "eval_s", "eval_users", "peak_rss_gb")


def read_config(path: str | Path = CONFIG) -> dict:
    return tomllib.loads(Path(path).read_text())


def data_dir() -> str:
    return os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def cached_expansion(source: str, n_interactions: int, seed: int, cache_dir: str | Path,
                     config: ExpansionConfig | None = None) -> tuple[Path, float]:
    """The expansion's folder, written first when no matching one is cached; its seconds
    (0.0 when cached)."""
    config = config or ExpansionConfig()
    folder = Path(cache_dir) / f"{source}-{n_interactions}-seed{seed}"
    if (folder / "manifest.json").exists():
        manifest = read_manifest(folder)
        if (manifest["source"]["name"] == source and manifest["target_interactions"] == n_interactions
                and manifest["seed"] == seed and manifest["config"] == asdict(config)):
            return folder, 0.0
        raise SystemExit(f"{folder} holds another expansion ({manifest['source']['name']}, "
                         f"{manifest['target_interactions']}, seed {manifest['seed']}, {manifest['config']}); "
                         "remove it or give another cache_dir")
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():  # a run that died mid-write: never reused
        for shard in partial.iterdir():
            shard.unlink()
        partial.rmdir()
    started = time.perf_counter()
    log = load_dataset(source, data_dir=data_dir(), download=False).interactions
    expand(log, n_interactions, partial, seed, config=config, source_name=source)
    partial.rename(folder)
    return folder, time.perf_counter() - started


def fit_implicit(matrix, threads: int, als: dict):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # as implicit asks; its OpenMP loop gets torch's threads
        model = AlternatingLeastSquares(factors=als["factors"], iterations=als["iterations"],
                                        regularization=als["regularization"], alpha=1.0, use_cg=True,
                                        num_threads=threads, random_state=als["seed"])
        model.fit(matrix, show_progress=False)
    return model


def run(n_interactions: int, config: dict, *, cache_dir: str | Path | None = None, log=print) -> dict:
    """One size, in this process: the result dictionary (``KEYS`` and more)."""
    started = time.perf_counter()
    loads = [os.getloadavg()[0]]
    exp, als, ev = config["expansion"], config["als"], config["evaluation"]
    folder, expand_s = cached_expansion(exp["source"], n_interactions, exp["seed"], cache_dir or exp["cache_dir"])
    log(f"expansion {folder}: {'cached' if expand_s == 0 else f'{expand_s:.1f} s'}")

    dataset, load_s, _ = timed(lambda: load_dataset(folder, columns=ColumnMapping(rating="rating",
                                                                                  timestamp="timestamp")))
    interactions = dataset.interactions
    split = leave_one_out(interactions, validation=False)
    train, test = split.train, split.test
    threads = torch.get_num_threads()
    log(f"load {load_s:.1f} s: {len(interactions):,} interactions, {interactions.n_users:,} users, "
        f"{interactions.n_items:,} items; train {len(train):,}; {threads} threads")
    loads.append(os.getloadavg()[0])

    model, als_fit_s, als_cpu_s = timed(lambda: ALS(factors=als["factors"], iterations=als["iterations"],
                                                    regularization=als["regularization"], alpha=als["alpha"],
                                                    seed=als["seed"]).fit(train))
    log(f"recloop ALS fit {als_fit_s:.1f} s ({als_cpu_s:.1f} s CPU)")
    loads.append(os.getloadavg()[0])
    matrix = train.to_csr().astype(np.float32)
    matrix.data[:] = 1.0 + als["alpha"]
    implicit, implicit_fit_s, implicit_cpu_s = timed(lambda: fit_implicit(matrix, threads, als))
    matrix = None  # its memory back before evaluation
    log(f"implicit ALS fit {implicit_fit_s:.1f} s ({implicit_cpu_s:.1f} s CPU)")
    loads.append(os.getloadavg()[0])

    k = int(ev["k"])
    metric = f"ndcg@{k}"
    evaluator = Evaluator(EvaluationConfig(k=(k,), metrics=("ndcg",), beyond=(), select_by=metric,
                                           sample_users=int(ev["sample_users"]), seed=int(ev["seed"])))
    adaptor = ImplicitFactors(np.asarray(implicit.user_factors), np.asarray(implicit.item_factors)).fit(train)
    result, eval_s, _ = timed(lambda: evaluator.evaluate(model, test, train))
    implicit_result, implicit_eval_s, _ = timed(lambda: evaluator.evaluate(adaptor, test, train))
    paired = result.compare(implicit_result, metric)  # recloop minus implicit, same users
    log(f"{metric}: recloop {result[metric]:.4f}, implicit {implicit_result[metric]:.4f} "
        f"({len(result.users):,} users, {eval_s:.1f} s)")
    loads.append(os.getloadavg()[0])

    return {"interactions": len(interactions), "users": int(interactions.n_users), "items": int(interactions.n_items),
            "load_s": load_s, "als_fit_s": als_fit_s, "implicit_fit_s": implicit_fit_s,
            "ndcg@10" if k == 10 else metric: result[metric],
            "implicit_ndcg@10" if k == 10 else f"implicit_{metric}": implicit_result[metric],
            "eval_s": eval_s, "eval_users": len(result.users), "peak_rss_gb": peak_rss_gb(),
            "target_interactions": n_interactions, "train": len(train), "expand_s": expand_s,
            "expansion": str(folder), "als_cpu_s": als_cpu_s, "implicit_cpu_s": implicit_cpu_s,
            "implicit_eval_s": implicit_eval_s, "fit_ratio": als_fit_s / implicit_fit_s,
            "ndcg_difference": {"mean": paired.difference.mean, "low": paired.difference.low,
                                "high": paired.difference.high, "t_pvalue": paired.t_pvalue},
            "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "als": als,
            "sample_users": int(ev["sample_users"]), "load_average": [min(loads), max(loads)],
            "total_s": time.perf_counter() - started,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def plot(paths: list[str], output: str | Path = PLOT) -> Path:
    """Log-log cost per 1e6 interactions (load, ALS fit; implicit's fit for reference) against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda r: r["interactions"])
    n = np.array([r["interactions"] for r in runs], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    # Wall time on shared cores depends on the neighbours; CPU seconds are the steadier cost.
    for key, label, color, style in (("load_s", "load (wall)", "C0", "-"),
                                     ("als_fit_s", "recloop ALS fit (wall)", "C1", "-"),
                                     ("als_cpu_s", "recloop ALS fit (CPU)", "C1", ":"),
                                     ("implicit_fit_s", "implicit ALS fit (wall)", "C2", "-"),
                                     ("implicit_cpu_s", "implicit ALS fit (CPU)", "C2", ":")):
        if not all(key in r for r in runs):
            continue
        cost = np.array([r[key] for r in runs]) / (n / 1e6)
        ax.plot(n, cost, marker="o", label=label, color=color, linestyle=style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions N")
    ax.set_ylabel("seconds per 1e6 interactions")
    ax.set_title("Cost per 1e6 interactions (ml-100k fractal expansions, 2 shared cores)")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return Path(output)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=float, help="target size N (1e6, 1e7, ...)")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--cache-dir", default=None, help="expansion cache (default: the config's)")
    parser.add_argument("--iterations", type=int, default=None, help="ALS iterations (default: the config's)")
    parser.add_argument("--plot", nargs="+", metavar="JSON", help="draw the cost plot from these results instead")
    parser.add_argument("--plot-output", default=str(PLOT))
    args = parser.parse_args(argv)
    if args.plot:
        print(f"wrote {plot(args.plot, args.plot_output)}")
        return None
    if not args.interactions:
        parser.error("give --interactions N (or --plot FILES)")
    config = read_config(args.config)
    if args.iterations is not None:
        config["als"]["iterations"] = args.iterations
    out = run(int(args.interactions), config, cache_dir=args.cache_dir, log=lambda m: print(m, flush=True))
    print(json.dumps({key: out[key] for key in KEYS if key in out}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
