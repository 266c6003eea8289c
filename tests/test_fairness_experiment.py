"""[rerank] in an experiment config re-ranks every evaluated list (validation and test)
through the same FairRanker the service uses."""

from __future__ import annotations

import numpy as np

from recloop.config import experiment_from_dict
from recloop.evaluate.metrics import long_tail_share
from recloop.experiment import prepare_data, run_model

RAW = {"name": "fair", "refit": False, "data": {"dataset": "synthetic"}, "split": {"method": "leave-one-out"},
       "evaluation": {"k": [10], "beyond": ["long_tail", "gini", "calibration"]},
       "model": {"name": "ease", "l2": 50.0}}


def test_rerank_table_applies_to_valid_and_test():
    plain_config = experiment_from_dict(RAW)
    fair_config = experiment_from_dict({**RAW, "rerank": {"min_share": {"head": 0.5}, "candidates": 400}})
    assert fair_config.rerank.enabled and not plain_config.rerank.enabled
    data = prepare_data(fair_config)
    plain = run_model(plain_config.model, data, plain_config)
    fair = run_model(fair_config.model, data, fair_config)
    counts = data.split.train.item_counts()
    for result in (fair.test, fair.valid):
        assert (long_tail_share(result.recommendations, counts) <= 0.5).all()  # at least half head in every list
    assert (long_tail_share(plain.test.recommendations, counts) > 0.5).mean() > 0.3  # the quota changed those
    assert "calibration@10" in fair.test.per_user and "user_groups" in fair.test.extra
    assert np.isfinite(fair.test["ndcg@10"])
