"""Cold-start protocols: splits, given-N histories, and a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.cold_start import (
    cold_item_split,
    cold_start_config_from_dict,
    given_n,
    median_table,
    new_user_split,
    run_cold_start,
)
from recloop.errors import ConfigError


def test_cold_item_split_removes_items_with_all_their_interactions(synthetic):
    log = synthetic.interactions
    split = cold_item_split(log, 0.2, seed=7)
    assert len(split.cold_items) == round(0.2 * log.n_items)
    assert not np.isin(split.train.item_idx, split.cold_items).any()
    assert np.isin(split.test.item_idx, split.cold_items).all()
    assert len(split.train) + len(split.test) == len(log)
    assert split.train.items == log.items  # vocabularies kept: cold items keep their index and features
    np.testing.assert_array_equal(cold_item_split(log, 0.2, seed=7).cold_items, split.cold_items)
    assert not np.array_equal(cold_item_split(log, 0.2, seed=8).cold_items, split.cold_items)


def test_new_user_split_and_given_n(synthetic):
    log = synthetic.interactions
    split = new_user_split(log, 0.25, seed=1)
    assert len(split.new_users) == 75
    assert not np.isin(split.train.user_idx, split.new_users).any()
    assert set(split.test.active_users()) == set(split.new_users)
    history, target = given_n(split.test, 3)
    for user in history.active_users()[:20]:
        full = split.test.histories([user]).row(0)
        np.testing.assert_array_equal(history.histories([user]).row(0), full[:3])
        np.testing.assert_array_equal(target.histories([user]).row(0), full[3:])
    lengths = split.test.user_counts()[split.new_users]
    assert len(history.active_users()) == (lengths > 3).sum()
    with pytest.raises(ConfigError, match="at least 1"):
        given_n(split.test, 0)


def test_config_checks_model_tables():
    with pytest.raises(ConfigError, match="cold_items.models\\[0\\].name: unknown model 'contnet'.*content"):
        cold_start_config_from_dict({"cold_items": {"models": [{"name": "contnet"}]}})
    with pytest.raises(ConfigError, match="unknown config key 'new_users.fractoin'"):
        cold_start_config_from_dict({"new_users": {"fractoin": 0.1}})


def test_text_ranker_beats_genre_popularity_on_cold_items(synthetic, tmp_path):
    pytest.importorskip("sentence_transformers")
    config = cold_start_config_from_dict({
        "seeds": [0, 1],
        "cold_items": {"fraction": 0.2, "models": [
            {"name": "random"}, {"name": "genre-popular"},
            {"name": "content", "cache_dir": str(tmp_path), "device": "cpu"},
            {"name": "two-tower", "dim": 16, "hidden": [32], "max_history": 10, "id_dropout": 0.3,
             "text_cache_dir": str(tmp_path),
             "train": {"epochs": 10, "lr": 1e-2, "batch_size": 128, "num_threads": 1, "progress": False}}]},
        "new_users": {"fraction": 0.2, "given": [1, 3], "models": [
            {"name": "random"}, {"name": "content", "cache_dir": str(tmp_path), "device": "cpu"}]},
    })
    records = run_cold_start(config, dataset=synthetic)
    cold = {row["model"]: row for row in median_table(records, ("ndcg@10", "recall@20"), "cold-items")}
    assert cold["content"]["ndcg@10"] > cold["genre-popular"]["ndcg@10"] > 0
    assert cold["content"]["ndcg@10"] > 2 * cold["random"]["ndcg@10"]
    assert len(cold["content"]["ndcg@10_seeds"]) == 2
    for label in ("two-tower", "two-tower [text -> tower]", "two-tower [text -> ridge]"):
        assert cold[label]["ndcg@10"] > 2 * cold["random"]["ndcg@10"], label
    for n in (1, 3):
        new = {row["model"]: row for row in median_table(records, ("ndcg@10",), "new-users", given=n)}
        assert new["content"]["ndcg@10"] > new["random"]["ndcg@10"]
