import pytest

from recloop.config import load_config
from recloop.errors import ConfigError

BASE = """
name = "t"
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[model]
name = "ease"
l2 = 100
[model.grid]
l2 = [10, 100]
[evaluation]
k = 10
"""


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_config_is_typed_and_round_trips(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert config.model.params == {"l2": 100.0} and config.model.grid == {"l2": (10.0, 100.0)}
    assert config.evaluation.k == (10,)
    assert config.to_dict()["models"] == [{"name": "ease", "l2": 100.0, "grid": {"l2": [10.0, 100.0]}}]


def test_overrides_are_parsed_and_checked(tmp_path):
    path = write(tmp_path, BASE)
    config = load_config(path, ["model.l2=300", "split.seed=7", "evaluation.k=[5, 20]"])
    assert config.model.params["l2"] == 300.0 and config.split.seed == 7 and config.evaluation.k == (5, 20)
    with pytest.raises(ConfigError, match="'model.l3'.*did you mean 'l2'"):
        load_config(path, ["model.l3=1"])
    with pytest.raises(ConfigError, match="split.seed must be an integer"):
        load_config(path, ["split.seed=seven"])


@pytest.mark.parametrize("text, message", [
    (BASE.replace("[split]", "[splt]"), "did you mean 'split'"),
    (BASE.replace('name = "ease"', 'name = "eas"'), "unknown model 'eas'.*did you mean 'ease'"),
    (BASE.replace("l2 = [10, 100]", "l2 = 5"), "grid.l2 must be a non-empty list"),
    (BASE.replace("k = 10", 'k = ["ten"]'), r"evaluation.k\[0\] must be an integer"),
    (BASE + "\n[preprocess]\nuser_core = true\n", "preprocess.user_core must be an integer"),
    ("name = [", "invalid TOML"),
])
def test_bad_configs_name_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_shipped_configs_are_valid():
    """Experiment configs load as experiments; benchmark configs with their own schema
    are checked by their own loaders (and their benchmarks)."""
    import tomllib
    from pathlib import Path

    from recloop.cold_start import load_cold_start_config

    checked = 0
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        if "cold_items" in raw or "new_users" in raw:
            load_cold_start_config(path)
        elif "model" in raw or "models" in raw:
            assert load_config(path).models, path
        else:
            continue
        checked += 1
    assert checked >= 8


def test_non_utf8_toml_is_a_config_error_naming_the_file(tmp_path, capsys):
    from recloop.cli import main

    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(byte 11"):
        load_config(path)
    assert main(["evaluate", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "latin1.toml: not UTF-8" in err and "UnicodeDecodeError" not in err


def test_the_typed_reader_works_for_any_dataclass_without_the_experiment_layer():
    from dataclasses import dataclass

    from recloop.typed_config import from_dict

    @dataclass(frozen=True)
    class Inner:
        size: int = 1

    @dataclass(frozen=True)
    class Outer:
        inner: Inner = Inner()
        name: str = "x"

    assert from_dict(Outer, {"inner": {"size": 3}}) == Outer(Inner(3))
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        from_dict(Outer, {"inner": {"sise": 3}})
