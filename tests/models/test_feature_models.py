"""NeuMF, the feature MLP and the two-tower model: the shared contract, plus cold items
and users scored through features and text."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.artifact import load_model
from recloop.data import UserHistories
from recloop.errors import ConfigError
from recloop.models import UNKNOWN_USER, MLPRecommender, NeuMF, TwoTower
from recloop.models.two_tower import TowerData
from recloop.train.sampler import epoch_batches
from tests.models.contract import RecommenderContract

CACHE: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def embedding_cache(tmp_path_factory):
    CACHE["dir"] = str(tmp_path_factory.mktemp("embeddings"))
    return CACHE["dir"]


def tiny_train(**overrides):
    return {"epochs": 25, "lr": 1e-2, "batch_size": 128, "patience": 8, "seed": 0, "num_threads": 1,
            "progress": False, **overrides}


class TestNeuMFContract(RecommenderContract):
    min_ndcg = 0.2

    def make_model(self, seed):
        return NeuMF(factors=8, layers=(16, 8), train=tiny_train(seed=seed))


class TestMLPContract(RecommenderContract):
    min_ndcg = 0.2

    def make_model(self, seed):
        return MLPRecommender(dim=16, layers=(32,), train=tiny_train(seed=seed))


class TestTwoTowerContract(RecommenderContract):
    min_ndcg = 0.3

    def make_model(self, seed):
        pytest.importorskip("sentence_transformers")
        return TwoTower(dim=16, hidden=(32,), max_history=10, text_cache_dir=CACHE["dir"],
                        train=tiny_train(seed=seed, epochs=15))


class TestTwoTowerIdContract(RecommenderContract):
    """``item_repr = "id"``: ids and genres, no text (the encoder is never loaded)."""

    min_ndcg = 0.3

    def make_model(self, seed):
        return TwoTower(item_repr="id", dim=16, hidden=(32,), max_history=10, train=tiny_train(seed=seed, epochs=15))


class TestTwoTowerTextContract(RecommenderContract):
    """``item_repr = "text"``: the item is its text through a 4-expert adaptor, nothing else."""

    min_ndcg = 0.3

    def make_model(self, seed):
        pytest.importorskip("sentence_transformers")
        return TwoTower(item_repr="text", use_genres=False, n_experts=4, adaptor_dropout=0.1, dim=16, hidden=(32,),
                        max_history=10, text_cache_dir=CACHE["dir"], train=tiny_train(seed=seed, epochs=15))


# --- cold items and users -----------------------------------------------------------------------------
def topics(dataset) -> np.ndarray:
    return dataset.item_features.categorical["genre"].matrix.indices  # one topic per synthetic item


def without_items(log, items):
    return log.select(~np.isin(log.item_idx, items))


@pytest.fixture(scope="module")
def cold_setup(synthetic):
    """The synthetic log minus one planted cold item per topic."""
    topic = topics(synthetic)
    cold = np.array([np.flatnonzero(topic == c)[0] for c in np.unique(topic)])
    return synthetic, without_items(synthetic.interactions, cold), cold


@pytest.fixture(scope="module")
def two_tower(cold_setup):
    pytest.importorskip("sentence_transformers")
    dataset, train, _ = cold_setup
    return TwoTower(dim=16, hidden=(32,), max_history=10, id_dropout=0.3, text_cache_dir=CACHE["dir"],
                    train=tiny_train(epochs=12, patience=0)).fit(train, item_features=dataset.item_features)


def topic_users(dataset, cold, n_warm=4):
    """One anonymous history per topic: its first ``n_warm`` warm items."""
    topic = topics(dataset)
    rows = [[i for i in np.flatnonzero(topic == topic[c]) if i not in cold][:n_warm] for c in cold]
    return UserHistories.from_lists(rows, len(topic))


@pytest.mark.parametrize("projection", ["tower", "ridge"])
def test_two_tower_ranks_the_planted_cold_item_of_the_users_topic_first(two_tower, cold_setup, projection):
    dataset, _, cold = cold_setup
    text = two_tower.embed_items(dataset.item_features.take(cold))
    cold_vectors = two_tower.text_to_item_vectors(text, projection=projection)  # (n_topics, d)
    histories = topic_users(dataset, cold)
    users = two_tower.user_vectors(np.full(len(cold), UNKNOWN_USER), histories)
    ranked_first = np.argmax(users @ cold_vectors.T, axis=1)
    assert (ranked_first == np.arange(len(cold))).mean() >= 5 / 6


def test_two_tower_scores_in_catalog_cold_items_from_their_content(two_tower, cold_setup):
    dataset, _, cold = cold_setup
    assert not two_tower.item_known_[cold].any()
    items, _ = two_tower.recommend(np.full(len(cold), UNKNOWN_USER), k=1, history=topic_users(dataset, cold),
                                   candidates=cold)
    assert (items[:, 0] == cold).mean() >= 5 / 6


def test_two_tower_scores_are_dot_products_of_its_vectors(two_tower, synthetic):
    users = np.arange(6)
    history = two_tower.history_.histories(users)
    np.testing.assert_allclose(two_tower.score(users, history),
                               two_tower.user_vectors(users, history) @ two_tower.item_vectors().T, atol=1e-5)
    counts = two_tower.history_.item_counts()
    warm = counts > 0
    np.testing.assert_allclose(two_tower.log_q_[warm], np.log(counts[warm] / counts.sum()), rtol=1e-5)


def test_two_tower_text_projection_round_trips_through_save(two_tower, cold_setup, tmp_path):
    dataset, _, cold = cold_setup
    loaded = load_model(two_tower.save(tmp_path / "tt"))
    text = two_tower.embed_items(dataset.item_features.take(cold))
    for projection in ("tower", "ridge"):
        np.testing.assert_allclose(loaded.text_to_item_vectors(text, projection),
                                   two_tower.text_to_item_vectors(text, projection), atol=1e-6)


@pytest.fixture(scope="module")
def bare_towers(cold_setup):
    """Text-only and fused two-towers with no genres and no MLP, trained without the
    planted cold items: an item vector is then ``normalise(item part)`` exactly."""
    pytest.importorskip("sentence_transformers")
    dataset, train, _ = cold_setup
    options = {"dim": 16, "hidden": (), "max_history": 10, "use_genres": False, "n_experts": 3,
               "text_cache_dir": CACHE["dir"], "train": tiny_train(epochs=12, patience=0)}
    return {item_repr: TwoTower(item_repr=item_repr, **options).fit(train, item_features=dataset.item_features)
            for item_repr in ("text", "fused")}


def test_text_only_two_tower_has_no_per_item_parameter(bare_towers, cold_setup):
    model = bare_towers["text"]
    assert model.network_.item_id is None
    n_items = cold_setup[0].interactions.n_items
    assert all(n_items not in p.shape for p in model.network_.parameters())
    fused_shapes = [p.shape for p in bare_towers["fused"].network_.parameters()]
    assert (n_items, 16) in fused_shapes  # the fused model's id table, absent from the text model


def test_text_only_two_tower_ranks_the_planted_cold_item_by_its_text(bare_towers, cold_setup):
    """No genres, no ids: only its text can tell the cold item of a user's topic apart."""
    dataset, _, cold = cold_setup
    model = bare_towers["text"]
    items, _ = model.recommend(np.full(len(cold), UNKNOWN_USER), k=1, history=topic_users(dataset, cold),
                               candidates=cold)
    assert (items[:, 0] == cold).mean() >= 5 / 6


