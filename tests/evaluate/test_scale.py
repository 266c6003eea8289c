"""Evaluation at scale: a memory budget per batch instead of a user count, and a seeded
sample of users with its size, its population and confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloop.data import UserHistories, leave_one_out
from recloop.errors import ConfigError
from recloop.evaluate import EvaluationConfig, Evaluator
from recloop.evaluate import metrics as M
from recloop.models import EASE, MostPopular


def test_users_per_batch_follows_the_byte_budget():
    config = EvaluationConfig()  # 256 MiB
    # 1e6 items: a float32 row is 4 MB, so 67 users make a 268 MB (256 MiB) block
    assert config.users_per_batch(1_000_000) == 67
    assert 67 * 1_000_000 * 4 <= config.max_batch_bytes < 68 * 1_000_000 * 4
    assert config.users_per_batch(1_682) == config.batch_size  # small catalogs: the user cap binds
    assert EvaluationConfig(max_batch_bytes=100).users_per_batch(1_000_000) == 1  # never zero users
    assert EvaluationConfig(max_batch_bytes=4 * 120 * 7).users_per_batch(120) == 7


def test_score_blocks_stay_within_the_budget(synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=50).fit(parts.train)
    rows_seen = []
    original = model.score

    def recording_score(user_idx, history=None):
        scores = original(user_idx, history)
        rows_seen.append(scores.shape[0])
        assert scores.nbytes <= budget
        return scores

    model.score = recording_score
    budget = 4 * model.n_items * 13 + 5  # room for 13 users, not 14
    Evaluator(max_batch_bytes=budget).evaluate(model, parts.test, parts.history("test"))
    assert max(rows_seen) == 13 and sum(rows_seen) == len(parts.test.active_users())


@pytest.mark.parametrize("model_class", [EASE, MostPopular])  # MostPopular: ties at the cut in every row
def test_budget_gives_the_same_metrics_as_one_block_on_ml100k(ml100k, model_class):
    parts = leave_one_out(ml100k.interactions)
    model = (EASE(l2=500.0) if model_class is EASE else MostPopular()).fit(parts.train)
    n_items = parts.train.n_items
    one_block = Evaluator(batch_size=10_000, max_batch_bytes=2**40).evaluate(model, parts.test, parts.history("test"))
    assert one_block.population == len(one_block.users) == ml100k.interactions.n_users
    for users in (1, 37):
        budgeted = Evaluator(max_batch_bytes=4 * n_items * users).evaluate(model, parts.test, parts.history("test"))
        np.testing.assert_array_equal(budgeted.recommendations, one_block.recommendations)
        assert budgeted.per_user.keys() == one_block.per_user.keys()
        for name in one_block.per_user:
            np.testing.assert_array_equal(budgeted.per_user[name], one_block.per_user[name])
        assert budgeted.aggregate == one_block.aggregate


def test_user_sample_is_seeded_and_its_interval_covers_the_full_value(synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = EASE(l2=50).fit(parts.train)
    target, history = parts.test, parts.history("test")
    full = Evaluator(k=(10,)).evaluate(model, target, history)
    a = Evaluator(k=(10,), sample_users=120, seed=3).evaluate(model, target, history)
    b = Evaluator(k=(10,), sample_users=120, seed=3).evaluate(model, target, history)
    c = Evaluator(k=(10,), sample_users=120, seed=4).evaluate(model, target, history)
    population = len(target.active_users())
    assert len(a.users) == 120 and a.population == population == len(full.users) and a.sampled and not full.sampled
    np.testing.assert_array_equal(a.users, b.users)  # same seed, same users, same values
    assert a.summary() == b.summary()
    assert not np.array_equal(a.users, c.users)
    assert np.isin(a.users, full.users).all() and len(np.unique(a.users)) == 120
    # each sampled user's values are exactly the full run's for that user
    rows = np.searchsorted(full.users, a.users)
    np.testing.assert_array_equal(a.per_user["ndcg@10"], full.per_user["ndcg@10"][rows])
    for metric in ("ndcg@10", "hr@10", "recall@10", "novelty@10"):
        interval = a.interval(metric)
        assert interval.n == 120 and interval.low < full[metric] < interval.high, metric
    record = a.to_dict()
    assert record["n_users"] == 120 and record["population_users"] == population and record["sampled_users"]
    assert a.users_note() == f"on a sample of 120 of {population} users (seed 3)"
    assert full.users_note() == f"on all {population} users"
    # a sample at least as large as the population is the population
    everyone = Evaluator(k=(10,), sample_users=10 * population).evaluate(model, target, history)
    np.testing.assert_array_equal(everyone.users, full.users)
    assert not everyone.sampled


def test_sample_and_budget_are_validated():
    with pytest.raises(ConfigError, match="sample_users"):
        EvaluationConfig(sample_users=-1)
    with pytest.raises(ConfigError, match="max_batch_bytes"):
        EvaluationConfig(max_batch_bytes=0)


def test_sampled_protocol_draws_distinct_unseen_negatives_at_any_catalog_size(synthetic):
    n_items, n_negatives = 50_000, 30
    seen = UserHistories.from_lists([[0, 1, 2, 49_999], [], [10, 20]], n_items)
    targets = sp.csr_matrix((np.ones(3, np.float32), np.array([5, 7, 11]), np.array([0, 1, 2, 3])),
                            shape=(3, n_items))
    scores = torch.zeros(3, n_items)
    evaluator = Evaluator(protocol="sampled", n_negatives=n_negatives)
    evaluator._restrict_to_sampled(scores, seen, targets, np.random.default_rng(0))
    for r in range(3):
        allowed = torch.isfinite(scores[r]).nonzero().flatten().numpy()
        assert len(allowed) == n_negatives + 1 and targets.indices[r] in allowed
        assert not np.isin(seen.row(r), allowed).any()


def test_diversity_in_user_chunks_matches_one_pass_and_takes_sparse_vectors():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 4))
    lists = rng.integers(-1, 50, size=(23, 5))
    whole = M.intra_list_diversity(lists, vectors)
    np.testing.assert_allclose(M.intra_list_diversity(lists, vectors, chunk_users=4), whole)
    genres = sp.csr_matrix((rng.random((50, 6)) > 0.6).astype(np.float32))
    np.testing.assert_allclose(M.intra_list_diversity(lists, genres, chunk_users=7),
                               M.intra_list_diversity(lists, genres.toarray()))


def test_reports_say_the_metrics_are_on_a_sample(synthetic, tmp_path):
    from recloop.report import comparison_table, write_html_report

    parts = leave_one_out(synthetic.interactions)
    population = len(parts.test.active_users())
    evaluator = Evaluator(k=(10,), sample_users=50, seed=1)
    results = {name: evaluator.evaluate(model.fit(parts.train), parts.test, parts.history("test"))
               for name, model in (("ease", EASE(l2=50)), ("pop", MostPopular()))}
    note = f"evaluated on a sample of 50 of {population} users (seed 1)"
    assert comparison_table(results).endswith(f"({note})")
    html = write_html_report(tmp_path / "r.html", "t", results, {"ease": 0.1, "pop": 0.1},
                             parts.train.item_counts(), {}).read_text()
    assert note in html
    full = {"ease": Evaluator(k=(10,)).evaluate(EASE(l2=50).fit(parts.train), parts.test, parts.history("test"))}
    assert "sample" not in comparison_table(full)
