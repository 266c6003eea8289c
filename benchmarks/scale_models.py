"""ALS against ``implicit``'s on the same data, in one process: fit time and NDCG@10.

    PYTHONPATH=$PWD python benchmarks/scale_models.py ml-100k [--baseline REF] [--json FILE]
    PYTHONPATH=$PWD python benchmarks/scale_models.py /tmp/ml100k-1e6 --eval-users 10000 --json FILE

The data is split with recloop's leave-one-out (last interaction of each user is test,
no validation); both models fit the training part with the same factors, iterations,
regularization, confidence and thread count: recloop's ``ALS`` (confidence
``1 + alpha``) and ``implicit.cpu.als.AlternatingLeastSquares`` (0.7: confidence is the
matrix value, so it is given ``1 + alpha`` on every observed pair with its own
``alpha=1``; conjugate gradient with 3 steps, as recloop's ``cg_steps``), ``implicit``'s
BLAS limited to one thread as it asks and its OpenMP loop given the same threads as torch.
Fits alternate (recloop, implicit, recloop, ...) so that a change in the machine's load
hits both; the median of ``--repeats`` is reported, wall and CPU seconds (all threads).
``--baseline REF`` also fits recloop's ALS as of git ``REF`` (``recloop/models/als.py``
at that commit, imported from a temporary file), the "before".

NDCG@10 is recloop's :class:`Evaluator` (full ranking, known items masked) on the test
part, for both models on the same users (all test users, or a seeded sample of
``--eval-users``), with a paired test of the difference (recloop minus implicit). recloop scores a user by its exact user step against the item
factors; ``implicit`` by the user factors it trained (a small adaptor, ``ImplicitFactors``).

``--sweeps N`` measures instead the cost of one sweep (user step + item step) on the
training part, without fits from scratch or evaluation: N sweeps of recloop's half-sweep
function (and of the ``--baseline``'s), each with its CPU seconds (user and system) and
minor page faults (``getrusage``), and one ``implicit`` fit of N iterations (its CPU per
iteration). That is where a cost that grows faster than the data shows.

Like the ``recloop`` command, the script calls ``configure_threads()`` (``OMP_WAIT_POLICY=PASSIVE``)
before torch loads, so torch and ``implicit`` (which share GNU OpenMP) both run with it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recloop.utils import configure_threads

configure_threads()  # before torch loads

import numpy as np
import torch

from recloop.data import load_dataset
from recloop.data.splits import leave_one_out
from recloop.data.tabular import ColumnMapping
from recloop.evaluate import EvaluationConfig, Evaluator
from recloop.models import ALS
from recloop.models.base import Recommender


@dataclass(frozen=True)
class ImplicitFactorsConfig:
    pass


class ImplicitFactors(Recommender):
    """Scores ``user_factors[u] @ item_factors.T`` from a fitted ``implicit`` model."""

    name = "implicit-als"
    config_class = ImplicitFactorsConfig

    def __init__(self, users: np.ndarray, items: np.ndarray):
        super().__init__()
        self.user_vectors, self.item_vectors_ = torch.from_numpy(users), torch.from_numpy(items)

    def _fit(self, train, valid):
        pass

    def _score(self, user_idx, history):
        return self.user_vectors[torch.from_numpy(user_idx)] @ self.item_vectors_.T

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_.numpy()


def load(source: str):
    if Path(source).exists():
        return load_dataset(source, columns=ColumnMapping(rating="rating", timestamp="timestamp"))
    data_dir = os.environ.get("RECLOOP_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    return load_dataset(source, data_dir=data_dir, download=False)


def baseline_als(ref: str):
    """recloop's ALS class as of git ``ref``."""
    code = subprocess.run(["git", "show", f"{ref}:recloop/models/als.py"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    path = Path(tempfile.mkdtemp()) / "als_baseline.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("als_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["als_baseline"] = module
    spec.loader.exec_module(module)
    return module.ALS


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def sweep_costs(module, train, args) -> list[dict]:
    """``args.sweeps`` sweeps of ``module``'s ALS half-sweeps (``conjugate_gradient`` on
    its ``RowWeights``), as its ``ALS._fit`` runs them; CPU and page faults of each."""
    x = train.to_csr().astype(np.float32)
    x.data *= np.float32(args.alpha)
    by_user, by_item = module.RowWeights(x, torch.float32), module.RowWeights(x.T.tocsr(), torch.float32)
    generator = torch.Generator().manual_seed(0)
    users = torch.rand((train.n_users, args.factors), generator=generator) * 0.01
    items = torch.rand((train.n_items, args.factors), generator=generator) * 0.01
    out = []
    for _ in range(args.sweeps):
        before, wall = usage(), time.perf_counter()
        users = module.conjugate_gradient(by_user, items, users, args.regularization, 3)
        items = module.conjugate_gradient(by_item, users, items, args.regularization, 3)
        after = usage()
        out.append({"wall_s": time.perf_counter() - wall, "user_s": after[0] - before[0],
                    "system_s": after[1] - before[1], "minor_faults": after[2] - before[2],
                    "load_average": load_average()})
        print(f"  {module.__name__}: sweep {len(out)}: " + ", ".join(f"{k} {v:.2f}" for k, v in out[-1].items()),
              flush=True)
    return out


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a known dataset name or a path (an expansion's folder)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=50.0)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and implicit threads (default torch's)")
    parser.add_argument("--eval-users", type=int, default=0, help="seeded sample of test users (0: all)")
    parser.add_argument("--baseline", default=None, help="also fit recloop's ALS as of this git ref")
    parser.add_argument("--sweeps", type=int, default=0, help="only the cost of N sweeps (see above)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    loads = [load_average()]
    log, load_s, _ = timed(lambda: load(args.data).interactions)
    split = leave_one_out(log, validation=False)
    train, test = split.train, split.test
    size = {"interactions": len(log), "users": log.n_users, "items": log.n_items}
    del log, split  # the split's parts are what is used: at 1e7 the whole log is ~0.3 GB more
    print(f"{args.data}: {size['interactions']:,} interactions, {size['users']:,} users, {size['items']:,} items; "
          f"train {len(train):,}; load {load_s:.1f} s; {threads} threads", flush=True)

    params = {"factors": args.factors, "iterations": args.iterations, "regularization": args.regularization,
                  "alpha": args.alpha, "seed": 0}
    matrix = train.to_csr().astype(np.float32)
    matrix.data[:] = 1.0 + args.alpha

    def fit_implicit():
        model = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations,
                                        regularization=args.regularization, alpha=1.0, use_cg=True,
                                        num_threads=threads, random_state=0)
        with threadpool_limits(1, "blas"):
            model.fit(matrix, show_progress=False)
        return model

    if args.sweeps:
        import recloop.models.als as current

        costs = {"recloop": sweep_costs(current, train, args)}
        if args.baseline:
            baseline_als(args.baseline)
            costs["recloop before"] = sweep_costs(sys.modules["als_baseline"], train, args)
        args.iterations = args.sweeps
        before, wall = usage(), time.perf_counter()
        fit_implicit()
        after = usage()
        costs["implicit"] = [{"wall_s": (time.perf_counter() - wall) / args.sweeps,
                              "user_s": (after[0] - before[0]) / args.sweeps,
                              "system_s": (after[1] - before[1]) / args.sweeps,
                              "minor_faults": (after[2] - before[2]) / args.sweeps, "load_average": load_average()}]
        print(f"  implicit: per iteration (of {args.sweeps}): "
              + ", ".join(f"{k} {v:.2f}" for k, v in costs["implicit"][0].items()), flush=True)
        out = {"data": args.data, **size,
               "train": len(train), "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "params": params, "baseline": args.baseline, "sweeps": costs,
               "cpu_s_per_sweep": {name: statistics.median(r["user_s"] + r["system_s"] for r in runs[1:] or runs)
                                   for name, runs in costs.items()},
               "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        print(json.dumps(out["cpu_s_per_sweep"], indent=1))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        return

    fitters = {"recloop": lambda: ALS(**params).fit(train), "implicit": fit_implicit}
    if args.baseline:
        old = baseline_als(args.baseline)
        fitters["recloop before"] = lambda: old(**params).fit(train)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fitters}
    models = {}
    for repeat in range(args.repeats):
        for name, fit in fitters.items():
            models[name], wall, cpu = timed(fit)
            runs[name].append((wall, cpu))
            loads.append(load_average())
            print(f"  repeat {repeat + 1}: {name} fit {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    fit_s = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    cpu_s = {name: statistics.median(c for _, c in r) for name, r in runs.items()}

    implicit = models["implicit"]
    adaptor = ImplicitFactors(np.asarray(implicit.user_factors), np.asarray(implicit.item_factors)).fit(train)
    evaluator = Evaluator(EvaluationConfig(k=(10,), metrics=("ndcg",), beyond=(), sample_users=args.eval_users,
                                           max_batch_bytes=64 << 20))  # same metric, less memory beside others' jobs
    scored = {"recloop": models["recloop"], "implicit": adaptor}
    if args.baseline:
        scored["recloop before"] = models["recloop before"]
    ndcg, eval_s, eval_users, results = {}, {}, 0, {}
    for name, model in scored.items():
        results[name], eval_s[name], _ = timed(lambda m=model: evaluator.evaluate(m, test, train))
        ndcg[name], eval_users = results[name]["ndcg@10"], len(results[name].users)
        print(f"  {name}: ndcg@10 {ndcg[name]:.4f} ({eval_users:,} users, {eval_s[name]:.1f} s)", flush=True)
    paired = results["recloop"].compare(results["implicit"], "ndcg@10")  # A = recloop, B = implicit
    print(f"  recloop - implicit: {paired}", flush=True)
    loads.append(load_average())

    out = {"data": args.data, **size,
           "train": len(train), "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "params": params, "cg_steps": 3, "repeats": args.repeats, "baseline": args.baseline,
           "fit_s": fit_s, "fit_cpu_s": cpu_s, "runs": runs, "ndcg@10": ndcg, "eval_users": eval_users,
           "eval_s": eval_s,
           "ndcg_difference": {"mean": paired.difference.mean, "low": paired.difference.low,
                               "high": paired.difference.high, "t_pvalue": paired.t_pvalue},
           "ratio_wall": fit_s["recloop"] / fit_s["implicit"],
           "ratio_cpu": cpu_s["recloop"] / cpu_s["implicit"], "load_average": [min(loads), max(loads)],
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(json.dumps({k: out[k] for k in ("fit_s", "fit_cpu_s", "ndcg@10", "ndcg_difference", "ratio_wall", "ratio_cpu",
                                          "load_average")}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
