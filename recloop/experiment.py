"""Running an experiment: load and preprocess data, split, fit (choosing hyperparameters
on validation), evaluate on test. The CLI commands and the benchmarks are thin layers
over :func:`prepare_data` and :func:`run_model`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from recloop.config import ExperimentConfig, ModelSpec
from recloop.data.dataset import Dataset
from recloop.data.loading import load_dataset
from recloop.data.preprocess import preprocess
from recloop.data.splits import Split, split
from recloop.data.tabular import ColumnMapping
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import EvaluationResult, Evaluator
from recloop.models import Recommender, get_model_class
from recloop.search import search_grid


@dataclass
class PreparedData:
    """A preprocessed dataset and its split."""

    dataset: Dataset
    split: Split
    seconds: float = 0.0


@dataclass
class ModelRun:
    """One model of an experiment: the fitted model and its evaluations."""

    spec: ModelSpec
    model: Recommender
    params: dict
    test: EvaluationResult
    valid: EvaluationResult | None
    fit_seconds: float
    search: list[dict] = field(default_factory=list)
    #: For a model refitted after early stopping: the early-stopped model and its test
    #: result (the refitted one is ``model``/``test``).
    before_refit: tuple[Recommender, EvaluationResult] | None = None

    @property
    def label(self) -> str:
        return self.spec.display_name

    def record(self) -> dict:
        """What goes into ``metrics.json`` and ``--json`` outputs."""
        return {
            "model": self.spec.name,
            "label": self.label,
            "params": self.params,
            **self.test.to_dict(),
            "valid_metrics": None if self.valid is None else self.valid.summary(),
            "fit_seconds": self.fit_seconds,
            "eval_seconds": self.test.seconds,
            "search": self.search,
            "test_before_refit": None if self.before_refit is None else self.before_refit[1].summary(),
        }


def prepare_data(config: ExperimentConfig, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, download: bool = True) -> PreparedData:
    start = time.perf_counter()
    d = config.data
    dataset = load_dataset(d.dataset, d.format, data_dir=data_dir, cache_dir=cache_dir, download=download,
                           columns=ColumnMapping(d.user, d.item, d.rating, d.timestamp), sep=d.sep)
    dataset = preprocess(dataset, config.preprocess)
    parts = split(dataset.interactions, config.split)
    if len(parts.test) == 0:
        raise ConfigError(f"the {config.split.method} split of {dataset.name!r} left no test interactions")
    return PreparedData(dataset, parts, time.perf_counter() - start)


def build_model(spec: ModelSpec, overrides: dict | None = None) -> Recommender:
    return get_model_class(spec.name)(**{**dict(spec.params), **(overrides or {})})


def fit(model: Recommender, data: PreparedData, train, valid=None) -> float:
    """Fit with the dataset's side features; returns the seconds taken."""
    start = time.perf_counter()
    model.fit(train, item_features=data.dataset.item_features, user_features=data.dataset.user_features,
              valid=valid)
    return time.perf_counter() - start


def run_model(spec: ModelSpec, data: PreparedData, config: ExperimentConfig, progress: bool = False) -> ModelRun:
    """Choose hyperparameters on validation (if the spec has a grid), fit, evaluate on test."""
    parts = data.split
    evaluator = Evaluator(config.evaluation, item_features=data.dataset.item_features)
    has_valid = len(parts.valid) > 0
    search: list[dict] = []
    chosen: dict = {}
    if spec.grid:
        chosen, search = search_grid(spec, data, config, evaluator, progress=progress)
    model = build_model(spec, chosen)
    uses_valid = model.uses_validation and has_valid
    fit_seconds = fit(model, data, parts.train, parts.valid if uses_valid else None)
    valid_result = None
    if has_valid:
        valid_result = evaluator.evaluate(model, parts.valid, parts.train, progress=progress)
    train_log = parts.train
    before_refit = None
    if config.refit and has_valid and not model.uses_validation:
        # Refit on everything before the test period, with the chosen hyperparameters.
        train_log = parts.history("test")
        model = build_model(spec, chosen)
        fit_seconds = fit(model, data, train_log)
    elif uses_valid and (refitted := model.refit_model()) is not None:
        # Early stopping chose the epochs; train that long on train + valid (opt-in: train.refit).
        early = evaluator.evaluate(model, parts.test, parts.history("test"), train=train_log, progress=progress)
        before_refit = (model, early)
        train_log = parts.history("test")
        fit_seconds += fit(refitted, data, train_log)
        model = refitted
    test_result = evaluator.evaluate(model, parts.test, parts.history("test"), train=train_log, progress=progress)
    if model.predicts_ratings and parts.test.rating is not None:
        test_result.extra["rating_errors"] = evaluator.evaluate_ratings(model, parts.test, parts.history("test"))
    params = {**dict(spec.params), **chosen}
    return ModelRun(spec, model, params, test_result, valid_result, fit_seconds, search, before_refit)
