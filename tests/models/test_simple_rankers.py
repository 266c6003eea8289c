"""Random and genre-popularity rankers, checked against hand-computed scores."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.data import CategoricalFeature, Features, IdMap, Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models import UNKNOWN_USER, GenrePopularity, RandomRanker


@pytest.fixture()
def tiny():
    # items: 0 = Drama, 1 = Comedy, 2 = Drama+Comedy, 3 = Horror (never consumed)
    items = IdMap(["a", "b", "c", "d"], "item")
    users = IdMap(["u", "v"], "user")
    log = Interactions(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]), users, items)
    genres = CategoricalFeature.from_lists([["Drama"], ["Comedy"], ["Comedy", "Drama"], ["Horror"]])
    return log, Features(items, {"genre": genres})


def test_genre_popularity_by_hand(tiny):
    log, features = tiny
    model = GenrePopularity().fit(log, item_features=features)
    # interactions: item0 x2, item1 x1, item2 x1 -> Drama in 3 of 4, Comedy in 2 of 4, Horror 0
    expected = np.array([0.75, 0.5, (0.75 + 0.5) / 2, 0.0])
    np.testing.assert_allclose(model.score([0])[0], expected, atol=1e-5)


def test_genre_affinity_by_hand(tiny):
    log, features = tiny
    model = GenrePopularity(affinity=1.0).fit(log, item_features=features)
    # user v consumed item 0 only: q(Drama) = 1, q(Comedy) = 0
    scores = model.score([1])[0]
    np.testing.assert_allclose(scores[[0, 1, 2, 3]], [1.0, 0.0, 0.5, 0.0], atol=1e-5)
    empty = model.score([UNKNOWN_USER], UserHistories.from_lists([[]], 4))[0]
    np.testing.assert_allclose(empty, 0.0, atol=1e-5)


def test_genre_popularity_needs_the_feature(tiny):
    log, features = tiny
    with pytest.raises(ConfigError, match="'genre'"):
        GenrePopularity().fit(log)
    with pytest.raises(ConfigError, match="'tag'.*genre"):
        GenrePopularity(feature="tag").fit(log, item_features=features)
    with pytest.raises(ConfigError, match="affinity"):
        GenrePopularity(affinity=2.0)


def test_random_ranker_is_reproducible_and_batch_independent(tiny):
    log, _ = tiny
    model = RandomRanker(seed=3).fit(log)
    both = model.score([0, 1])
    np.testing.assert_array_equal(both[1], model.score([1])[0])
    assert not np.array_equal(both[0], both[1])
    assert not np.array_equal(RandomRanker(seed=4).fit(log).score([0]), both[:1])
