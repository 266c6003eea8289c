"""Grid search: the same choice and scores as fitting every candidate on its own."""

import numpy as np
import pytest

from recloop.config import experiment_from_dict
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import Evaluator
from recloop.experiment import prepare_data, run_model
from recloop.models import EASE
from recloop.search import grid_candidates, search_grid


def experiment(model: dict, split: dict | None = None):
    return experiment_from_dict({"name": "grid", "data": {"dataset": "synthetic"},
                                 "split": split or {"method": "leave-one-out"}, "model": model,
                                 "evaluation": {"k": [10]}})


def test_ease_grid_chooses_and_scores_as_separate_fits():
    config = experiment({"name": "ease", "l2": 50.0, "grid": {"l2": [1.0, 10.0, 100.0, 1000.0]}})
    data = prepare_data(config)
    evaluator = Evaluator(config.evaluation)
    grid = search_grid(config.model, data, config, evaluator)
    chosen, search = grid.chosen, grid.records

    parts = data.split
    separate = [evaluator.evaluate(EASE(l2=l2).fit(parts.train), parts.valid, parts.train)["ndcg@10"]
                for l2 in (1.0, 10.0, 100.0, 1000.0)]
    assert [r["params"] for r in search] == [{"l2": v} for v in (1.0, 10.0, 100.0, 1000.0)]
    np.testing.assert_allclose([r["ndcg@10"] for r in search], separate, rtol=1e-6)
    assert chosen == {"l2": [1.0, 10.0, 100.0, 1000.0][int(np.argmax(separate))]}
    assert len(set(separate)) > 1  # the grid is not flat: the choice means something
    assert all(r["fit_seconds"] >= 0 for r in search)


def test_run_model_uses_the_grid_choice():
    config = experiment({"name": "itemknn", "grid": {"k": [2, 50], "shrink": [0.0, 10.0]}})
    run = run_model(config.model, prepare_data(config), config)
    assert len(run.search) == 4
    best = max(run.search, key=lambda r: r["ndcg@10"])
    assert run.params == best["params"]


def test_candidates_in_grid_order():
    config = experiment({"name": "itemknn", "grid": {"k": [2, 5], "shrink": [0.0, 1.0]}})
    assert grid_candidates(config.model) == [{"k": 2, "shrink": 0.0}, {"k": 2, "shrink": 1.0},
                                             {"k": 5, "shrink": 0.0}, {"k": 5, "shrink": 1.0}]


def test_progress_prints_one_line_per_candidate_on_stderr(capsys):
    config = experiment({"name": "ease", "grid": {"l2": [10.0, 100.0]}})
    search_grid(config.model, prepare_data(config), config, Evaluator(config.evaluation), progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "ease {'l2': 10.0}: valid ndcg@10 = " in err and "ease {'l2': 100.0}" in err


def test_a_grid_needs_a_validation_split():
    config = experiment({"name": "ease", "grid": {"l2": [10.0]}},
                        split={"method": "ratio", "test_ratio": 0.2, "valid_ratio": 0.0})
    with pytest.raises(ConfigError, match="no validation set"):
        search_grid(config.model, prepare_data(config), config, Evaluator(config.evaluation))


def test_the_grid_winner_is_not_fitted_again(monkeypatch):
    from recloop.models import ItemKNN

    fits = []
    original = ItemKNN._fit
    monkeypatch.setattr(ItemKNN, "_fit", lambda self, train, valid: (fits.append(len(train)), original(self, train, valid)))
    config = experiment({"name": "itemknn", "grid": {"k": [2, 50], "shrink": [0.0, 10.0]}})
    data = prepare_data(config)
    run = run_model(config.model, data, config)
    # Four candidates on train, then the refit on train + valid: the winner is reused, not refitted on train.
    assert fits == [len(data.split.train)] * 4 + [len(data.split.history("test"))]
    assert run.params == max(run.search, key=lambda r: r["ndcg@10"])["params"]
