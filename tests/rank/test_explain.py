"""Explanations: the history item with the largest weight into the item, shared genres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.data.interactions import Interactions, UserHistories
from recloop.models import EASE, Recommender
from recloop.rank.explain import Explainer, item_item_matrix, render_reason


@pytest.fixture(scope="module")
def ease(synthetic):
    return EASE(l2=20).fit(synthetic.interactions, item_features=synthetic.item_features)


def test_ease_reason_is_the_history_item_with_the_largest_weight(ease, synthetic):
    explainer = Explainer(ease, synthetic.item_features)
    for user in range(5):
        history = ease.history_.histories([user]).row(0)
        items, _ = ease.recommend([user], 5)
        reasons = explainer.explain(items[0], history)
        for item, item_reasons in zip(items[0], reasons, strict=True):
            weights = ease.weights_[history, item]
            top = history[np.argmax(weights)]
            because = item_reasons[0]
            assert because["type"] == "because_you_interacted" and because["basis"] == "item_weight"
            assert because["item_id"] == ease.items_.id(top)
            assert because["title"] == synthetic.item_features.text["title"][top]
            assert because["weight"] == pytest.approx(weights.max(), rel=1e-5)


def test_shared_genres_are_those_of_the_because_item_not_the_profile(ease, synthetic):
    genres = synthetic.item_features.categorical["genre"]
    explainer = Explainer(ease, synthetic.item_features)
    for user in range(10):
        history = ease.history_.histories([user]).row(0)
        items, _ = ease.recommend([user], 5)
        for item, reasons in zip(items[0], explainer.explain(items[0], history), strict=True):
            because = reasons[0]
            because_idx = ease.items_.index(because["item_id"])
            expected = sorted(set(genres.labels(int(item))) & set(genres.labels(because_idx)))
            shared = [r for r in reasons if r["type"] == "shared_genres"]
            if expected:
                assert shared == [{"type": "shared_genres", "item_id": because["item_id"],
                                   "genres": sorted(shared[0]["genres"])}]
                assert sorted(shared[0]["genres"]) == expected
            else:
                assert not shared  # nothing in common with the "because" item: no genre reason


def test_profile_genres_are_no_reason():
    """The user's history is mostly genre Y, but the "because" item is X only: the reason
    names X (what the item shares with it), never the profile's Y."""
    from recloop.data.features import CategoricalFeature, Features
    from recloop.data.ids import IdMap

    items = IdMap(["a", "b", "c", "d"], "item")
    log = Interactions(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 3]), IdMap(["u", "v"], "user"), items)
    features = Features(items, {"genre": CategoricalFeature.from_lists([["X"], ["Y"], ["Y"], ["X", "Y"]])})
    model = EASE(l2=1.0).fit(log, item_features=features)
    model.weights_[:] = 0.0
    model.weights_[0, 3] = 1.0  # d is recommended because of a
    (reasons,) = Explainer(model, features).explain([3], [0, 1, 2])
    assert reasons[0]["item_id"] == "a"
    assert reasons[1] == {"type": "shared_genres", "item_id": "a", "genres": ["X"]}
    (reasons,) = Explainer(model, features).explain([3], [1, 2])  # no item explains d: no genre reason either
    assert reasons == []


def test_multi_genre_order_and_weighted_ratings():
    from recloop.data.features import CategoricalFeature, Features
    from recloop.data.ids import IdMap

    items = IdMap(["a", "b", "c", "d", "e"], "item")
    log = Interactions(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 3, 4]), IdMap(["u", "v", "w"], "user"),
                       items, rating=np.array([5, 1, 4, 4, 2, 3], dtype=np.float32))
    features = Features(items, {"genre": CategoricalFeature.from_lists([["X"], ["Y"], ["X", "Y"], ["Z"], ["Y"]])},
                        {"title": np.array(["A", "B", "", "D", "E"], dtype=object)})
    model = EASE(l2=1.0, weighted=True).fit(log, item_features=features)
    w = model.weights_
    explainer = Explainer(model, features)
    # A repeated history item counts once, at its latest rating.
    (reasons,) = explainer.explain([2], [0, 1, 1, 4], ratings=[5.0, 2.0, 1.0, 3.0])
    contribution = {0: 5.0 * w[0, 2], 1: 1.0 * w[1, 2], 4: 3.0 * w[4, 2]}
    top = max(contribution, key=contribution.get)
    assert reasons[0]["item_id"] == items.id(top)
    assert reasons[0]["weight"] == pytest.approx(contribution[top], rel=1e-5)
    shared_with_top = [g for g in ("X", "Y") if g in features.categorical["genre"].labels(top)]
    assert reasons[-1] == {"type": "shared_genres", "item_id": items.id(top), "genres": shared_with_top}


