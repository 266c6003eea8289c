"""Sharded evaluation and data-parallel learning on 2 CPU processes (gloo).

One spawn trains SASRec data-parallel on a small planted log (users of unequal length,
dropout on), then evaluates the test split sharded across the 2 ranks; rank 0 also
evaluates the same model in one piece. The parent trains the same model in one process.

* Sharded evaluation equals single-process evaluation exactly, per user: each rank ranks
  a contiguous run of the very batches one process ranks, and the lists are gathered.
* 2 processes learn what 1 process learns: the test NDCG@10 of the two runs differ by at
  most ``TOLERANCE`` (absolute). The runs are not the same computation: each shard's loss
  is a mean over its own positions (unequal here) and rank 1 draws other dropout masks,
  so the weights drift apart while learning the same thing. Both must beat the untrained
  model by far.
"""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from recloop.evaluate import Evaluator
from tests.train.ddp_worker import evaluation_config, fit_learner, learn_and_evaluate_worker, synthetic_split

TOLERANCE = 0.03  # absolute NDCG@10; see the module docstring and docs/scale.md


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-eval")
    mp.spawn(learn_and_evaluate_worker, args=(2, str(out / "init"), str(out)), nprocs=2, join=True)
    before = torch.get_num_threads()
    parts = synthetic_split()
    single = fit_learner(parts)
    torch.set_num_threads(before)
    single_result = Evaluator(evaluation_config()).evaluate(single, parts.test, parts.history("test"))
    return {"rank0": dict(np.load(out / "sharded0.npz")), "rank1": dict(np.load(out / "sharded1.npz")),
            "whole": dict(np.load(out / "whole.npz")), "single": single_result, "parts": parts}


def test_sharded_evaluation_equals_one_process_per_user(runs):
    whole = runs["whole"]
    assert len(whole["users"]) == len(runs["parts"].test.active_users()) > 16 * 2
    for rank in ("rank0", "rank1"):  # every rank returns the whole result
        sharded = runs[rank]
        assert sharded.keys() == whole.keys()
        for name in whole:
            np.testing.assert_array_equal(sharded[name], whole[name], err_msg=name)  # bit for bit
    assert whole["user:ndcg@10"].std() > 0  # real per-user values, not a constant


def test_two_processes_learn_what_one_process_learns(runs):
    from recloop.models import MostPopular

    two = float(runs["whole"]["user:ndcg@10"].mean())
    one = runs["single"]["ndcg@10"]
    parts = runs["parts"]
    popularity = MostPopular().fit(parts.history("test"))
    baseline = Evaluator(evaluation_config()).evaluate(popularity, parts.test, parts.history("test"))["ndcg@10"]
    print(f"test NDCG@10: 1 process {one:.4f}, 2 processes {two:.4f}, popularity {baseline:.4f}")
    assert abs(two - one) <= TOLERANCE, (one, two)
    assert min(one, two) > 1.5 * baseline, (one, two, baseline)  # both learned the planted sequences
