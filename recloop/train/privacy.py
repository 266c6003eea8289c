"""Differentially private training (DP-SGD) through Opacus.

Abadi et al., "Deep Learning with Differential Privacy", CCS 2016: every step draws a
Poisson sample of the training rows (each row independently with probability
``q = batch_size / n_rows``), clips each row's gradient to norm ``max_grad_norm``,
adds Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to the
sum, and divides by the expected batch size. Opacus computes the per-row gradients
(``GradSampleModule``: hooks on ``nn.Linear``, ``nn.Embedding`` and the other layers it
knows), clips and noises them (``DPOptimizer``), and its RDP accountant tracks
``(epsilon, delta)`` over the steps taken.

The guarantee is about one *row* of the model's training data as the trainer sees it
(``len(data)`` rows, ``data.batch(index)``): a model that supports DP decides what a row
is (:attr:`recloop.models.neural.NeuralRecommender.privacy_unit`). The two-tower model
makes one row hold everything of one user that a step trains on, so its guarantee is
per user (see ``docs/privacy.md``).

What stays outside the guarantee, and is therefore the config's job: validation for
early stopping reads private data the accountant does not count (a DP config has no
validation split), and anything a model derives from the whole log before training
(item popularity) must not be used by a private model.

``enabled = false`` (the default) changes nothing. ``epsilon = inf`` clips per row but
adds no noise (the cost of clipping alone; no guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recloop.errors import ConfigError

ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class PrivacyConfig:
    """DP-SGD settings (``[model.train.privacy]`` in an experiment file).

    ``enabled``: train with DP-SGD. ``epsilon``: the target; the noise multiplier is
    chosen by the accountant so that all ``train.epochs`` reach it (``inf``: no noise).
    ``noise_multiplier``: set it instead of ``epsilon`` (> 0 wins over ``epsilon``).
    ``delta``: 0 means ``1 / n_users`` (set by the model). ``max_grad_norm``: the
    per-row clipping bound. ``accountant``: ``rdp`` or ``prv`` (Opacus' accountants).
    ``secure_noise``: Opacus' secure RNG for the noise (slower; needs ``torchcsprng``).
    """

    enabled: bool = False
    epsilon: float = 8.0
    noise_multiplier: float = 0.0
    delta: float = 0.0
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    secure_noise: bool = False

    def __post_init__(self):
        if not self.epsilon > 0:
            raise ConfigError(f"train.privacy.epsilon must be positive (inf: no noise), got {self.epsilon}")
        if self.noise_multiplier < 0:
            raise ConfigError(f"train.privacy.noise_multiplier must be 0 or more, got {self.noise_multiplier}")
        if not 0 <= self.delta < 1:
            raise ConfigError(f"train.privacy.delta must be in [0, 1) (0: 1/#users), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"train.privacy.max_grad_norm must be positive, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"train.privacy.accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")


def _opacus():
    try:
        import opacus
    except ImportError:
        raise ConfigError("train.privacy.enabled needs Opacus: pip install 'recloop[privacy]' (opacus>=1.5)") from None
    return opacus


@dataclass
class PrivacyReport:
    """What a private fit spent: ``epsilon`` at ``delta`` after ``steps`` noisy steps."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    rows: int  # rows of the training data (the unit the guarantee protects)
    unit: str  # what one row is ("user", ...)
    accountant: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class PrivateTraining:
    """The DP-SGD parts of one fit: per-row gradients on ``network``, the noisy
    optimizer wrapping ``optimizer``, Poisson batches and the accountant.

    Built by the trainer when ``config.enabled``; ``rows`` and ``batch_size`` fix the
    sampling rate, ``steps`` (all epochs) the noise for a target epsilon.
    """

    def __init__(self, config: PrivacyConfig, network: nn.Module, optimizer: torch.optim.Optimizer, *,
                 rows: int, batch_size: int, steps: int, seed: int, unit: str):
        opacus = _opacus()
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        if config.delta <= 0:
            raise ConfigError("train.privacy.delta is 0: the model should have set it to 1/#users before training")
        self.config, self.rows, self.unit = config, rows, unit
        self.sample_rate = min(1.0, batch_size / rows)
        if config.noise_multiplier > 0:
            sigma = config.noise_multiplier
        elif math.isinf(config.epsilon):
            sigma = 0.0
        else:
            sigma = get_noise_multiplier(target_epsilon=config.epsilon, target_delta=config.delta,
                                         sample_rate=self.sample_rate, steps=steps, accountant=config.accountant)
        self.noise_multiplier = float(sigma)
        # Hooks on the network's own layers: a model's loss calls them directly, and the
        # per-row gradients land in each parameter's ``grad_sample``.
        self.module = opacus.GradSampleModule(network, batch_first=True, loss_reduction="mean", strict=True)
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=config.max_grad_norm,
                                     expected_batch_size=max(1, round(self.sample_rate * rows)),
                                     loss_reduction="mean", secure_mode=config.secure_noise)
        self.accountant = create_accountant(config.accountant)
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.rng = np.random.default_rng([seed, 2])
        self.steps = 0

    def batches(self, steps: int) -> list[np.ndarray]:
        """``steps`` Poisson samples of the rows (each row in with probability ``q``)."""
        return [np.flatnonzero(self.rng.random(self.rows) < self.sample_rate) for _ in range(steps)]

    def count_empty_step(self) -> None:
        """A step whose Poisson sample was empty: it releases only noise and no update is
        made; the accountant still counts it (an over-estimate of the spend, never under)."""
        self.steps += 1
        if self.noise_multiplier > 0:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def step(self) -> None:
        """One noisy optimiser step on the per-row gradients of the last backward pass."""
        self.optimizer.step()
        self.steps += 1

    def epsilon(self) -> float:
        if self.noise_multiplier == 0:
            return math.inf
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.config.delta))

    def report(self) -> PrivacyReport:
        return PrivacyReport(self.epsilon(), self.config.delta, self.noise_multiplier, self.config.max_grad_norm,
                             self.sample_rate, self.steps, self.rows, self.unit, self.config.accountant)

    def close(self) -> None:
        """Remove Opacus' hooks, leaving the plain network (for scoring and saving)."""
        self.module._close()
