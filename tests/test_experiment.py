"""``run_model``: the protocol of one experiment row (selection, refit, test), and
``refit_all``: the served model, fitted on every interaction after the evaluation."""

import numpy as np
import pytest

from recloop.config import experiment_from_dict
from recloop.errors import ConfigError
from recloop.experiment import prepare_data, refit_all, run_model

SASREC = {"name": "sasrec", "hidden": 16, "layers": 1, "max_len": 10, "dropout": 0.1, "attention_dropout": 0.1,
          "train": {"epochs": 8, "patience": 2, "lr": 5e-3, "batch_size": 128, "num_threads": 1, "progress": False}}


def sasrec_experiment(refit: bool):
    return experiment_from_dict({
        "name": "refit",
        "refit": refit,
        "data": {"dataset": "synthetic"},
        "split": {"method": "leave-one-out"},
        "model": SASREC,
        "evaluation": {"k": [10]},
    })


def test_refit_trains_a_fresh_network_on_train_and_valid_for_the_best_epoch_count():
    config = sasrec_experiment(refit=True)
    data = prepare_data(config)
    run = run_model(config.model, data, config)

    early, early_test = run.before_refit
    assert len(early.history_) == len(data.split.train)
    assert len(run.model.history_) == len(data.split.history("test"))  # the validation items are targets now
    best = early.train_result_.best_epoch
    assert 1 <= best and len(run.model.train_result_.history) == best
    assert run.valid is not None  # model selection is reported for the early-stopped model
    record = run.record()
    assert record["test_before_refit"]["ndcg@10"] == early_test.summary()["ndcg@10"]
    assert record["metrics"]["ndcg@10"] == run.test.summary()["ndcg@10"] > 0


def test_without_refit_the_early_stopped_model_is_tested():
    config = sasrec_experiment(refit=False)
    data = prepare_data(config)
    run = run_model(config.model, data, config)
    assert run.before_refit is None and run.record()["test_before_refit"] is None
    assert len(run.model.history_) == len(data.split.train)


def test_old_train_refit_is_read_as_the_one_refit_switch_with_a_warning():
    old = {"name": "old", "data": {"dataset": "synthetic"},
           "model": {**SASREC, "train": {**SASREC["train"], "refit": False}}}
    with pytest.warns(FutureWarning, match="top-level `refit = false`"):
        config = experiment_from_dict(old)
    assert config.refit is False and "refit" not in config.model.params["train"]
    with pytest.raises(ConfigError, match="contradicts refit"):
        experiment_from_dict({**old, "refit": True})


def test_one_refit_switch_refits_classic_models_on_train_and_valid():
    config = experiment_from_dict({"name": "ease", "data": {"dataset": "synthetic"},
                                   "split": {"method": "leave-one-out"},
                                   "model": {"name": "ease", "l2": 10.0, "grid": {"l2": [1.0, 50.0]}},
                                   "evaluation": {"k": [10]}})
    data = prepare_data(config)
    run = run_model(config.model, data, config)
    assert len(run.model.history_) == len(data.split.history("test"))
    off = run_model(config.model, data, experiment_from_dict({**config.to_dict(), "refit": False}))
    assert len(off.model.history_) == len(data.split.train)


def test_served_neural_model_trains_on_everything_for_the_chosen_epoch_count():
    config = sasrec_experiment(refit=False)
    data = prepare_data(config)
    run = run_model(config.model, data, config)
    served = refit_all(run, data)
    assert len(served.model.history_) == len(data.dataset.interactions)
    assert len(served.model.train_result_.history) == run.model.train_result_.best_epoch
    assert served.record()["metrics"] == run.record()["metrics"] and served.record()["fitted_on"] == "all"


def test_served_artifact_knows_every_interaction_of_ml100k(ml100k, data_dir, tmp_path):
    """The ml-100k EASE artifact `recloop compare --output` writes: its known items for
    user 1 are all of user 1's rows in u.data, and none of them is recommended."""
    from recloop.artifact import load_artifact
    from recloop.cli import main

    config = tmp_path / "ease.toml"
    config.write_text('name = "served"\n[data]\ndataset = "ml-100k"\n[split]\nmethod = "ratio"\n'
                      'test_ratio = 0.25\n[evaluation]\nk = [10]\nbeyond = []\n'
                      '[[models]]\nname = "ease"\nl2 = 500.0\n')
    out = tmp_path / "run"
    assert main(["compare", str(config), "--output", str(out), "--quiet", "--offline",
                 "--data-dir", str(data_dir)]) == 0
    artifact = load_artifact(out / "models" / "ease")
    model = artifact.model
    log = ml100k.interactions  # no preprocessing in this config
    user = log.users.index("1")
    rated = {log.items.id(i) for i in log.item_idx[log.user_idx == user]}
    served_user = model.users_.index("1")
    known = {model.items_.id(i) for i in model.history_.histories([served_user]).row(0)}
    assert known == rated and len(rated) == 272
    assert len(model.history_) == len(log) == 100_000
    items, _ = model.recommend([served_user], k=50)
    assert not {model.items_.id(i) for i in items[0]} & rated
    assert artifact.metrics["fitted_on"] == "all" and 0.4 < artifact.metrics["metrics"]["ndcg@10"] < 0.6
    results = (out / "results.json").read_text()
    assert str(artifact.metrics["metrics"]["ndcg@10"]) in results  # the evaluated model's metrics, kept

    evaluated = tmp_path / "evaluated"
    assert main(["train", str(config), "--output", str(evaluated), "--quiet", "--offline", "--no-refit-all",
                 "--data-dir", str(data_dir)]) == 0
    old = load_artifact(evaluated).model
    assert len(old.history_) < len(log)
    items, _ = old.recommend([old.users_.index("1")], k=5)
    assert np.isin([old.items_.id(i) for i in items[0]], list(rated)).any()  # the bug the refit fixes