def test_fused_item_is_its_id_plus_the_adaptors_image_of_its_text(bare_towers, cold_setup):
    import torch
    import torch.nn.functional as F

    model = bare_towers["fused"]
    net = model.network_
    with torch.no_grad():
        text = net.text.eval()(torch.from_numpy(model.item_text_))  # the adaptor, (n_items, d)
        known = torch.from_numpy(model.item_known_.astype(np.float32))[:, None]
        expected = F.normalize(net.item_id.weight * known + text, dim=-1).numpy()
        text_only = F.normalize(text, dim=-1).numpy()
    np.testing.assert_allclose(model.item_vectors(), expected, atol=1e-6)
    cold = cold_setup[2]
    # A cold item (no training interactions) has its id zeroed: it is its text part alone,
    # the vector text_to_item_vectors gives its text.
    np.testing.assert_allclose(model.item_vectors()[cold], text_only[cold], atol=1e-6)
    np.testing.assert_allclose(model.text_to_item_vectors(model.item_text_[cold], "tower"), text_only[cold], atol=1e-6)
    warm = np.flatnonzero(model.item_known_)
    assert np.abs(model.item_vectors()[warm] - text_only[warm]).max() > 0.1  # the id part counts for warm items


@pytest.mark.parametrize("item_repr", ["text", "fused"])
def test_two_tower_with_text_round_trips_through_save(bare_towers, item_repr, tmp_path):
    model = bare_towers[item_repr]
    loaded = load_model(model.save(tmp_path / item_repr))
    assert loaded.config.item_repr == item_repr and loaded.config.n_experts == 3
    users = np.arange(8)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    np.testing.assert_array_equal(loaded.text_to_item_vectors(model.item_text_[:5]),
                                  model.text_to_item_vectors(model.item_text_[:5]))


