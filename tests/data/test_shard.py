"""A log split by user: the owner hash, loading by shard, preprocessing with summed counts,
per-rank sampling, and the settings a split log refuses. Ranks are simulated by threads
that sum through a barrier, so these run without a process group; the 2-process run is
tests/train/test_distributed_shard.py."""

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.config import DataConfig, ExperimentConfig, ModelSpec
from recloop.data import ColumnMapping, load_dataset
from recloop.data.preprocess import PreprocessConfig, k_core, preprocess
from recloop.data.shard import UserShard, keep_shard, stable_hash
from recloop.data.splits import SplitConfig
from recloop.data.synthetic import SyntheticConfig, generate
from recloop.errors import ConfigError
from recloop.train import distributed
from recloop.train.sampler import shard_batches, shard_steps


class ThreadSum:
    """``sum_across`` for ``n`` ranks running as threads of one process."""

    def __init__(self, n: int):
        self.barrier, self.parts = threading.Barrier(n), [None] * n

    def for_rank(self, rank: int):
        def sum_across(values):
            self.parts[rank] = np.asarray(values)
            self.barrier.wait()
            total = np.sum(self.parts, axis=0)
            self.barrier.wait()  # nobody overwrites its part before everyone has read them
            return total
        return sum_across


def run_ranks(n: int, work):
    """``work(shard)`` on ``n`` simulated ranks; their results in rank order."""
    adder, results, errors = ThreadSum(n), [None] * n, []

    def run(rank):
        try:
            results[rank] = work(UserShard(rank, n, adder.for_rank(rank)))
        except Exception as error:  # noqa: BLE001 - re-raised below
            errors.append(error)
            adder.barrier.abort()
    threads = [threading.Thread(target=run, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_owner_hash_is_fixed_and_depends_on_the_id_text_only():
    # Fixed values: every machine and process must agree (Python's str hash is salted).
    assert stable_hash(["42", "a"]).tolist() == [11828931283358464770, 198367012849983736]
    assert stable_hash(np.array([42]))[0] == stable_hash(["42"])[0]  # an integer column and its text
    ids = [f"user-{i}" for i in range(10_000)]
    owners = stable_hash(ids) % np.uint64(4)
    assert np.bincount(owners.astype(np.int64), minlength=4).min() > 2_300  # balanced: 2,500 expected
    with pytest.raises(ConfigError, match="rank 2 of 2"):
        UserShard(2, 2)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_loading_by_shard_keeps_its_users_rows_over_the_global_vocabularies(tmp_path, suffix):
    log = generate(SyntheticConfig(n_users=200, n_items=60, seed=3)).interactions
    table = pa.table({"user": log.users.ids[log.user_idx].astype(str), "item": log.items.ids[log.item_idx].astype(str),
                      "rating": np.arange(len(log), dtype=np.float32), "time": log.timestamp})
    path = tmp_path / f"log{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path)
    else:
        table.to_pandas().to_csv(path, index=False)
    columns = ColumnMapping("user", "item", "rating", "time")
    whole = load_dataset(path, columns=columns)
    total = 0
    for rank in range(3):
        shard = UserShard(rank, 3)
        part = load_dataset(path, columns=columns, shard=shard).interactions
        expected = keep_shard(whole, shard).interactions
        assert part.users == whole.interactions.users and part.items == whole.interactions.items
        for name in ("user_idx", "item_idx", "rating", "timestamp"):
            np.testing.assert_array_equal(getattr(part, name), getattr(expected, name), err_msg=name)
        assert (shard.owners(part.users)[part.user_idx] == rank).all()
        total += len(part)
    assert total == len(whole.interactions)


def test_preprocessing_on_shards_keeps_what_one_process_keeps():
    dataset = generate(SyntheticConfig(n_users=300, n_items=200, mean_interactions=8, min_interactions=1, seed=4))
    config = PreprocessConfig(deduplicate="last", user_core=5, item_core=8)
    single = preprocess(dataset, config).interactions
    assert len(single) < len(dataset.interactions)  # k-core removed users and items over several rounds
    parts = run_ranks(2, lambda shard: preprocess(keep_shard(dataset, shard), config, shard).interactions)
    for rank, part in enumerate(parts):
        assert part.users == single.users and part.items == single.items  # same ids, same indices
        expected = single.select(UserShard(rank, 2).rows(single.users, single.user_idx))
        np.testing.assert_array_equal(part.user_idx, expected.user_idx)
        np.testing.assert_array_equal(part.item_idx, expected.item_idx)
    # Item counts are global: a k-core on one shard alone would keep other items.
    alone = k_core(keep_shard(dataset, UserShard(0, 2)).interactions, 5, 8)
    assert len(alone) != len(parts[0])


def test_each_rank_samples_its_own_examples_for_the_agreed_steps():
    sizes = [37, 50]  # unequal shards
    steps = max(shard_steps(n, 16, 2) for n in sizes)
    assert steps == 7  # 50 examples, 8 a step
    for rank, n in enumerate(sizes):
        batches = shard_batches(n, 16, epoch=1, seed=0, rank=rank, world_size=2, steps=steps)
        assert len(batches) == steps and all(len(b) <= 8 for b in batches)
        first = np.concatenate(batches)[:n]
        assert sorted(first.tolist()) == list(range(n))  # a full pass over its examples first
    # Seeded by (seed, epoch, rank): reproducible, and the ranks shuffle differently.
    again = shard_batches(50, 16, epoch=1, seed=0, rank=1, world_size=2, steps=steps)
    assert all(np.array_equal(a, b) for a, b in zip(again, shard_batches(50, 16, epoch=1, seed=0, rank=1,
                                                                         world_size=2, steps=steps), strict=True))
    with pytest.raises(ConfigError, match="holds no training examples"):
        shard_batches(0, 16, epoch=1, seed=0, rank=1, world_size=2, steps=3)


@pytest.fixture
def two_rank_job(monkeypatch):
    """This process poses as rank 0 of 2 (no process group: the refusals come first)."""
    monkeypatch.setattr(distributed, "_current", distributed.DistributedContext(0, 2, 0, "gloo"))


def test_a_temporal_split_is_refused_on_shards(two_rank_job):
    from recloop.experiment import prepare_data

    config = ExperimentConfig(data=DataConfig(dataset="synthetic", shard_by_user=True),
                              split=SplitConfig(method="temporal"))
    with pytest.raises(ConfigError, match="temporal"):
        prepare_data(config)


def test_a_model_not_trained_by_the_trainer_is_refused_on_shards(monkeypatch):
    from recloop.experiment import PreparedData, run_model

    monkeypatch.setattr(distributed, "_current", distributed.DistributedContext(0, 2, 0, "gloo", shard_data=True))
    dataset = generate(SyntheticConfig(n_users=50, n_items=20))
    config = ExperimentConfig(models=(ModelSpec("als"),))
    with pytest.raises(ConfigError, match="als is not trained by recloop's Trainer"):
        run_model(config.model, PreparedData(dataset, None), config)
