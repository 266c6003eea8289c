"""``run_model``: the protocol of one experiment row (selection, refit, test)."""

from recloop.config import experiment_from_dict
from recloop.experiment import prepare_data, run_model


def sasrec_experiment(refit: bool):
    return experiment_from_dict({
        "name": "refit",
        "data": {"dataset": "synthetic"},
        "split": {"method": "leave-one-out"},
        "model": {"name": "sasrec", "hidden": 16, "layers": 1, "max_len": 10, "dropout": 0.1,
                  "attention_dropout": 0.1,
                  "train": {"epochs": 8, "patience": 2, "lr": 5e-3, "batch_size": 128, "num_threads": 1,
                            "progress": False, "refit": refit}},
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
