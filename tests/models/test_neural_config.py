"""Nested trainer configs: TOML -> typed config -> model -> artifact -> model, and the CLI."""

import json

import numpy as np
import pytest

from recloop.artifact import load_artifact
from recloop.cli import main
from recloop.config import experiment_from_dict, load_config
from recloop.errors import ConfigError
from recloop.experiment import build_model
from recloop.models import SASRec
from recloop.train import TrainerConfig

CONFIG = """
name = "tiny-sasrec"
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[model]
name = "sasrec"
hidden = 16
layers = 1
max_len = 10
[model.train]
epochs = 2
lr = 0.005
progress = false
num_threads = 1
[evaluation]
k = [10]
"""


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_partial_train_table_keeps_the_models_other_training_defaults(tmp_path):
    config = load_config(write(tmp_path, CONFIG))
    model = build_model(config.model)
    train = model.config.train
    assert isinstance(train, TrainerConfig) and train.epochs == 2 and train.lr == 0.005
    assert train.batch_size == SASRec().config.train.batch_size == 128  # the model's default, not the trainer's
    assert model.config.hidden == 16
    json.dumps(config.to_dict())  # nested tables stay JSON/TOML-able


def test_nested_config_round_trips_through_to_dict_and_overrides(tmp_path):
    config = load_config(write(tmp_path, CONFIG), ["model.train.epochs=7"])
    assert build_model(config.model).config.train.epochs == 7
    assert experiment_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("old, new, message", [
    ("epochs = 2", "epoch = 3", r"model\.train\.epoch.*did you mean 'epochs'"),
    ("lr = 0.005", 'lr = "fast"', r"model\.train\.lr must be a number"),
    ("epochs = 2", "schedule = 3", r"model\.train\.schedule must be a string"),
    ("epochs = 2", "patience = -1", r"train\.patience must be 0 or more"),
    ("hidden = 16", "hiden = 16", r"model\.hiden.*did you mean 'hidden'"),
])
def test_bad_fields_fail_at_load_naming_the_field(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, CONFIG.replace(old, new)))


def test_recloop_train_writes_an_artifact_with_the_nested_config(tmp_path, capsys):
    path = write(tmp_path, CONFIG)
    assert main(["train", str(path), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    header = json.loads((tmp_path / "out" / "model.json").read_text())
    assert header["model"] == "sasrec" and header["config"]["train"]["epochs"] == 2
    artifact = load_artifact(tmp_path / "out")
    assert artifact.model.config == build_model(load_config(path).model).config
    assert "ndcg@10" in artifact.metrics["metrics"]
    scores = artifact.model.score(np.arange(3))
    assert scores.shape == (3, artifact.model.n_items) and np.isfinite(scores).all()
    assert main(["train", str(path), "--output", str(tmp_path / "x"), "--quiet", "--model.train.epochs=0"]) == 2
    assert "train.epochs must be at least 1" in capsys.readouterr().err
