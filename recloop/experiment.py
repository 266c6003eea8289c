"""Running an experiment: load and preprocess data, split, fit (choosing hyperparameters
on validation), evaluate on test, then fit the model that is served. The CLI commands
and the benchmarks are thin layers over :func:`prepare_data`, :func:`run_model` and
:func:`refit_all`.

Two models come out of one experiment row:

* the **evaluated model** (``ModelRun.model``): fitted on the training split (plus the
  validation split when ``ExperimentConfig.refit``), tested on the test split; its
  metrics are the experiment's result;
* the **served model** (:func:`refit_all`): a fresh model with the same hyperparameters
  (and, for models that stop early, the same epoch count) fitted on *every* interaction
  of the preprocessed dataset, train, validation and test. It is what ``recloop train``
  and ``recloop compare --output`` save, so that a served model knows all of a user's
  history and never recommends an item the user already has.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.config import DataConfig, ExperimentConfig, ModelSpec
from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions
from recloop.data.loading import load_dataset
from recloop.data.preprocess import PreprocessConfig, preprocess
from recloop.data.quality import apply_filters
from recloop.data.shard import UserShard
from recloop.data.splits import Split, split
from recloop.data.tabular import ColumnMapping
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import EvaluationResult, Evaluator, validation_metric
from recloop.evaluate.groups import user_fairness
from recloop.models import Recommender, get_model_class
from recloop.models.neural import NeuralRecommender
from recloop.progress import show_progress
from recloop.rank.fairness import FairnessConfig, FairRanker, fair_ranker
from recloop.rank.rerank import ItemCategories
from recloop.search import search_grid
from recloop.train import distributed


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
    #: ``"split"``: ``model`` is the evaluated model; ``"all"``: ``model`` is the served
    #: model of :func:`refit_all`, fitted on every interaction after the evaluation.
    fitted_on: str = "split"
    refit_seconds: float | None = None

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
            "fitted_on": self.fitted_on,
            "fitted_interactions": len(self.model.history_),
            "refit_seconds": self.refit_seconds,
        }


def load_data(data: DataConfig, preprocessing: PreprocessConfig, data_dir: str | Path | None = None,
              cache_dir: str | Path | None = None, download: bool = True, shard: UserShard | None = None) -> Dataset:
    """Load the dataset a config names and preprocess it (this process's users only, on
    the whole log's vocabularies, with a ``shard``)."""
    d = data
    dataset = load_dataset(d.dataset, d.format, data_dir=data_dir, cache_dir=cache_dir, download=download,
                           columns=ColumnMapping(d.user, d.item, d.rating, d.timestamp), sep=d.sep, shard=shard)
    dataset, _ = apply_filters(dataset, d.filters)  # what `recloop data check` flags, if [data.filters] says so
    return preprocess(dataset, preprocessing, shard)


def prepare_data(config: ExperimentConfig, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, download: bool = True) -> PreparedData:
    """The preprocessed dataset and its split.

    With ``data.shard_by_user`` under ``torchrun``, every rank loads its own users' rows
    (:mod:`recloop.data.shard`) and this process's job is marked as holding data split by
    user (:func:`recloop.train.distributed.shard_data`), so that its trainers, evaluators
    and item statistics work on the shards. A temporal split needs one global cut in time
    and is refused."""
    start = time.perf_counter()
    shard = None
    if config.data.shard_by_user and distributed.current().enabled:
        if config.split.method == "temporal":
            raise ConfigError("data.shard_by_user does not support split.method = 'temporal' (its cut is a global "
                              "quantile of time, not computed across processes yet); use 'leave-one-out' or "
                              "'ratio', or set data.shard_by_user = false")
        shard = distributed.user_shard(distributed.shard_data())
    dataset = load_data(config.data, config.preprocess, data_dir, cache_dir, download, shard)
    parts = split(dataset.interactions, config.split)
    if (len(parts.test) if shard is None else shard.total(len(parts.test))) == 0:
        raise ConfigError(f"the {config.split.method} split of {dataset.name!r} left no test interactions")
    return PreparedData(dataset, parts, time.perf_counter() - start)


def has_rows(log: Interactions) -> bool:
    """Whether ``log`` has interactions; on data split by user, on any rank (so that all
    ranks take the same branch, or the collectives of the one that validates would wait
    forever for the others)."""
    if distributed.current().shard_data:
        return distributed.sum_across([len(log)])[0] > 0
    return len(log) > 0


def build_model(spec: ModelSpec, overrides: dict | None = None) -> Recommender:
    return get_model_class(spec.name)(**{**dict(spec.params), **(overrides or {})})


def fit(model: Recommender, data: PreparedData | Dataset, train: Interactions,
        valid: Interactions | None = None, callbacks: Sequence[Any] = ()) -> float:
    """Fit with the dataset's side features (and, for a model that stops early, a
    validation callback built from the :class:`Evaluator`, and the trainer ``callbacks``);
    returns the seconds taken."""
    dataset = data.dataset if isinstance(data, PreparedData) else data
    start = time.perf_counter()
    validate = validation_metric(model, train, valid) if valid is not None and has_rows(valid) else None
    model.fit(train, item_features=dataset.item_features, user_features=dataset.user_features,
              valid=valid, validate=validate, user_graph=dataset.user_graph, callbacks=callbacks)
    return time.perf_counter() - start


def run_model(spec: ModelSpec, data: PreparedData, config: ExperimentConfig, progress: bool = False) -> ModelRun:
    """Choose hyperparameters on validation (if the spec has a grid), fit, evaluate on test.
    Under ``torchrun`` every rank runs this: fits train data-parallel and evaluations are
    sharded across the ranks (the context is the one :func:`distributed.setup` set)."""
    parts = data.split
    context = distributed.current()
    if context.shard_data and not issubclass(get_model_class(spec.name), NeuralRecommender):
        raise ConfigError(f"{spec.name} is not trained by recloop's Trainer, so with data.shard_by_user each process "
                          "would fit it on its own users only; set data.shard_by_user = false for it (SASRec, "
                          "GRU4Rec, two-tower and the other neural models train on shards)")
    evaluator = Evaluator(config.evaluation, item_features=data.dataset.item_features, distributed=context)
    has_valid = has_rows(parts.valid)
    search: list[dict] = []
    chosen: dict = {}
    with show_progress(progress):
        if spec.grid:  # the search's best model is the one fitted below: it is kept, not fitted twice
            grid = search_grid(spec, data, config, evaluator, progress=progress)
            chosen, search, model, fit_seconds = grid.chosen, grid.records, grid.model, grid.fit_seconds
        else:
            model = build_model(spec)
            fit_seconds = fit(model, data, parts.train, parts.valid if model.uses_validation and has_valid else None)
        return _evaluate_and_refit(spec, data, config, evaluator, model, fit_seconds, chosen, search, progress)


def _evaluate_and_refit(spec: ModelSpec, data: PreparedData, config: ExperimentConfig, evaluator: Evaluator,
                        model: Recommender, fit_seconds: float, chosen: dict, search: list[dict],
                        progress: bool) -> ModelRun:
    """Validation and test results of the fitted ``model``, with the refit on train +
    valid in between when the config asks for it."""
    parts = data.split
    has_valid = has_rows(parts.valid)
    uses_valid = model.uses_validation and has_valid
    valid_result = None
    if has_valid:
        valid_result = evaluator.evaluate(model, parts.valid, parts.train, progress=progress,
                                          **rerank_options(config, data, parts.train))
    train_log = parts.train
    before_refit = None
    if config.refit and has_valid:
        # Refit on everything before the test period with what validation chose: the
        # hyperparameters and, for a model that stops early, the epoch count.
        if uses_valid:
            early = evaluator.evaluate(model, parts.test, parts.history("test"), train=train_log, progress=progress)
            before_refit = (model, early)
        train_log = parts.history("test")
        model = model.refit_model()
        refit_seconds = fit(model, data, train_log)
        fit_seconds = fit_seconds + refit_seconds if uses_valid else refit_seconds
    test_result = evaluator.evaluate(model, parts.test, parts.history("test"), train=train_log, progress=progress,
                                     **rerank_options(config, data, train_log))
    if parts.user_groups:  # e.g. cold and warm users, reported apart
        test_result.extra["groups"] = test_result.group_summaries(dict(parts.user_groups))
    if model.predicts_ratings and parts.test.rating is not None:
        test_result.extra["rating_errors"] = evaluator.evaluate_ratings(model, parts.test, parts.history("test"))
    metric = f"ndcg@{10 if 10 in config.evaluation.k else config.evaluation.k[0]}"
    if metric in test_result.per_user:
        test_result.extra["user_groups"] = user_fairness(test_result.per_user, test_result.users,
                                                         test_result.history_lengths, data.dataset.user_features,
                                                         metric)
    params = {**dict(spec.params), **chosen}
    return ModelRun(spec, model, params, test_result, valid_result, fit_seconds, search, before_refit)


def rerank_options(config: ExperimentConfig, data: PreparedData, train: Interactions) -> dict:
    """``rerank``/``candidates`` for :meth:`Evaluator.evaluate` from ``config.rerank``
    (popularity tiers from ``train``); empty when re-ranking is off."""
    if not config.rerank.enabled:
        return {}
    ranker = build_fair_ranker(config.rerank, max(config.evaluation.k), data.dataset, train)
    return {"rerank": ranker.rerank_users, "candidates": config.rerank.candidates}


def build_fair_ranker(fairness: FairnessConfig, k: int, dataset: Dataset, train: Interactions) -> FairRanker:
    """The :class:`FairRanker` of ``fairness`` over ``dataset``'s items: popularity tiers
    from ``train``, categories from the item features."""
    features = dataset.item_features
    categorical = {} if features is None else {name: ItemCategories.from_features(features, name)
                                               for name in (fairness.calibration_feature, fairness.groups)
                                               if name in features.categorical}
    return fair_ranker(fairness, k, train.item_counts(), categorical)


def refit_all(run: ModelRun, data: PreparedData | Dataset) -> ModelRun:
    """The served model of ``run``: a fresh model with the hyperparameters validation
    chose (and, for a model that stops early, the epoch count it chose) fitted on every
    interaction of the preprocessed dataset (train, validation and test together).

    Returns a :class:`ModelRun` holding that model and the evaluated run's metrics
    (the served model has no held-out data left to be tested on), with
    ``fitted_on="all"`` and the refit's seconds in ``refit_seconds``."""
    dataset = data.dataset if isinstance(data, PreparedData) else data
    model = run.model.refit_model()
    seconds = fit(model, dataset, dataset.interactions)
    return dataclasses.replace(run, model=model, refit_seconds=seconds, fitted_on="all")


def gather_history(run: ModelRun) -> ModelRun:
    """Before saving a model fitted on data split by user: its ``history_`` (what it
    serves each user from) becomes the whole log, gathered from every rank; every rank
    must call this. The model itself is the same on every rank. Unchanged otherwise."""
    if distributed.current().shard_data:
        run.model.history_ = distributed.whole_log(run.model.history_)
    return run
