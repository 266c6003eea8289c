"""``[model.search]``: how a config declares what a tuner may try, and how it is checked."""

import tomllib

import pytest

from recloop.config import experiment_from_dict, load_config
from recloop.errors import ConfigError
from recloop.search_space import Choice, FloatRange, IntRange, merge, nest, parse_space, space_table, suggest
from recloop.typed_config import dump_toml


def test_lists_ranges_log_scales_and_nested_sections_parse_to_dimensions():
    space = parse_space(tomllib.loads('''
        hidden = [32, 64, 128]
        layers = {low = 1, high = 3}
        dropout = {low = 0.0, high = 0.5, step = 0.1}
        l2 = {low = 10, high = 1000, log = true, type = "float"}
        "train.lr" = {low = 1e-4, high = 1e-2, log = true}
        [train]
        batch_size = [128, 256]
        weight_decay = {low = 0.0, high = 0.1}
    '''))
    assert space == {
        "hidden": Choice((32, 64, 128)), "layers": IntRange(1, 3), "dropout": FloatRange(0.0, 0.5, step=0.1),
        "l2": FloatRange(10.0, 1000.0, log=True), "train.lr": FloatRange(1e-4, 1e-2, log=True),
        "train.batch_size": Choice((128, 256)), "train.weight_decay": FloatRange(0.0, 0.1),
    }
    assert parse_space(space_table(space)) == space  # the table it is saved as reads back the same


@pytest.mark.parametrize("table, message", [
    ({"hidden": []}, "empty list"),
    ({"lr": {"low": 1e-2, "high": 1e-4}}, "low .* must be below high"),
    ({"lr": {"low": 0.0, "high": 1.0, "log": True}}, "log-scale range needs low > 0"),
    ({"lr": {"low": 0.1}}, "needs both low and high"),
    ({"lr": {"low": 0.1, "hihg": 1.0}}, "did you mean 'high'"),
    ({"layers": {"low": 1, "high": 4, "step": 0.5, "type": "int"}}, "integer low, high and step"),
    ({"hidden": 64}, "give a list of values"),
])
def test_a_malformed_dimension_is_refused_with_its_key(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(table)


def experiment(model):
    return {"name": "t", "data": {"dataset": "synthetic"}, "split": {"method": "leave-one-out"}, "model": model}


def test_search_keys_and_bounds_are_checked_against_the_models_config():
    spec = experiment_from_dict(experiment({"name": "ease", "search": {"l2": {"low": 1, "high": 100}}})).model
    assert spec.search == {"l2": IntRange(1, 100)} and spec.params == {}
    with pytest.raises(ConfigError, match="unknown config key 'model.search.l3'.*'l2'"):
        experiment_from_dict(experiment({"name": "ease", "search": {"l3": [1.0, 2.0]}}))
    with pytest.raises(ConfigError, match="model.search.train.lr must be a number"):
        experiment_from_dict(experiment({"name": "sasrec", "search": {"train.lr": ["fast", 1e-3]}}))
    with pytest.raises(ConfigError, match="both a grid and a search"):
        experiment_from_dict(experiment({"name": "ease", "grid": {"l2": [1.0]}, "search": {"l2": [2.0]}}))


def test_a_config_with_a_search_round_trips_through_its_toml(tmp_path):
    config = experiment_from_dict(experiment({"name": "sasrec", "hidden": 16, "train": {"epochs": 3},
                                              "search": {"dropout": {"low": 0.0, "high": 0.5},
                                                         "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}))
    tree = config.to_dict()
    (model,) = tree.pop("models")
    path = tmp_path / "c.toml"
    path.write_text(dump_toml({**tree, "model": model}))
    assert load_config(path) == config


class Fixed:
    """A stand-in for an Optuna trial: the low end of each range, the first choice."""

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return low

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]


def test_suggested_values_nest_into_the_model_table():
    space = parse_space({"hidden": [8, 16], "train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}})
    flat = suggest(space, Fixed())
    assert flat == {"hidden": 8, "train.lr": 1e-4}
    assert merge({"hidden": 64, "train": {"epochs": 5, "lr": 1e-3}}, nest(flat)) == \
        {"hidden": 8, "train": {"epochs": 5, "lr": 1e-4}}


def test_dump_toml_reads_back_the_same_tree():
    tree = {"name": "x", "seed": 1, "refit": True, "ratio": 1e-05, "k": [5, 10], "odd key": 'a"b\\c',
            "data": {"dataset": "ml-100k"}, "models": [{"name": "ease", "train": {"lr": 0.001}}, {"name": "als"}]}
    assert tomllib.loads(dump_toml(tree, header="line one\nline two")) == tree
