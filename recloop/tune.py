"""Automatic tuning: an Optuna study over a model's ``[model.search]`` space.

``recloop tune CONFIG --trials N --timeout 30m`` runs :func:`tune`:

1. **Trials** (validation only). Each trial samples hyperparameters from the config's
   search space (:mod:`recloop.search_space`) with a seeded TPE sampler, fits the model on
   the training split and returns the evaluation's ``select_by`` metric on the validation
   split. A neural model reports its validation curve epoch by epoch to the trial through
   a trainer callback (:class:`~recloop.train.ReportValidation`), and the pruner (median
   or Hyperband) stops the trials whose curve falls behind. The trials see a split whose
   test part is empty: nothing of the test split reaches a trial.
2. **Storage**. The study lives in a database (SQLite by default, next to the outputs), so
   running the same command again resumes it: ``--trials N`` adds N trials. The sampler's
   seed is the config's ``seed`` plus the number of trials already stored, so a resumed
   study samples new points, and the same command on the same study is reproducible.
3. **The best config**, written as TOML (``best.toml``): the input config with the best
   trial's values in ``[model]`` and no search, runnable by ``recloop train``/``evaluate``.
   A best trial stopped by its time budget (``train.max_minutes``) is written with the
   epochs it reached and no budget, so that it is repeatable on a machine under another load.
4. **Test, once, at the end**: the best config goes through the experiment runner
   (:func:`recloop.experiment.run_model`, the path of ``recloop evaluate``): fitted on
   train (early-stopped on validation), refitted on train + validation when the config
   says ``refit``, then tested.

Grid or search? ``[model.grid]`` (:mod:`recloop.search`) stays the way any experiment
chooses among a few values: every ``evaluate``/``compare`` tries the whole grid, needs no
extra package, and lets a model share work between candidates (EASE's Gram matrix is
built once for every l2). ``[model.search]`` is for spaces too large to enumerate: sampled,
pruned, budgeted by trials and time, resumable, and only through this command. One
model table has one or the other (the config reader refuses both).

Optuna is an optional dependency (``pip install recloop[tune]``), imported here only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recloop.config import ExperimentConfig, ModelSpec
from recloop.data.splits import Split
from recloop.errors import ConfigError, TrainingError
from recloop.evaluate.evaluator import Evaluator
from recloop.experiment import ModelRun, PreparedData, build_model, fit, run_model
from recloop.models import get_model_class
from recloop.search_space import merge, nest, suggest
from recloop.train import ReportValidation
from recloop.typed_config import dump_toml, from_dict

PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuneSettings:
    """How to run a study.

    ``trials``: trials to add in this run (0: none, only the final test of the stored
    study's best). ``timeout``: seconds after which no new trial starts (the running one
    finishes); None: no limit. ``storage``: an Optuna storage URL (``sqlite:///tune.db``);
    None: ``sqlite:///OUTPUT/study.db``. ``study_name``: default the config's name.
    ``pruner``: ``median`` (stop a trial whose validation at an epoch is below the
    median of earlier trials at that epoch), ``hyperband``, or ``none``. ``startup_trials``:
    trials sampled at random before TPE models the results, and completed trials before
    the median pruner prunes. ``warmup_epochs``: epochs a trial runs before it may be
    pruned. ``start_from_config``: a new study's first trial is the config's own values
    (when each lies in its dimension), so the untuned settings are a trial of the study."""

    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    pruner: str = "median"
    startup_trials: int = 5
    warmup_epochs: int = 2
    start_from_config: bool = True

    def __post_init__(self):
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 0:
            raise ConfigError(f"tune: trials must be a non-negative integer, got {self.trials!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"tune: timeout must be positive seconds, got {self.timeout!r}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"tune: pruner must be one of {PRUNERS}, got {self.pruner!r}")
        if self.startup_trials < 0 or self.warmup_epochs < 0:
            raise ConfigError("tune: startup_trials and warmup_epochs must be zero or positive")


@dataclass
class TuneResult:
    """What a study found and how the best config did on test."""

    study_name: str
    storage: str
    metric: str
    trials: list[dict]
    best_trial: int
    best_params: dict
    best_value: float
    best_config: ExperimentConfig
    run: ModelRun
    tune_seconds: float
    final_seconds: float
    added_trials: int = 0
    counts: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What goes into ``tune.json``."""
        return {
            "study_name": self.study_name, "storage": self.storage, "metric": self.metric,
            "trials_added": self.added_trials, "counts": self.counts,
            "best": {"trial": self.best_trial, "params": self.best_params, f"valid_{self.metric}": self.best_value},
            "tune_seconds": self.tune_seconds, "final_seconds": self.final_seconds,
            "test": self.run.record(), "trials": self.trials,
            "best_config": self.best_config.to_dict(),
        }


def parse_duration(text: str | float | None) -> float | None:
    """Seconds from ``90``, ``90s``, ``30m``, ``1.5h`` (None stays None)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not match:
        raise ConfigError(f"duration {text!r} must look like 90, 90s, 30m or 1.5h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def with_params(spec: ModelSpec, flat: dict[str, Any]) -> ModelSpec:
    """``spec`` with the dotted-path values of ``flat`` set and no search or grid left."""
    return dataclasses.replace(spec, params=merge(spec.params, nest(flat)), search={}, grid={})


def best_spec(spec: ModelSpec, trial) -> ModelSpec:
    """The spec of ``trial``'s values. A trial stopped by its wall-clock budget
    (``train.max_minutes``) is fixed to the epochs it reached, without the budget, so that
    the best config repeats that trial whatever the machine's load when it is rerun."""
    flat = dict(trial.params)
    if trial.user_attrs.get("stopped") == "time_budget":
        flat.update({"train.epochs": trial.user_attrs["epochs"], "train.max_minutes": 0.0})
    return with_params(spec, flat)


def config_values(spec: ModelSpec) -> dict[str, Any] | None:
    """The value the spec's own config gives each search dimension (its table's value or
    the model's default), or None when one of them lies outside its dimension."""
    params = from_dict(get_model_class(spec.name).config_class, spec.params, "model.")
    values = {}
    for key, dimension in spec.search.items():
        value = params
        for part in key.split("."):
            value = getattr(value, part)
        if not dimension.contains(value):
            return None
        values[key] = value
    return values


def tune(config: ExperimentConfig, data: PreparedData, settings: TuneSettings, output: str | Path,
         progress: bool = False) -> TuneResult:
    """Run (or resume) the study of ``config``'s model, write ``best.toml`` and
    ``tune.json`` into ``output``, and test the best config once. See the module docstring."""
    optuna = _optuna()
    spec = config.model
    if not spec.search:
        hint = (" (its [model.grid] is tried in full by `recloop evaluate`)" if spec.grid else "")
        raise ConfigError(f"model {spec.display_name!r} has no [model.search] to tune{hint}; declare one, e.g. "
                          "[model.search] l2 = {low = 10, high = 5000, log = true}")
    parts = data.split
    if len(parts.valid) == 0:
        raise ConfigError(f"tuning {spec.display_name!r} needs a validation split; use split.method='leave-one-out' "
                          "or split.valid_ratio > 0")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    storage = settings.storage or f"sqlite:///{(output / 'study.db').resolve()}"
    study_name = settings.study_name or config.name
    metric = config.evaluation.select_by
    fingerprint = json.dumps(config.to_dict(), sort_keys=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", fingerprint)
    elif stored != fingerprint:
        raise ConfigError(f"study {study_name!r} in {storage} was made for another config (data, split, model or "
                          "search differ); give this run another --study-name or --storage")
    already = len(study.trials)
    if already == 0 and settings.start_from_config:
        start_values = config_values(spec)
        if start_values is not None:  # the first trial: the config's own settings, the untuned reference
            study.enqueue_trial(start_values, user_attrs={"from_config": True})
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + already, n_startup_trials=settings.startup_trials)
    study.pruner = _pruner(optuna, settings, spec)

    # The trials' data: the test part emptied, so that no trial can see a test interaction.
    trial_data = PreparedData(data.dataset, Split(parts.train, parts.valid, parts.test.select(
        np.zeros(len(parts.test), dtype=bool))), data.seconds)
    evaluator = Evaluator(config.evaluation, item_features=data.dataset.item_features)

    def objective(trial) -> float:
        flat = suggest(spec.search, trial)
        model = build_model(with_params(spec, flat))

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return epoch > settings.warmup_epochs and trial.should_prune()

        reporter = ReportValidation(report)
        valid = trial_data.split.valid if model.uses_validation else None
        seconds = fit(model, trial_data, trial_data.split.train, valid, callbacks=[reporter])
        trial.set_user_attr("fit_seconds", round(seconds, 3))
        result = getattr(model, "train_result_", None)
        if result is not None:
            trial.set_user_attr("epochs", len(result.history))
            trial.set_user_attr("best_epoch", result.best_epoch)
            trial.set_user_attr("stopped", result.stopped)
        if reporter.pruned:
            raise optuna.TrialPruned(f"validation {result.history[-1].metric:.4f} at epoch {len(result.history)}")
        return evaluator.evaluate(model, trial_data.split.valid, trial_data.split.train)[metric]

    def log_trial(study, trial) -> None:
        if progress:
            value = "" if trial.value is None else f" valid {metric} {trial.value:.4f}"
            epochs = f", {trial.user_attrs['epochs']} epochs" if "epochs" in trial.user_attrs else ""
            print(f"  trial {trial.number} {trial.state.name.lower()}:{value} {trial.params} "
                  f"({trial.user_attrs.get('fit_seconds', float('nan')):.1f}s fit{epochs})", file=sys.stderr)

    start = time.perf_counter()
    if settings.trials:
        study.optimize(objective, n_trials=settings.trials, timeout=settings.timeout, catch=(TrainingError,),
                       callbacks=[log_trial], gc_after_trial=True)
    tune_seconds = time.perf_counter() - start
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {study_name!r} has no completed trial yet ({len(study.trials)} trials); "
                          "run more trials (--trials) or widen the search")
    best = study.best_trial
    best_config = dataclasses.replace(config, models=(best_spec(spec, best),))

    start = time.perf_counter()  # the test split is used from here on, once
    run = run_model(best_config.model, data, best_config, progress=progress)
    final_seconds = time.perf_counter() - start

    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in optuna.trial.TrialState}
    result = TuneResult(study_name, storage, metric, [_trial_record(t) for t in study.trials], best.number,
                        dict(best.params), float(best.value), best_config, run, tune_seconds, final_seconds,
                        len(study.trials) - already, {k: v for k, v in counts.items() if v})
    write_best_config(result, output / "best.toml")
    (output / "tune.json").write_text(json.dumps(result.record(), indent=1, default=_json_default))
    return result


