"""Typed experiment configuration, read from TOML.

The dataclasses are the truth; a TOML file is only their saved form. Every key is
checked: an unknown one names the closest valid key, a value of the wrong type names
the field and the type it needs. Overrides (``model.l2=300``) are applied to the raw
tree before checking, so they are checked the same way.

An experiment file looks like::

    name = "ml100k-ease"
    [data]
    dataset = "ml-100k"
    [split]
    method = "ratio"
    test_ratio = 0.25
    [model]
    name = "ease"
    l2 = 500
    [model.grid]          # optional: values tried on the validation split
    l2 = [100, 500]
    [evaluation]
    k = [10]

``[[models]]`` (an array of tables) lists several models for ``recloop compare``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.data.preprocess import PreprocessConfig
from recloop.data.splits import SplitConfig
from recloop.errors import ConfigError, closest
from recloop.evaluate.evaluator import EvaluationConfig


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from.

    ``dataset`` is a known name (``ml-100k``, ``amazon-beauty``, ...), ``synthetic`` or a
    path; ``format`` overrides detection; ``user``/``item``/``rating``/``timestamp`` and
    ``sep`` map the columns of a generic CSV/Parquet file.
    """

    dataset: str = "ml-100k"
    format: str | None = None
    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None
    sep: str = ","


@dataclass(frozen=True)
class ModelSpec:
    """A model by registry name, its hyperparameters, and an optional grid of
    hyperparameter values to choose from on the validation split."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    label: str | None = None

    @property
    def display_name(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, preprocessing, split, model(s), evaluation.

    ``refit``: after choosing hyperparameters on validation, fit again on training
    plus validation before the test evaluation (models that stop early on validation
    keep their fit).
    """

    name: str = "experiment"
    seed: int = 42
    refit: bool = True
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    models: tuple[ModelSpec, ...] = ()

    @property
    def model(self) -> ModelSpec:
        """The single model of a ``train``/``evaluate`` config."""
        if len(self.models) != 1:
            raise ConfigError(f"experiment {self.name!r} lists {len(self.models)} models; this command needs "
                              "exactly one (use `recloop compare` for several, or --model NAME to pick one)")
        return self.models[0]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["models"] = [{"name": m.name, **dict(m.params), **({"grid": {k: list(v) for k, v in m.grid.items()}}
                                                              if m.grid else {}),
                          **({"label": m.label} if m.label else {})} for m in self.models]
        return _plain(out)


def _plain(value):
    """JSON/TOML-able: nested dataclasses to dicts, tuples to lists, ``None`` dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- loading --------------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: list[str] | None = None, select: str | None = None) -> ExperimentConfig:
    """Read an experiment TOML file, keep only the model named or labelled ``select``
    (if given), and apply ``key.path=value`` overrides."""
    path = Path(path)
    raw = read_toml(path)
    if select is not None:
        tables = raw.get("models", [raw["model"]] if "model" in raw else [])
        chosen = [t for t in tables if isinstance(t, dict) and select in (t.get("name"), t.get("label"))]
        if not chosen:
            names = [t.get("label") or t.get("name") for t in tables if isinstance(t, dict)]
            raise ConfigError(f"no model named {select!r} in {path}{closest(select, names)}; it has {names}")
        raw.pop("model", None)
        raw["models"] = chosen[:1]
    for override in overrides or []:
        apply_override(raw, override)
    return experiment_from_dict(raw, source=str(path))


def read_toml(path: Path) -> dict:
    """The raw tree of a TOML config file, ``name`` defaulting to the file's stem."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    raw.setdefault("name", Path(path).stem)
    return raw


def apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a raw config tree; the value is parsed as TOML when it can
    be (``300``, ``true``, ``[5, 10]``), else kept as a string."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.path=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    node = raw
    parts = key.strip().split(".")
    if parts[0] == "model" and "models" in raw and "model" not in raw:
        if len(raw["models"]) != 1:
            raise ConfigError(f"override {override!r} is ambiguous: the config lists {len(raw['models'])} models")
        node, parts = raw["models"][0], parts[1:]
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = value


def experiment_from_dict(raw: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
    raw = dict(raw)
    model_tables: list[Any] = []
    if "model" in raw and "models" in raw:
        raise ConfigError(f"{source}: use either [model] or [[models]], not both")
    if "model" in raw:
        model_tables = [raw.pop("model")]
    elif "models" in raw:
        model_tables = list(raw.pop("models"))
    config = from_dict(ExperimentConfig, raw, "")
    specs = tuple(model_spec(table, f"models[{i}]" if len(model_tables) > 1 else "model")
                  for i, table in enumerate(model_tables))
    return dataclasses.replace(config, models=specs)


def model_spec(table: Any, where: str) -> ModelSpec:
    """Check a model table against the registry and the model's config class."""
    from recloop.models import MODELS

    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    table = dict(table)
    name = table.pop("name", None)
    if name is None:
        raise ConfigError(f"{where} needs a name; models are {sorted(MODELS)}")
    if name not in MODELS:
        raise ConfigError(f"{where}.name: unknown model {name!r}{closest(name, MODELS)}; models are {sorted(MODELS)}")
    label = table.pop("label", None)
    grid = table.pop("grid", {}) or {}
    config_class = MODELS[name].config_class
    params = from_dict(config_class, table, f"{where}.")  # validates names and types
    # Nested configs (``train``) stay plain tables here, so specs and run records are JSON-able.
    values = {k: _plain(getattr(params, k)) if dataclasses.is_dataclass(getattr(params, k)) else getattr(params, k)
              for k in table}
    checked_grid = {}
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{where}.grid.{key} must be a non-empty list of values")
        checked_grid[key] = tuple(getattr(from_dict(config_class, {**table, key: v}, f"{where}.grid."), key)
                                  for v in options)
    return ModelSpec(name, values, checked_grid, label)


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking names and types recursively."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix + key!r}{closest(key, fields)}; "
                              f"valid keys{' in ' + prefix.rstrip('.') if prefix else ''} are {sorted(fields)}")
    values = {key: _convert(_onto_default(fields[key], value, hints[key]), hints[key], f"{prefix}{key}")
              for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {error}") from None


def _onto_default(spec: dataclasses.Field, value: Any, hint: Any) -> Any:
    """A partial table for a nested dataclass field fills in that field's own default,
    so ``[model.train] epochs = 5`` keeps the model's other training defaults."""
    if not (isinstance(value, Mapping) and dataclasses.is_dataclass(hint)):
        return value
    if spec.default is not dataclasses.MISSING:
        default = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
    else:
        return value
    if not isinstance(default, hint):
        return value
    return {**{f.name: getattr(default, f.name) for f in dataclasses.fields(default) if f.init}, **value}


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # an already-built nested config (Model(train=TrainerConfig(...)))
            return value
        return from_dict(hint, value, f"{where}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is expected: k = 10 means k = [10]
        item_type = args[0] if args else Any
        return tuple(_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {args}, got {value!r}")
        return value
    return value
