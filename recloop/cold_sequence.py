"""Cold items inside sequences: next-item prediction when some next items were never
seen in training.

The split is leave-one-out (each user's last item is test, the one before validation),
then a seeded ``fraction`` of the items (among those with interactions) is made *cold*:
every training interaction on them is removed, so no model ever trains on them, while
users' validation and test items keep them. A cold item met in a user's earlier history
is gone with the rest of its training interactions (as if never logged); a cold
validation item is in the history the test is scored from, since it happened before.

Every model ranks **all items** (cold and warm), the user's history masked, and NDCG@10
is reported for the users whose test item is cold and for those whose test item is warm,
apart. Early stopping uses the validation items only (cold ones included: validation
comes before test in every user's sequence); there is no refit on train + valid, which
would train on cold validation items. Nothing of the test period reaches training or
early stopping (``tests/test_cold_sequence.py`` checks it).

What each item representation of :class:`~recloop.models.SASRec` does with a cold item:
``"text"`` embeds it like any item (text through the adaptor: it has no per-item
parameter); ``"fused"`` has an untrained id vector for it, which is zeroed, so a cold item
is its text part alone; ``"id"`` has nothing but that zeroed id vector, so every cold item
scores exactly 0 (ties broken by item index), wherever 0 falls among the warm scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recloop.config import ExperimentConfig
from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions
from recloop.data.splits import leave_one_out
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import EvaluationResult, Evaluator
from recloop.experiment import build_model, fit, load_data
from recloop.models import Recommender
from recloop.utils import make_rng


@dataclass(frozen=True, eq=False)
class ColdSequenceSplit:
    """``train`` holds no interaction on ``cold_items`` and none of ``valid``/``test``;
    ``valid``/``test`` are each user's second-to-last/last item, cold or warm."""

    train: Interactions
    valid: Interactions
    test: Interactions
    cold_items: np.ndarray  # sorted item_idx

    def is_cold(self, log: Interactions) -> np.ndarray:
        """Per row of ``log``: whether its item is cold."""
        return np.isin(log.item_idx, self.cold_items)

    @property
    def test_history(self) -> Interactions:
        """What the test is scored from: training plus validation."""
        return self.train.concat(self.valid)

    def describe(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                "cold_items": len(self.cold_items), "valid_cold": int(self.is_cold(self.valid).sum()),
                "test_cold": int(self.is_cold(self.test).sum())}


def cold_sequence_split(log: Interactions, fraction: float = 0.15, seed: int = 0) -> ColdSequenceSplit:
    """Leave-one-out, then a seeded ``fraction`` of the items with interactions made cold."""
    if not 0 < fraction < 1:
        raise ConfigError(f"cold item fraction must be in (0, 1), got {fraction}")
    parts = leave_one_out(log)
    candidates = np.flatnonzero(np.bincount(log.item_idx, minlength=log.n_items) > 0)
    n_cold = max(1, round(fraction * len(candidates)))
    cold = np.sort(make_rng(seed).choice(candidates, size=n_cold, replace=False))
    keep = ~np.isin(parts.train.item_idx, cold)
    return ColdSequenceSplit(parts.train.select(keep), parts.valid, parts.test, cold)


@dataclass
class ColdSequenceResult:
    """One model on one cold split: test results on all, cold and warm targets."""

    label: str
    model: Recommender
    all: EvaluationResult
    cold: EvaluationResult
    warm: EvaluationResult
    fit_seconds: float

    def record(self, metric: str = "ndcg@10") -> dict:
        trained = getattr(self.model, "train_result_", None)
        return {"label": self.label, "fit_seconds": self.fit_seconds,
                "best_epoch": None if trained is None else trained.best_epoch,
                "valid_best": None if trained is None else trained.best_metric,
                **{f"{part}_{name}": getattr(self, part).summary()[name] for part in ("all", "cold", "warm")
                   for name in self.all.summary() if "@" in name},
                f"{metric}_cold_over_warm": self.cold[metric] / max(self.warm[metric], 1e-12),
                "cold_users": len(self.cold.users), "warm_users": len(self.warm.users)}


def load_cold_split(config: ExperimentConfig, fraction: float, seed: int,
                    data_dir: str | None = None) -> tuple[Dataset, ColdSequenceSplit]:
    dataset = load_data(config.data, config.preprocess, data_dir, download=False)
    return dataset, cold_sequence_split(dataset.interactions, fraction, seed)


def run_cold_sequence(config: ExperimentConfig, dataset: Dataset, parts: ColdSequenceSplit,
                      label: str | None = None) -> ColdSequenceResult:
    """Fit the config's one model on ``parts.train`` (early stopping on ``parts.valid``),
    then rank all items for every test user; NDCG and the rest on all, cold and warm
    targets."""
    model = build_model(config.model)
    start = time.perf_counter()
    fit(model, dataset, parts.train, parts.valid if model.uses_validation else None)
    seconds = time.perf_counter() - start
    evaluator = Evaluator(config.evaluation)
    history = parts.test_history
    cold = parts.is_cold(parts.test)
    results = [evaluator.evaluate(model, target, history, train=parts.train)
               for target in (parts.test, parts.test.select(cold), parts.test.select(~cold))]
    return ColdSequenceResult(label or config.model.display_name, model, *results, seconds)
