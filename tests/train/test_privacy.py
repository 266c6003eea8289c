"""DP-SGD through Opacus (recloop.train.privacy): per-row gradients that are exact, noise
chosen so that the accountant's epsilon meets the target, and only models whose loss
Opacus can separate per row accept it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from recloop.data import SyntheticConfig, generate
from recloop.errors import ConfigError
from recloop.models import NeuMF, TwoTower
from recloop.train.config import TrainerConfig
from recloop.train.privacy import PrivacyConfig

pytest.importorskip("opacus")


@pytest.fixture(scope="module")
def data():
    return generate(SyntheticConfig(n_users=120, n_items=60, n_clusters=4, mean_interactions=12, seed=3))


def _two_tower(privacy: PrivacyConfig, epochs: int = 2, item_repr: str = "id", **options) -> TwoTower:
    train = TrainerConfig(epochs=epochs, batch_size=32, lr=5e-3, progress=False, device="cpu", privacy=privacy)
    return TwoTower(dim=8, hidden=(16,), max_history=6, id_dropout=0.0, private_targets=3,
                    private_negatives=10, train=train, item_repr=item_repr, **options)


@pytest.mark.parametrize("item_repr", ["id", "fused"])
def test_per_user_gradients_equal_each_users_own_gradient(data, item_repr):
    """Opacus' per-row gradients of the private loss, clipped and summed by DPOptimizer,
    must be each user's gradient computed alone: nothing of one user leaks into another's
    (with text, the adaptor's own parameters included)."""
    from opacus import GradSampleModule

    model = _two_tower(PrivacyConfig(enabled=True, epsilon=math.inf), epochs=1, item_repr=item_repr)
    model.fit(data.interactions, item_features=data.item_features, user_features=data.user_features)
    model.network_.train()
    rows = model.training_data(data.interactions)
    batch = rows.batch(np.arange(5))
    module = GradSampleModule(model.network_, batch_first=True, loss_reduction="mean")
    model.loss(batch).backward()
    params = [p for p in model.network_.parameters() if p.requires_grad]
    per_row = [p.grad_sample.detach().clone() for p in params]
    assert per_row[0].abs().sum() > 0
    module.disable_hooks()
    for row in range(5):
        for p in params:
            p.grad = None
        alone = {k: (v[row:row + 1] if k != "negatives" else v) for k, v in batch.items()}
        model.loss(alone).backward()
        for p, sample in zip(params, per_row):
            expected = p.grad if p.grad is not None else torch.zeros_like(p)
            torch.testing.assert_close(sample[row], expected, atol=1e-5, rtol=1e-4)
    module._close()


def test_the_accountant_spends_the_target_epsilon_per_user(data):
    model = _two_tower(PrivacyConfig(enabled=True, epsilon=4.0), epochs=3)
    model.fit(data.interactions, item_features=data.item_features, user_features=data.user_features)
    report = model.train_result_.privacy
    assert report["unit"] == "user" and report["rows"] == data.interactions.n_users
    assert report["delta"] == pytest.approx(1 / data.interactions.n_users)
    assert report["noise_multiplier"] > 0.5
    assert 3.5 < report["epsilon"] <= 4.0 + 1e-6
    assert report["steps"] == 3 * math.ceil(120 / 32)
    assert np.isfinite(model.score(np.arange(3))).all()


def test_more_noise_means_less_epsilon_and_no_noise_means_infinity(data):
    spent = {}
    for epsilon in (1.0, math.inf):
        model = _two_tower(PrivacyConfig(enabled=True, epsilon=epsilon), epochs=1)
        model.fit(data.interactions, item_features=data.item_features, user_features=data.user_features)
        spent[epsilon] = model.train_result_.privacy
    assert spent[1.0]["epsilon"] <= 1.0 + 1e-6 and spent[1.0]["noise_multiplier"] > 1
    assert math.isinf(spent[math.inf]["epsilon"]) and spent[math.inf]["noise_multiplier"] == 0


def test_a_text_only_item_tower_trains_privately(data):
    model = _two_tower(PrivacyConfig(enabled=True, epsilon=8.0), epochs=1, item_repr="text")
    model.fit(data.interactions, item_features=data.item_features, user_features=data.user_features)
    assert model.train_result_.privacy["epsilon"] <= 8.0 + 1e-6


def test_private_model_saves_and_loads_without_opacus_hooks(data, tmp_path):
    from recloop.artifact import load_model

    model = _two_tower(PrivacyConfig(enabled=True, epsilon=8.0), epochs=1)
    model.fit(data.interactions, item_features=data.item_features, user_features=data.user_features)
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in model.network_.parameters())
    loaded = load_model(model.save(tmp_path / "dp"))
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5, atol=1e-6)


def test_models_that_cannot_separate_rows_refuse_privacy(data):
    train = TrainerConfig(epochs=1, progress=False, device="cpu", privacy=PrivacyConfig(enabled=True))
    with pytest.raises(ConfigError, match="does not support train.privacy.*two-tower"):
        NeuMF(train=train).fit(data.interactions)


def test_privacy_settings_are_checked():
    with pytest.raises(ConfigError, match="epsilon"):
        PrivacyConfig(enabled=True, epsilon=0)
    with pytest.raises(ConfigError, match="resume"):
        TrainerConfig(checkpoint_dir="x", resume=True, privacy=PrivacyConfig(enabled=True))
    assert dataclasses.replace(PrivacyConfig(), enabled=True).delta == 0  # 0: the model sets 1/#users