@dataclass(frozen=True)
class _NoConfig:
    pass


class FixedVectors(Recommender):
    name = "fixed-vectors-test"
    config_class = _NoConfig
    VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 1.0]], dtype=np.float32)

    def _fit(self, train, valid):
        pass

    def item_vectors(self):
        return self.VECTORS

    def user_vectors(self, user_idx, history):
        return history.to_csr() @ self.VECTORS

    def _score(self, user_idx, history: UserHistories):
        return self.user_vectors(user_idx, history) @ self.VECTORS.T


class SparseItemItem(FixedVectors):
    """Stands in for ItemKNN: ``similarity_`` sparse, ``score = x_u @ similarity_``."""

    def _fit(self, train, valid):
        self.similarity_ = sp.csr_matrix(np.array([[0, 0, 0.2, 0.9], [0, 0, 0.7, 0.1],
                                                   [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))


def tiny_log():
    from recloop.data.ids import IdMap

    return Interactions(np.array([0, 0, 1]), np.array([0, 1, 2]), IdMap(["u", "v"], "user"),
                        IdMap(["a", "b", "c", "d"], "item"))


def test_embedding_model_uses_highest_cosine():
    model = FixedVectors().fit(tiny_log())
    explainer = Explainer(model)
    assert item_item_matrix(model) is None
    reasons = explainer.explain([2, 3], [0, 1])
    assert reasons[0][0]["item_id"] == "a" and reasons[0][0]["basis"] == "cosine"
    assert reasons[1][0]["item_id"] == "b"
    assert reasons[1][0]["weight"] == pytest.approx(1.0 / np.sqrt(1.04), rel=1e-5)
    # A cold item (index 4) is explained from vectors that include it.
    vectors = np.vstack([FixedVectors.VECTORS, [[0.0, -1.0]], [[1.0, 0.05]]])
    reasons = Explainer(model, item_vectors=vectors).explain([5, 4], [0, 1])
    assert reasons[0][0]["item_id"] == "a" and reasons[0][0]["title"] is None
    assert reasons[1] == []  # negative cosine to everything: no reason rather than a bad one


def test_sparse_item_item_model_like_itemknn():
    model = SparseItemItem().fit(tiny_log())
    assert sp.issparse(item_item_matrix(model))
    reasons = Explainer(model, n_items=2).explain([2, 3], [0, 1])
    assert [r["item_id"] for r in reasons[0]] == ["b", "a"]  # 0.7 from b, 0.2 from a
    assert [r["item_id"] for r in reasons[1]] == ["a", "b"]
    assert reasons[0][0]["basis"] == "item_weight"


def test_render_reason():
    assert render_reason({"type": "because_you_interacted", "item_id": "50", "title": "Star Wars (1977)",
                          "weight": 0.3}) == "Because you watched Star Wars (1977)"
    assert render_reason({"type": "because_you_interacted", "item_id": "50", "title": None, "weight": 0.3},
                         verb="bought") == "Because you bought 50"
    assert render_reason({"type": "shared_genres", "genres": ["Comedy", "Drama"]}) == "Shared genres: Comedy, Drama"
    # Items related to one item have no user: no "Because you watched".
    assert render_reason({"type": "because_you_interacted", "item_id": "50", "title": "Star Wars (1977)",
                          "weight": 0.3}, similar=True) == "Similar to Star Wars (1977)"
