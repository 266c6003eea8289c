"""LightGCN and its social variant: the model contract, the propagation matrix, the
friend graph's effect and the social fallback, on small planted data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.artifact import load_artifact
from recloop.data import Dataset, IdMap, Interactions, UserHistories
from recloop.data.social import UserGraph, friend_item_share, social_fallback
from recloop.errors import ConfigError
from recloop.evaluate import Evaluator
from recloop.models import MODELS, UNKNOWN_USER, LightGCN, SocialLightGCN
from recloop.models.lightgcn import normalized_bipartite
from tests.models.contract import RecommenderContract

TRAIN = {"epochs": 30, "batch_size": 512, "lr": 0.02, "eval_every": 5, "patience": 3, "num_threads": 1,
         "progress": False}


class TestLightGCNContract(RecommenderContract):
    min_ndcg = 0.15

    def make_model(self, seed: int) -> LightGCN:
        return LightGCN(factors=16, layers=2, train={**TRAIN, "seed": seed})


class TestSocialLightGCNContract(RecommenderContract):
    """The social variant on the contract's planted data, with a random friend graph
    (five friends each): it must still learn the pattern and keep every promise."""

    min_ndcg = 0.15

    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls):
        import dataclasses

        from recloop.data import generate
        from tests.models.contract import CONTRACT_DATA

        data = generate(CONTRACT_DATA, name="contract")
        users = data.interactions.users
        rng = np.random.default_rng(0)
        source = np.repeat(np.arange(len(users)), 5)
        graph = UserGraph.from_index_pairs(users, source, rng.integers(0, len(users), len(source)))
        return dataclasses.replace(data, user_graph=graph)

    def make_model(self, seed: int) -> SocialLightGCN:
        return SocialLightGCN(factors=16, layers=2, train={**TRAIN, "seed": seed})


def test_registered():
    assert MODELS["lightgcn"] is LightGCN and MODELS["social-lightgcn"] is SocialLightGCN


def test_propagation_matrix_is_the_symmetric_normalised_bipartite_graph():
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))  # user 0 has items 0, 1; user 1 item 1
    a = normalized_bipartite(r, 2).toarray()
    assert a.shape == (5, 5) and np.allclose(a, a.T)
    # entry (user 0, item 1) = 1 / sqrt(deg(user 0) * deg(item 1)) = 1 / sqrt(2 * 2)
    assert a[0, 2 + 1] == pytest.approx(0.5)
    assert a[1, 2 + 1] == pytest.approx(1 / np.sqrt(2))
    assert a[:2, :2].sum() == 0 and a[2:, 2:].sum() == 0  # no user-user or item-item edges


# --- a planted social world ---------------------------------------------------------------------------
def social_world(n_groups: int = 4, per_group: int = 30, items_per_group: int = 12, seed: int = 0):
    """Users in groups; every group listens to its own items, plus one hub item everybody
    has. Friends are users of the same group. The last user of every group is cold: their
    only training item is the hub, so only their friends tell their group."""
    rng = np.random.default_rng(seed)
    users, items, cold, test_users, test_items = [], [], [], [], []
    hub = n_groups * items_per_group
    for g in range(n_groups):
        own = np.arange(g * items_per_group, (g + 1) * items_per_group)
        for j in range(per_group):
            u = g * per_group + j
            picks = rng.choice(own, size=6, replace=False)
            if j == per_group - 1:
                cold.append(u)
                users += [u]
                items += [hub]
                test_users += [u] * 3
                test_items += list(picks[:3])
            else:
                users += [u] * 7
                items += [hub, *picks]
    n_users, n_items = n_groups * per_group, hub + 1
    user_ids, item_ids = IdMap(range(n_users), "user"), IdMap(range(n_items), "item")
    train = Interactions(np.array(users), np.array(items), user_ids, item_ids)
    test = Interactions(np.array(test_users), np.array(test_items), user_ids, item_ids)
    group = np.arange(n_users) // per_group
    source, target = np.nonzero(group[:, None] == group[None, :])
    graph = UserGraph.from_index_pairs(user_ids, source, target)
    return Dataset("social-world", train, user_graph=graph), test, np.array(cold)


@pytest.fixture(scope="module")
def world():
    return social_world()


def _cold_ndcg(model, world) -> float:
    dataset, test, _ = world
    return Evaluator(k=(10,), metrics=("ndcg",), beyond=()).evaluate(model, test, dataset.interactions)["ndcg@10"]


@pytest.fixture(scope="module")
def plain(world):
    dataset = world[0]
    return LightGCN(factors=16, layers=2, train=TRAIN).fit(dataset.interactions, user_graph=dataset.user_graph)


@pytest.fixture(scope="module")
def social(world):
    dataset = world[0]
    model = SocialLightGCN(factors=16, layers=2, social_weight=0.5, fallback_history=0, train=TRAIN)
    return model.fit(dataset.interactions, user_graph=dataset.user_graph)


def test_friend_edges_in_the_propagation_find_a_cold_users_group(world, plain, social):
    # the cold users' only item is the hub: LightGCN cannot tell their group, the friends can.
    # Their 3 targets are among the 12 items of the group: ranking the group first, in any
    # order, gives NDCG@10 about 0.45 on average.
    social_ndcg, plain_ndcg = _cold_ndcg(social, world), _cold_ndcg(plain, world)
    assert social_ndcg >= 0.35, (social_ndcg, plain_ndcg)
    assert social_ndcg > 2 * plain_ndcg, (social_ndcg, plain_ndcg)


def test_social_fallback_ranks_what_friends_have(world):
    dataset, _, cold = world
    model = SocialLightGCN(factors=16, layers=2, social_weight=0.0, fallback_history=1, fallback_weight=1.0,
                           train={**TRAIN, "epochs": 5})
    model.fit(dataset.interactions, user_graph=dataset.user_graph)
    assert _cold_ndcg(model, world) >= 0.35
    items, _ = model.recommend(cold[:1], k=12)
    group_items = set(range(12))  # cold[0] is in group 0
    assert set(items[0]) == group_items


def test_the_social_model_needs_a_friend_graph(world):
    with pytest.raises(ConfigError, match="friend graph"):
        SocialLightGCN(train={**TRAIN, "epochs": 1}).fit(world[0].interactions)


def test_the_friend_graph_is_saved_with_the_model(world, social, tmp_path):
    loaded = load_artifact(social.save(tmp_path / "social")).model
    assert loaded.user_graph_ is not None
    assert np.array_equal(loaded.user_graph_.indices, social.user_graph_.indices)
    users = np.arange(10)
    np.testing.assert_allclose(loaded.score(users), social.score(users), rtol=1e-5, atol=1e-6)


def test_unknown_users_are_folded_in_from_their_items(plain):
    history = UserHistories.from_lists([[0, 1, 2]], plain.n_items)
    _, items = plain.final_embeddings()
    expected = items[[0, 1, 2]].mean(axis=0) @ items.T
    np.testing.assert_allclose(plain.score([UNKNOWN_USER], history)[0], expected, rtol=1e-5, atol=1e-5)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ConfigError, match="layers"):
        LightGCN(layers=-1)
    with pytest.raises(ConfigError, match="social_weight"):
        SocialLightGCN(social_weight=1.5)


# --- the social helpers -----------------------------------------------------------------------------------
def test_friend_item_share_is_the_share_of_friends_having_each_item():
    user_items = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    friends = sp.csr_matrix(np.array([[0, 1, 1], [0, 0, 0]], dtype=np.float32))
    share = friend_item_share(friends, user_items)
    np.testing.assert_allclose(share, [[0.5, 0.5, 0.5], [0, 0, 0]])


def test_social_fallback_blends_on_one_scale():
    scores = np.array([[10.0, 0.0, 5.0]], dtype=np.float32)
    share = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(social_fallback(scores, share, 0.5), [[0.5, 0.5, 0.25]])
    assert np.argmax(social_fallback(scores, share, 1.0)) == 1
    assert np.argmax(social_fallback(scores, share, 0.0)) == 0


def test_propagation_gradient_uses_the_transpose():
    import torch

    from recloop.models.lightgcn import _csr_tensor, _Propagate

    dense = np.array([[0.0, 0.5, 0.0], [0.2, 0.0, 0.7], [0.0, 0.3, 0.1]], dtype=np.float32)  # not symmetric
    matrix = sp.csr_matrix(dense)
    x = torch.randn(3, 4, requires_grad=True)
    out = _Propagate.apply(x, _csr_tensor(matrix), _csr_tensor(matrix.T.tocsr()))
    weights = torch.randn(3, 4)
    (out * weights).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), dense @ x.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), dense.T @ weights.numpy(), rtol=1e-5, atol=1e-6)
