"""The ridge projection from text space to item space."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.errors import NotFittedError
from recloop.text import RidgeProjection


def test_recovers_a_linear_map_with_intercept():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(200, 8))
    true_w, true_b = rng.normal(size=(8, 3)), rng.normal(size=3)
    targets = text @ true_w + true_b
    projection = RidgeProjection(l2=1e-6).fit(text, targets)
    np.testing.assert_allclose(projection.transform(text[:5]), targets[:5], atol=1e-3)
    assert projection.transform(text).dtype == np.float32


def test_l2_shrinks_towards_the_mean_target():
    rng = np.random.default_rng(1)
    text, targets = rng.normal(size=(50, 4)), rng.normal(size=(50, 2)) + 5.0
    strong = RidgeProjection(l2=1e9).fit(text, targets)
    np.testing.assert_allclose(strong.transform(rng.normal(size=(3, 4))), np.tile(targets.mean(0), (3, 1)), atol=1e-4)


def test_state_round_trips_and_errors_are_clear():
    rng = np.random.default_rng(2)
    projection = RidgeProjection().fit(rng.normal(size=(20, 4)), rng.normal(size=(20, 2)))
    restored = RidgeProjection().set_state(projection.get_state())
    x = rng.normal(size=(3, 4))
    np.testing.assert_array_equal(restored.transform(x), projection.transform(x))
    with pytest.raises(NotFittedError, match="fit"):
        RidgeProjection().transform(x)
    with pytest.raises(ValueError, match="width 4"):
        projection.transform(np.zeros((2, 5)))
