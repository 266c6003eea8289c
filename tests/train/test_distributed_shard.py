"""Data split by user over 2 CPU processes (gloo): loading, training and evaluation on shards.

One spawn loads the planted log of ``tests/train/ddp_worker.py`` (written as Parquet) with
``data.shard_by_user``, so each rank holds only its users' rows, then trains SASRec and
two-tower data-parallel (validating every epoch on every rank's own users) and evaluates
the test split by the same user partition. The parent runs the same experiments in one
process.

* Each rank holds exactly its users' rows (``hash(user id) % 2 == rank``), the two shards
  together are the whole log, and the vocabularies are the single-process ones.
* Evaluation by user partition equals one process evaluating the whole test split with the
  same model, per user (SASRec's scores depend on its batch only through float rounding).
* 2 processes learn what 1 process learns: test NDCG@10 within ``TOLERANCE`` (absolute).
  The runs are not the same computation (each global batch is a stratified sample, half
  from each rank's users, instead of the single-process batch; other dropout masks), so
  the tolerance is that of ``tests/train/test_distributed_eval.py``. Both must beat
  popularity by far.
"""

import json

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from recloop.data.shard import UserShard
from recloop.experiment import prepare_data, run_model
from tests.train.shard_worker import SASREC, TWO_TOWER, experiment, shard_worker, write_planted_log

TOLERANCE = 0.03  # absolute test NDCG@10; see the module docstring and docs/scale.md


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-shard")
    path = write_planted_log(out / "planted.parquet")
    mp.spawn(shard_worker, args=(2, str(out / "init"), str(path), str(out)), nprocs=2, join=True)
    before = torch.get_num_threads()
    single = {}
    for name, params in (("sasrec", SASREC), ("two-tower", TWO_TOWER)):
        config = experiment(path, name, params)
        data = prepare_data(config)  # one process: shard_by_user has no effect
        single[name] = (data, run_model(config.model, data, config))
    torch.set_num_threads(before)
    loaded = {}
    for name in ("sasrec", "two-tower"):
        for rank in (0, 1):
            loaded[f"{name}-held{rank}"] = json.loads((out / f"{name}-held{rank}.json").read_text())
            loaded[f"{name}-sharded{rank}"] = dict(np.load(out / f"{name}-sharded{rank}.npz"))
    loaded["sasrec-whole"] = dict(np.load(out / "sasrec-whole.npz"))
    return {**loaded, "single": single}


def test_each_rank_holds_only_its_users_rows(runs):
    data, _ = runs["single"]["sasrec"]
    log = data.dataset.interactions
    owners = UserShard(0, 2).owners(log.users)
    for rank in (0, 1):
        held = runs[f"sasrec-held{rank}"]
        assert held["shard_data"] and held["owners_ok"]
        mine = set(log.users.ids[owners == rank].tolist())
        assert set(held["user_ids"]) == mine  # all of its users, none of the other rank's
        assert held["rows"] == int(np.count_nonzero(owners[log.user_idx] == rank))
        # The vocabularies are global: the single-process ids, in its order.
        assert (held["n_users"], held["n_items"]) == (log.n_users, log.n_items)
        assert held["items"] == log.items.to_list()[:20]
    rows = [runs[f"sasrec-held{rank}"]["rows"] for rank in (0, 1)]
    assert sum(rows) == len(log) and min(rows) > 0.35 * len(log)  # a partition, and a balanced one
    assert sum(runs[f"sasrec-held{r}"]["train_rows"] for r in (0, 1)) == len(data.split.train)


def test_evaluation_by_user_partition_equals_one_process(runs):
    whole = runs["sasrec-whole"]
    assert len(whole["users"]) > 16 * 4  # several evaluation batches on each rank
    for rank in (0, 1):  # every rank returns the whole result, in user order
        sharded = runs[f"sasrec-sharded{rank}"]
        np.testing.assert_array_equal(sharded["users"], whole["users"])
        np.testing.assert_array_equal(sharded["recommendations"], whole["recommendations"])
        np.testing.assert_array_equal(sharded["ndcg"], whole["ndcg"])
        np.testing.assert_allclose(sharded["novelty"], whole["novelty"], rtol=1e-12)  # global item counts
        assert float(sharded["coverage"]) == float(whole["coverage"])
    assert whole["ndcg"].std() > 0


@pytest.mark.parametrize("name", ["sasrec", "two-tower"])
def test_two_processes_on_shards_learn_what_one_process_learns(runs, name):
    from recloop.evaluate import Evaluator
    from recloop.models import MostPopular

    data, single = runs["single"][name]
    one = single.test["ndcg@10"]
    two = float(runs[f"{name}-sharded0"]["ndcg"].mean())
    parts = data.split
    popularity = MostPopular().fit(parts.history("test"))
    baseline = Evaluator(single.test.config).evaluate(popularity, parts.test, parts.history("test"))["ndcg@10"]
    print(f"{name} test NDCG@10: 1 process {one:.4f}, 2 processes on shards {two:.4f}, popularity {baseline:.4f}")
    assert abs(two - one) <= TOLERANCE, (one, two)
    assert min(one, two) > 1.5 * baseline, (one, two, baseline)
    # Every rank validated on its own users and got the same (gathered) metric every epoch.
    np.testing.assert_array_equal(runs[f"{name}-sharded0"]["valid"], runs[f"{name}-sharded1"]["valid"])
    assert np.isfinite(runs[f"{name}-sharded0"]["valid"]).all()