def write_best_config(result: TuneResult, path: Path) -> None:
    """``best.toml``: the tuned config as ``recloop train``/``evaluate`` read it, with a header
    saying where it came from and how it did."""
    tree = result.best_config.to_dict()
    (model,) = tree.pop("models")
    tree["model"] = model
    test = result.run.test.summary()
    metric = result.metric
    header = (f"Written by `recloop tune` (study {result.study_name!r}): best of {len(result.trials)} trials "
              f"({_counts(result.counts)}), trial {result.best_trial}: valid {metric} {result.best_value:.4f}.\n"
              f"Searched: {json.dumps(result.best_params, default=_json_default)}\n"
              f"Test, once, after the search: {metric} {test.get(metric, float('nan')):.4f}"
              + (" (refitted on train + valid)" if result.best_config.refit else ""))
    path.write_text(dump_toml(tree, header))


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def _trial_record(trial) -> dict:
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": trial.params, **trial.user_attrs,
            "seconds": None if trial.duration is None else round(trial.duration.total_seconds(), 3)}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _pruner(optuna, settings: TuneSettings, spec: ModelSpec):
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        epochs = spec.params.get("train", {}).get("epochs") if isinstance(spec.params.get("train"), dict) else None
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.warmup_epochs),
                                              max_resource=epochs or "auto")
    return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("`recloop tune` needs Optuna: pip install 'recloop[tune]' (or pip install optuna)") from None
    return optuna
