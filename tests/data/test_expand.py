"""Fractal expansion: seeded, sized, shape-keeping, streamed into readable shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from recloop.data import ColumnMapping, Interactions, load_dataset
from recloop.data.expand import ExpansionConfig, expand, read_manifest, verify
from recloop.errors import ConfigError, DataError
from recloop.evaluate.metrics import gini

TARGET = 300_000


@pytest.fixture(scope="module")
def source(ml100k):
    return ml100k.interactions


@pytest.fixture(scope="module")
def expanded(source, tmp_path_factory):
    output = tmp_path_factory.mktemp("expansion") / "ml100k-300k"
    # Small shards so that the log is spread over several files.
    manifest = expand(source, TARGET, output, seed=7, config=ExpansionConfig(shard_rows=60_000),
                      source_name="ml-100k")
    return output, manifest


def _top_fifth_share(counts):
    return np.sort(counts)[::-1][: len(counts) // 5].sum() / counts.sum()


def _star_shares(rating):
    return np.bincount(rating.astype(int), minlength=6)[1:] / len(rating)


def _shard_hashes(manifest):
    return [shard["sha256"] for shard in manifest["shards"]]


def test_same_seed_gives_identical_shards_and_another_seed_does_not(source, expanded, tmp_path):
    _, manifest = expanded
    again = expand(source, TARGET, tmp_path / "again", seed=7, config=ExpansionConfig(shard_rows=60_000),
                   source_name="ml-100k")
    assert _shard_hashes(again) == _shard_hashes(manifest)
    other = expand(source, TARGET, tmp_path / "other", seed=8, config=ExpansionConfig(shard_rows=60_000),
                   source_name="ml-100k")
    assert other["interactions"] != manifest["interactions"] or _shard_hashes(other) != _shard_hashes(manifest)


def test_the_rows_do_not_depend_on_the_shard_size(source, expanded, tmp_path):
    output, manifest = expanded
    one = expand(source, TARGET, tmp_path / "one", seed=7, config=ExpansionConfig(shard_rows=10**9))
    assert len(one["shards"]) == 1 < len(manifest["shards"])
    many = pq.ParquetDataset(sorted(output.glob("*.parquet"))).read().to_pandas()
    single = pq.read_table(tmp_path / "one" / one["shards"][0]["file"]).to_pandas()
    key = ["user_id", "timestamp", "item_id"]
    assert many.sort_values(key).reset_index(drop=True).equals(single.sort_values(key).reset_index(drop=True))


def test_count_is_within_one_percent_of_the_target(expanded):
    output, manifest = expanded
    rows = sum(pq.ParquetFile(output / shard["file"]).metadata.num_rows for shard in manifest["shards"])
    assert rows == manifest["interactions"] == sum(shard["rows"] for shard in manifest["shards"])
    assert abs(rows - TARGET) / TARGET < 0.01
    assert manifest["relative_error"] == pytest.approx((rows - TARGET) / TARGET)


def test_the_expansion_keeps_the_popularity_and_activity_shapes(source, expanded):
    output, _ = expanded
    log = load_dataset(output).interactions
    assert log.n_users > 2 * source.n_users and log.n_items > 2 * source.n_items
    for counts_of in (lambda x: np.bincount(x.item_idx, minlength=x.n_items), lambda x: x.user_counts()):
        before, after = counts_of(source), counts_of(log)
        assert gini(after) == pytest.approx(gini(before), abs=0.04)
        assert _top_fifth_share(after) == pytest.approx(_top_fifth_share(before), abs=0.04)
        # The long tail is kept: the median over the mean stays where it was.
        assert np.median(after) / after.mean() == pytest.approx(np.median(before) / before.mean(), abs=0.1)


def test_ratings_and_timestamps_are_copied_from_the_source(source, expanded):
    output, _ = expanded
    log = load_dataset(output, columns=ColumnMapping(rating="rating", timestamp="timestamp")).interactions
    assert set(np.unique(log.timestamp)) <= set(np.unique(source.timestamp))
    np.testing.assert_allclose(_star_shares(log.rating), _star_shares(source.rating), atol=0.01)


def test_each_user_lives_in_one_shard_in_one_run_oldest_first(expanded):
    output, manifest = expanded
    seen: set[int] = set()
    for shard in manifest["shards"]:
        frame = pq.read_table(output / shard["file"]).to_pandas()
        users = frame["user_id"].to_numpy()
        assert not set(users.tolist()) & seen
        seen |= set(users.tolist())
        same_user = np.diff(users) == 0
        assert (~same_user).sum() + 1 == len(np.unique(users))  # one run of rows per user
        assert (np.diff(frame["timestamp"].to_numpy())[same_user] >= 0).all()
    assert len(seen) == manifest["active_users"]


def test_manifest_describes_the_shards_and_catches_a_changed_one(source, expanded, tmp_path):
    output, manifest = expanded
    assert read_manifest(output) == json.loads(json.dumps(manifest))
    assert manifest["source"] == {"name": "ml-100k", "interactions": len(source), "users": source.n_users,
                                  "items": source.n_items, "has_rating": True, "has_timestamp": True}
    assert manifest["seed"] == 7 and manifest["target_interactions"] == TARGET
    m, n = manifest["pattern_shape"]
    assert (manifest["users"], manifest["items"]) == (source.n_users * m, source.n_items * n)
    assert manifest["columns"] == ["user_id", "item_id", "timestamp", "rating"]
    assert verify(output) == manifest

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in output.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    first = copy / manifest["shards"][0]["file"]
    table = pq.read_table(first)
    pq.write_table(table.slice(1), first)
    with pytest.raises(DataError, match="SHA-256"):
        verify(copy)


def test_refuses_a_non_empty_folder_and_a_shrinking_target(source, tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        expand(source, 200_000, tmp_path, seed=0)
    with pytest.raises(DataError, match="at least as many"):
        expand(source, 1_000, tmp_path / "new", seed=0)


def test_a_log_without_ratings_or_times_expands_to_two_columns(tmp_path):
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 600)
    items = (rng.pareto(1.2, 600) * 5).astype(int) % 80  # a popularity tail
    log = Interactions.from_ids(users, items)
    manifest = expand(log, 6_000, tmp_path / "out", seed=1)
    assert manifest["columns"] == ["user_id", "item_id"]
    assert abs(manifest["interactions"] - 6_000) / 6_000 < 0.05
    table = pq.read_table(tmp_path / "out" / manifest["shards"][0]["file"])
    assert table.column_names == ["user_id", "item_id"]
    assert table.column("user_id").to_numpy().max() < manifest["users"]
    assert table.column("item_id").to_numpy().max() < manifest["items"]


def test_config_values_out_of_range_are_refused():
    with pytest.raises(ConfigError, match="block_density"):
        ExpansionConfig(block_density=0.0)
    with pytest.raises(ConfigError, match="shard_rows"):
        ExpansionConfig(shard_rows=0)
