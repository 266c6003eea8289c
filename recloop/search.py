"""Choosing hyperparameters on validation: a grid search.

Every combination of a :class:`~recloop.config.ModelSpec`'s grid is fitted on the
training split and scored on the validation split; the best by the evaluation's
``select_by`` metric wins (the first of equals). Models come from the model class's
``fit_grid``, so a model that can share work between candidates does (EASE builds its
Gram matrix once); the search itself is the same for every model.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recloop.config import ExperimentConfig, ModelSpec
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import Evaluator, validation_metric
from recloop.models import Recommender, get_model_class
from recloop.progress import progress_bar, show_progress

if TYPE_CHECKING:
    from recloop.experiment import PreparedData


def grid_candidates(spec: ModelSpec) -> list[dict]:
    """Every combination of the spec's grid values, in the order the grid lists them."""
    keys = list(spec.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]


@dataclass
class GridSearch:
    """What a grid search found: the chosen grid values, one record per candidate
    (``params``, the ``select_by`` metric, ``fit_seconds``), and the chosen candidate's
    fitted model (kept, so that the caller need not fit it again) with its fit time."""

    chosen: dict
    records: list[dict]
    model: Recommender
    fit_seconds: float


def search_grid(spec: ModelSpec, data: PreparedData, config: ExperimentConfig, evaluator: Evaluator,
                progress: bool = False) -> GridSearch:
    """Fit every grid candidate on the training split and score it on validation.

    Holds at most two fitted models at a time: the best so far and the candidate being
    scored. ``progress``: bars for the search, each fit and each evaluation (on a
    terminal), and one line per candidate on stderr.
    """
    parts = data.split
    if len(parts.valid) == 0:
        raise ConfigError(f"model {spec.display_name!r} has a grid, but the split has no validation set; "
                          "use split.method='leave-one-out' or split.valid_ratio > 0")
    metric = config.evaluation.select_by
    candidates = grid_candidates(spec)
    search: list[dict] = []
    best, chosen, best_model, best_seconds = None, {}, None, 0.0
    with show_progress(progress):
        models = get_model_class(spec.name).fit_grid(
            [{**dict(spec.params), **candidate} for candidate in candidates], parts.train,
            item_features=data.dataset.item_features, user_features=data.dataset.user_features, valid=parts.valid,
            validation=lambda model: validation_metric(model, parts.train, parts.valid),
            user_graph=data.dataset.user_graph)
        bar = progress_bar(desc=f"grid {spec.display_name}", total=len(candidates), unit="fit")
        for candidate in candidates:
            start = time.perf_counter()
            model = next(models)
            seconds = time.perf_counter() - start
            score = evaluator.evaluate(model, parts.valid, parts.train, progress=progress)[metric]
            search.append({"params": candidate, metric: score, "fit_seconds": seconds})
            if best is None or score > best:
                best, chosen, best_model, best_seconds = score, candidate, model, seconds
            del model  # a loser is freed before the next candidate is fitted
            bar.update()
            if progress:
                bar.write(f"  {spec.display_name} {candidate}: valid {metric} = {score:.4f} ({seconds:.1f}s fit)",
                          file=sys.stderr)
        bar.close()
    return GridSearch(chosen, search, best_model, best_seconds)
