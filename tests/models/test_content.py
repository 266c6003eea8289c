"""The content-based recommender on MiniLM embeddings of item text."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from recloop.artifact import load_model
from recloop.data import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models import MODELS, UNKNOWN_USER, ContentBased


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("embeddings"))


def cluster_of(dataset) -> np.ndarray:
    return dataset.item_features.categorical["genre"].matrix.indices  # one genre (topic) per item


def test_needs_item_features(synthetic, cache):
    with pytest.raises(ConfigError, match="item features"):
        ContentBased(cache_dir=cache).fit(synthetic.interactions)


def test_cold_item_of_the_users_topic_ranks_first(synthetic, cache):
    log, topic = synthetic.interactions, cluster_of(synthetic)
    cold = {c: np.flatnonzero(topic == c)[0] for c in np.unique(topic)}  # one cold item per topic
    is_cold = np.isin(log.item_idx, list(cold.values()))
    model = ContentBased(cache_dir=cache, device="cpu").fit(log.select(~is_cold), item_features=synthetic.item_features)
    assert model.item_features_ is synthetic.item_features
    for c, item in cold.items():
        # An anonymous user who consumed three warm items of topic c, ranked over the cold items only.
        warm = [i for i in np.flatnonzero(topic == c) if i not in cold.values()][:3]
        history = UserHistories.from_lists([warm], log.n_items)
        items, _ = model.recommend([UNKNOWN_USER], k=1, history=history, candidates=list(cold.values()))
        assert items[0, 0] == item


def test_scores_are_cosines_of_user_and_item_vectors(synthetic, cache):
    model = ContentBased(cache_dir=cache, device="cpu").fit(synthetic.interactions,
                                                            item_features=synthetic.item_features)
    users = np.arange(5)
    np.testing.assert_allclose(model.score(users), model.user_vectors(users) @ model.item_vectors().T, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors(), axis=1), 1.0, atol=1e-5)
    # text_to_item_vectors maps raw encoder output onto the stored item vectors
    raw = model.config.encoder().encode(synthetic.item_features.texts()[:4])
    np.testing.assert_allclose(model.text_to_item_vectors(raw), model.item_vectors()[:4], atol=1e-5)


def test_empty_history_falls_back_to_popularity(synthetic, cache):
    model = ContentBased(cache_dir=cache, device="cpu").fit(synthetic.interactions,
                                                            item_features=synthetic.item_features)
    scores = model.score([UNKNOWN_USER], UserHistories.from_lists([[]], model.n_items))[0]
    assert np.argmax(scores) == np.argmax(synthetic.interactions.item_counts())


def test_recency_weighting_follows_the_latest_items(synthetic, cache):
    topic = cluster_of(synthetic)
    a, b = np.flatnonzero(topic == 0), np.flatnonzero(topic == 1)
    history = UserHistories.from_lists([[*a[:4], b[0]]], len(topic))  # mostly topic 0, latest topic 1
    plain = ContentBased(cache_dir=cache, device="cpu").fit(synthetic.interactions,
                                                            item_features=synthetic.item_features)
    recent = ContentBased(cache_dir=cache, device="cpu", half_life=0.5).fit(
        synthetic.interactions, item_features=synthetic.item_features)
    candidates = [a[5], b[5]]
    assert plain.recommend([UNKNOWN_USER], 1, history=history, candidates=candidates)[0][0, 0] == a[5]
    assert recent.recommend([UNKNOWN_USER], 1, history=history, candidates=candidates)[0][0, 0] == b[5]


def test_save_load_round_trip_without_the_encoder(synthetic, cache, tmp_path):
    model = MODELS["content"](cache_dir=cache, device="cpu").fit(synthetic.interactions,
                                                                 item_features=synthetic.item_features)
    loaded = load_model(model.save(tmp_path / "content"))
    np.testing.assert_array_equal(loaded.score(np.arange(10)), model.score(np.arange(10)))


def test_item_without_any_interaction_gets_a_real_score(synthetic, cache):
    # An item in the vocabulary with no interaction at all is still scored from its text.
    log = synthetic.interactions
    lonely = int(np.argmin(log.item_counts()))
    keep = log.item_idx != lonely
    train = Interactions(log.user_idx[keep], log.item_idx[keep], log.users, log.items)
    model = ContentBased(cache_dir=cache, device="cpu").fit(train, item_features=synthetic.item_features)
    assert np.abs(model.item_vectors()[lonely]).sum() > 0
    assert len(np.unique(model.score([0])[0])) > model.n_items // 2
