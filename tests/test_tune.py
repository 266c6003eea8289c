"""``recloop tune``: an Optuna study over ``[model.search]`` on validation, resumed from
SQLite, pruned on the validation curve, its best config written as TOML and tested once."""

import json

import pytest

pytest.importorskip("optuna")

from recloop.cli import main
from recloop.config import experiment_from_dict, load_config
from recloop.errors import ConfigError
from recloop.evaluate.evaluator import Evaluator
from recloop.experiment import prepare_data, run_model
from recloop.tune import TuneSettings, best_spec, parse_duration, tune

MODEL = {"name": "sasrec", "hidden": 16, "layers": 1, "max_len": 10,
         "train": {"epochs": 6, "patience": 3, "batch_size": 128, "num_threads": 1, "progress": False},
         "search": {"dropout": {"low": 0.0, "high": 0.5}, "train.lr": {"low": 1e-4, "high": 3e-2, "log": True},
                    "hidden": [8, 16]}}
SETTINGS = TuneSettings(trials=6, startup_trials=2, warmup_epochs=1)


def tiny(**changes):
    return experiment_from_dict({"name": "tiny", "data": {"dataset": "synthetic"},
                                 "split": {"method": "leave-one-out"}, "model": MODEL,
                                 "evaluation": {"k": [10], "metrics": ["ndcg", "hr"], "beyond": []}, **changes})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study of six trials, with every fit and evaluation recorded."""
    output = tmp_path_factory.mktemp("tune")
    config = tiny()
    data = prepare_data(config)
    calls = []
    patch = pytest.MonkeyPatch()
    evaluate = Evaluator.evaluate
    import recloop.tune as tune_module

    def spy_evaluate(self, model, targets, history, *args, **kwargs):
        calls.append(("evaluate", targets))
        return evaluate(self, model, targets, history, *args, **kwargs)

    def spy_fit(model, data, train, valid=None, callbacks=()):
        calls.append(("fit", train))
        return fit(model, data, train, valid, callbacks)

    def spy_run_model(*args, **kwargs):
        calls.append(("final", None))
        return run_model(*args, **kwargs)

    fit = tune_module.fit
    patch.setattr(Evaluator, "evaluate", spy_evaluate)
    patch.setattr(tune_module, "fit", spy_fit)
    patch.setattr(tune_module, "run_model", spy_run_model)
    try:
        result = tune(config, data, SETTINGS, output)
    finally:
        patch.undo()
    return config, data, result, output, calls


def test_trials_see_train_and_valid_only_and_the_test_split_once_at_the_end(study):
    _, data, result, _, calls = study
    parts = data.split
    final = calls.index(("final", None))
    trial_calls = calls[:final]
    assert sum(kind == "fit" for kind, _ in trial_calls) == len(result.trials) == 6
    assert all(log is parts.train for kind, log in trial_calls if kind == "fit")
    assert all(log is parts.valid for kind, log in trial_calls if kind == "evaluate")  # early stopping + objective
    tested = [log for kind, log in calls[final:] if kind == "evaluate" and log is parts.test]
    assert tested and len(result.run.test.per_user["ndcg@10"]) == parts.test.n_users  # tested after the search


def test_pruning_stops_trials_whose_validation_curve_falls_behind(study):
    _, _, result, _, _ = study
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    complete = [t for t in result.trials if t["state"] == "complete"]
    assert pruned and complete and result.counts == {"complete": len(complete), "pruned": len(pruned)}
    assert all(t["epochs"] < MODEL["train"]["epochs"] for t in pruned)  # stopped before the last epoch
    assert result.best_value == max(t["value"] for t in complete)


def test_the_best_config_is_written_as_toml_that_evaluate_reproduces(study):
    config, data, result, output, _ = study
    best = load_config(output / "best.toml")
    assert not best.model.search and best.model.params["dropout"] == result.best_params["dropout"]
    assert best.model.params["train"]["lr"] == result.best_params["train.lr"]
    assert best.model.params["hidden"] == result.best_params["hidden"]
    assert best.split == config.split and best.evaluation == config.evaluation and best.refit == config.refit
    rerun = run_model(best.model, data, best)  # what `recloop evaluate best.toml` runs: the same numbers
    assert rerun.test.summary()["ndcg@10"] == pytest.approx(result.run.test.summary()["ndcg@10"])
    record = json.loads((output / "tune.json").read_text())
    assert record["best"]["params"] == result.best_params and len(record["trials"]) == 6
    assert record["test"]["metrics"]["ndcg@10"] == pytest.approx(result.run.test.summary()["ndcg@10"])
    assert "valid ndcg@10" in (output / "best.toml").read_text().splitlines()[0]


def test_the_first_trial_of_a_new_study_is_the_configs_own_settings(study):
    _, _, result, _, _ = study
    first = result.trials[0]
    assert first["from_config"] and first["params"] == {"dropout": 0.5, "train.lr": 1e-3, "hidden": 16}
    assert not any(t.get("from_config") for t in result.trials[1:])


def test_running_again_resumes_the_stored_study_and_adds_new_trials(study):
    config, data, first, output, _ = study
    again = tune(config, data, TuneSettings(trials=2, startup_trials=2, warmup_epochs=1), output)
    assert len(again.trials) == 8 and again.added_trials == 2
    assert [t["params"] for t in again.trials[:6]] == [t["params"] for t in first.trials]
    old = {json.dumps(t["params"], sort_keys=True) for t in first.trials}
    assert all(json.dumps(t["params"], sort_keys=True) not in old for t in again.trials[6:])  # new points


def test_a_stored_study_of_another_config_is_not_mixed_in(study):
    _, data, _, output, _ = study
    other = tiny(seed=7)
    with pytest.raises(ConfigError, match="made for another config"):
        tune(other, data, TuneSettings(trials=1), output)


def test_tuning_needs_a_search_space_and_a_validation_split(tmp_path):
    no_search = tiny(model={k: v for k, v in MODEL.items() if k != "search"})
    with pytest.raises(ConfigError, match="no \\[model.search\\]"):
        tune(no_search, prepare_data(no_search), SETTINGS, tmp_path)
    no_valid = tiny(split={"method": "ratio", "test_ratio": 0.2})
    with pytest.raises(ConfigError, match="needs a validation split"):
        tune(no_valid, prepare_data(no_valid), SETTINGS, tmp_path)


class Trial:
    def __init__(self, params, **user_attrs):
        self.params, self.user_attrs = params, user_attrs


def test_a_best_trial_stopped_by_its_time_budget_is_written_with_the_epochs_it_reached():
    spec = tiny(model={**MODEL, "train": {**MODEL["train"], "max_minutes": 2.0}}).model
    timed = best_spec(spec, Trial({"train.lr": 0.01}, stopped="time_budget", epochs=4))
    assert timed.params["train"]["epochs"] == 4 and timed.params["train"]["max_minutes"] == 0.0
    assert timed.params["train"]["lr"] == 0.01 and not timed.search
    early = best_spec(spec, Trial({"train.lr": 0.01}, stopped="early_stopping", epochs=4))
    assert early.params["train"]["epochs"] == 6 and early.params["train"]["max_minutes"] == 2.0


def test_durations_read_seconds_minutes_and_hours():
    assert [parse_duration(t) for t in ("90", "90s", "30m", "1.5h", None)] == [90, 90, 1800, 5400, None]
    with pytest.raises(ConfigError, match="30m"):
        parse_duration("half an hour")


def test_recloop_tune_on_the_command_line_writes_a_best_config_that_evaluate_runs(tmp_path, capsys):
    config = tmp_path / "ease.toml"
    config.write_text('name = "ease-tune"\n[data]\ndataset = "synthetic"\n[split]\nmethod = "leave-one-out"\n'
                      '[model]\nname = "ease"\n[model.search]\nl2 = {low = 1.0, high = 1000.0, log = true}\n'
                      '[evaluation]\nk = [10]\n')
    out = tmp_path / "out"
    assert main(["tune", str(config), "--trials", "3", "--timeout", "5m", "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "study 'ease-tune': 3 trials (3 complete" in printed and "best trial" in printed
    assert (out / "study.db").is_file()  # the default storage, next to the outputs
    assert main(["tune", str(config), "--trials", "1", "--quiet", "-o", str(out)]) == 0
    assert "4 trials" in capsys.readouterr().out  # resumed
    assert main(["evaluate", str(out / "best.toml"), "--quiet"]) == 0
