import numpy as np
import pytest

from recloop import cold_sequence
from recloop.cold_sequence import cold_sequence_split, load_cold_split, run_cold_sequence
from recloop.config import experiment_from_dict, load_config
from recloop.errors import ConfigError
from tests.conftest import dataset_path


def pairs(log) -> set:
    return set(zip(log.user_idx.tolist(), log.item_idx.tolist(), log.timestamp.tolist()))


def assert_no_leak(parts, train, valid):
    """Nothing of the test period, and no cold item, in what training or early stopping got."""
    test = pairs(parts.test)
    assert not test & pairs(train) and not test & pairs(valid)
    assert not np.isin(train.item_idx, parts.cold_items).any()
    last_seen = np.full(parts.test.n_users, -1)
    np.maximum.at(last_seen, train.user_idx, train.timestamp)
    np.maximum.at(last_seen, valid.user_idx, valid.timestamp)
    test_time = np.full(parts.test.n_users, np.iinfo(np.int64).max)
    test_time[parts.test.user_idx] = parts.test.timestamp
    assert (last_seen < test_time).all()  # every user's training and validation come before its test item


def test_scientific_cold_split(data_dir):
    dataset_path("amazon-scientific")
    config = load_config("configs/scientific-sasrec-text.toml")
    _, parts = load_cold_split(config, fraction=0.15, seed=0, data_dir=data_dir)
    assert len(parts.cold_items) == round(0.15 * 4_344)
    assert_no_leak(parts, parts.train, parts.valid)
    described = parts.describe()
    assert described["test"] == described["valid"] == 8_317
    assert 300 < described["test_cold"] < 2_000 and described["valid_cold"] > 300  # next items include cold ones
    again = load_cold_split(config, fraction=0.15, seed=0, data_dir=data_dir)[1]
    np.testing.assert_array_equal(again.cold_items, parts.cold_items)  # seeded


def test_run_trains_and_stops_early_on_nothing_of_the_test_period(monkeypatch):
    config = experiment_from_dict({
        "data": {"dataset": "synthetic"}, "refit": False,
        "model": {"name": "sasrec", "hidden": 16, "layers": 1, "max_len": 10,
                  "train": {"epochs": 2, "seed": 0, "num_threads": 1, "progress": False}},
        "evaluation": {"k": [10], "beyond": []}})
    dataset = cold_sequence.load_data(config.data, config.preprocess)
    parts = cold_sequence_split(dataset.interactions, fraction=0.2, seed=1)
    seen = {}
    real_fit = cold_sequence.fit

    def spy(model, data, train, valid=None):
        seen.update(train=train, valid=valid)
        return real_fit(model, data, train, valid)

    monkeypatch.setattr(cold_sequence, "fit", spy)
    result = run_cold_sequence(config, dataset, parts)
    assert_no_leak(parts, seen["train"], seen["valid"])
    assert pairs(result.model.history_) == pairs(parts.train)
    assert len(result.cold.users) + len(result.warm.users) == len(result.all.users) > 0
    # An id-only model has no vector for a cold item: every cold item scores exactly 0.
    scores = result.model.score(np.arange(5))
    np.testing.assert_array_equal(scores[:, parts.cold_items], 0.0)
    record = result.record()
    assert {"cold_ndcg@10", "warm_ndcg@10", "ndcg@10_cold_over_warm"} <= set(record)


def test_fraction_is_checked(synthetic):
    with pytest.raises(ConfigError, match="fraction"):
        cold_sequence_split(synthetic.interactions, fraction=1.0)