def test_two_tower_rejects_bad_item_representations():
    with pytest.raises(ConfigError, match="item_repr must be one of .*'both'"):
        TwoTower(item_repr="both")
    with pytest.raises(ConfigError, match="n_experts must be at least 1, got 0"):
        TwoTower(n_experts=0)
    with pytest.raises(ConfigError, match="adaptor_dropout must be in"):
        TwoTower(adaptor_dropout=1.0)
    with pytest.raises(ConfigError, match="unknown config key 'TwoTower.use_ids'.*item_repr"):
        TwoTower(use_ids=False)  # the former switches: item_repr says it now


def test_an_id_only_two_tower_refuses_to_place_items_by_text(synthetic):
    model = TwoTower(item_repr="id", dim=8, hidden=(), max_history=5, train=tiny_train(epochs=1)).fit(
        synthetic.interactions, item_features=synthetic.item_features)
    assert model.network_.text is None and model.item_text_.shape[1] == 0
    with pytest.raises(ConfigError, match="item_repr = 'id'"):
        model.text_to_item_vectors(np.zeros((1, 384), dtype=np.float32))


def test_feature_mlp_scores_cold_items_by_their_genre(cold_setup):
    dataset, train, cold = cold_setup
    model = MLPRecommender(dim=16, layers=(32,), id_dropout=0.3, train=tiny_train(epochs=15, patience=0)).fit(
        train, item_features=dataset.item_features)
    # A training user devoted to one topic (most of their history in it) prefers its cold item.
    topic = topics(dataset)
    hits = []
    for user in range(train.n_users):
        own = topic[train.histories([user]).row(0)]
        if len(own) >= 8 and (own == own[0]).mean() > 0.9:
            items, _ = model.recommend([user], k=1, candidates=cold)
            hits.append(topic[items[0, 0]] == own[0])
    assert len(hits) >= 10 and np.mean(hits) >= 0.5  # chance: 1/6


def test_models_needing_features_say_so(synthetic):
    with pytest.raises(ConfigError, match="item_features=dataset.item_features"):
        TwoTower(train=tiny_train(epochs=1)).fit(synthetic.interactions)
    with pytest.raises(ConfigError, match="item_features=dataset.item_features"):
        MLPRecommender(train=tiny_train(epochs=1)).fit(synthetic.interactions)
    with pytest.raises(ConfigError, match="layers\\[0\\].*even"):
        NeuMF(layers=(15, 8))
    with pytest.raises(ConfigError, match="projection"):
        TwoTower(projection="linear")


def former_tower_batch(log, index, max_history, rng):
    """The former TowerData: int64 (user, item) arrays of every pair, histories drawn row by row."""
    csr = log.to_csr()
    coo = csr.tocoo()
    users, targets = coo.row[index].astype(np.int64), coo.col[index].astype(np.int64)
    history = np.full((len(index), max_history), log.n_items, dtype=np.int64)
    for row, (user, target) in enumerate(zip(users, targets)):
        own = csr.indices[csr.indptr[user]:csr.indptr[user + 1]].astype(np.int64)
        own = own[own != target]
        if len(own) > max_history:
            own = rng.choice(own, max_history, replace=False)
        history[row, :len(own)] = own
    return users, targets, history


def test_tower_data_is_the_int32_csr_and_batches_as_before(synthetic, tmp_path):
    log = synthetic.interactions
    data = TowerData.from_log(log, max_history=5, seed=2)
    assert len(data) == log.to_csr().nnz and data.items.dtype == np.int32
    data.save(tmp_path)
    mapped = TowerData.open(tmp_path, log.n_items, 5, seed=2)
    assert isinstance(mapped.items, np.memmap)
    reference_rng = np.random.default_rng([2, 1])
    for index in epoch_batches(len(data), 64, epoch=1, seed=0)[:20]:
        users, targets, history = former_tower_batch(log, index, 5, reference_rng)
        for source in (data, mapped):
            batch = source.batch(index)
            np.testing.assert_array_equal(batch["user"].numpy(), users)
            np.testing.assert_array_equal(batch["item"].numpy(), targets)
            # each source has its own generator seeded as the reference's: the same draws
            np.testing.assert_array_equal(batch["history"].numpy(), history)


def test_two_tower_trains_the_same_from_memory_mapped_data(synthetic, tmp_path):
    options = {"dim": 8, "hidden": (8,), "max_history": 5, "use_genres": False, "item_repr": "id",
               "user_features": False, "train": tiny_train(epochs=1, seed=4, patience=0)}
    in_memory = TwoTower(**options).fit(synthetic.interactions)
    mapped = TwoTower(**options, train_data_dir=str(tmp_path)).fit(synthetic.interactions)
    assert (tmp_path / "items.npy").exists()
    assert mapped.train_result_.history[-1].loss == in_memory.train_result_.history[-1].loss
    np.testing.assert_array_equal(mapped.item_vectors(), in_memory.item_vectors())
