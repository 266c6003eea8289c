import numpy as np
import pytest

from recloop.data import (
    Dataset,
    Interactions,
    PreprocessConfig,
    SplitConfig,
    deduplicate,
    k_core,
    leave_one_out,
    preprocess,
    ratio_split,
    split,
    temporal_split,
)
from recloop.errors import ConfigError, DataError


def test_deduplicate_keeps_last_or_first():
    log = Interactions.from_ids(["a", "a", "a"], ["x", "y", "x"], rating=np.array([1.0, 2.0, 3.0]),
                                timestamp=np.array([1, 2, 3]))
    assert sorted(deduplicate(log, "last").rating.tolist()) == [2.0, 3.0]
    assert sorted(deduplicate(log, "first").rating.tolist()) == [1.0, 2.0]


def test_k_core_is_iterative():
    # Removing item z (1 user) drops user c to one interaction, which then goes too.
    log = Interactions.from_ids(["a", "a", "b", "b", "c", "c"], ["x", "y", "x", "y", "x", "z"])
    core = k_core(log, user_k=2, item_k=2)
    kept = {(core.users.id(u), core.items.id(i)) for u, i in zip(core.user_idx, core.item_idx)}
    assert kept == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}


def test_preprocess_thresholds_compacts_and_names_the_emptying_filter():
    log = Interactions.from_ids(["a", "a", "b"], ["x", "y", "z"], rating=np.array([5.0, 2.0, 4.0]))
    out = preprocess(Dataset("t", log), PreprocessConfig(min_rating=4.0, drop_rating=True))
    assert out.interactions.n_items == 2 and out.interactions.rating is None
    with pytest.raises(DataError, match="k-core"):
        preprocess(Dataset("t", log), PreprocessConfig(user_core=5))
    with pytest.raises(DataError, match="min_rating"):
        preprocess(Dataset("t", log), PreprocessConfig(min_rating=6.0))


def test_leave_one_out_takes_last_items(synthetic):
    log = synthetic.interactions
    parts = leave_one_out(log)
    indptr = log.user_indptr
    last = log.item_idx[indptr[1:] - 1]
    assert np.array_equal(parts.test.item_idx, last[np.diff(indptr) >= 2])
    assert len(parts.train) + len(parts.valid) + len(parts.test) == len(log)
    # history for the test stage includes the validation item
    assert len(parts.history("test")) == len(parts.train) + len(parts.valid)


def test_ratio_split_is_seeded_stratified_and_disjoint(synthetic):
    log = synthetic.interactions
    a, b = ratio_split(log, 0.25, seed=7), ratio_split(log, 0.25, seed=7)
    c = ratio_split(log, 0.25, seed=8)
    assert np.array_equal(a.test.item_idx, b.test.item_idx)
    assert not np.array_equal(a.test.item_idx, c.test.item_idx)
    per_user = a.test.user_counts()[log.active_users()]
    expected = np.round(log.user_counts()[log.active_users()] * 0.25)
    assert np.array_equal(per_user, expected)
    assert (a.train.user_counts()[log.active_users()] >= 1).all()
    train_pairs = set(zip(a.train.user_idx, a.train.item_idx))
    assert not train_pairs & set(zip(a.test.user_idx, a.test.item_idx))


def test_ratio_split_by_time_takes_latest(synthetic):
    log = synthetic.interactions
    parts = ratio_split(log, 0.2, by_time=True)
    for u in parts.test.active_users()[:20]:
        assert parts.test.timestamp[parts.test.user_idx == u].min() >= parts.train.timestamp[parts.train.user_idx == u].max()


def test_temporal_split_is_a_global_cut(synthetic):
    parts = temporal_split(synthetic.interactions, 0.1, 0.1)
    assert parts.train.timestamp.max() <= parts.valid.timestamp.min()
    assert parts.valid.timestamp.max() <= parts.test.timestamp.min()
    n = len(synthetic.interactions)
    assert abs(len(parts.test) - round(0.1 * n)) <= 1


def test_split_config_validates():
    with pytest.raises(ConfigError, match="method"):
        SplitConfig(method="random")
    with pytest.raises(ConfigError):
        SplitConfig(method="ratio", test_ratio=0.7, valid_ratio=0.5)
    assert len(split(Interactions.from_ids(["a", "a"], ["x", "y"]), SplitConfig()).test) == 1
