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
    # or, for `recloop tune`, a space to search (recloop.search_space):
    # [model.search]
    # l2 = {low = 10, high = 5000, log = true}
    [evaluation]
    k = [10]

``[[models]]`` (an array of tables) lists several models for ``recloop compare``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.data.preprocess import PreprocessConfig
from recloop.data.quality import DataFilters
from recloop.data.splits import SplitConfig
from recloop.errors import ConfigError, closest
from recloop.evaluate.evaluator import EvaluationConfig
from recloop.models import MODELS
from recloop.rank.fairness import FairnessConfig
from recloop.search_space import Dimension, merge, nest, parse_space, space_table

# The generic reader lives in recloop.typed_config; imported here because this module uses it
# (and code that imported it from recloop.config keeps working).
from recloop.typed_config import apply_override, from_dict, parse_value, plain, read_toml, set_path


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from.

    ``dataset`` is a known name (``ml-100k``, ``amazon-beauty``, ...), ``synthetic`` or a
    path; ``format`` overrides detection; ``user``/``item``/``rating``/``timestamp`` and
    ``sep`` map the columns of a generic CSV/Parquet file. ``filters`` (``[data.filters]``)
    drop what ``recloop data check`` flags (duplicates, bots, ...) before preprocessing.

    ``shard_by_user``: under ``torchrun``, each process loads and keeps only the rows of
    its own users (``hash(user id) % processes``) over the whole log's vocabularies, and
    training, validation and evaluation work on those shards (:mod:`recloop.data.shard`,
    ``docs/scale.md``). For models trained by the Trainer (SASRec, GRU4Rec, two-tower,
    ...); no effect in a single process.
    """

    dataset: str = "ml-100k"
    format: str | None = None
    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None
    sep: str = ","
    filters: DataFilters = field(default_factory=DataFilters)
    shard_by_user: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model by registry name, its hyperparameters, and an optional grid of
    hyperparameter values to choose from on the validation split (every experiment
    tries the whole grid, :mod:`recloop.search`), or a search space for ``recloop tune``
    (:mod:`recloop.tune`; keyed by dotted path, ``train.lr``), not both. ``recloop
    train``/``evaluate`` run ``params`` and leave a search to the tuner, so one file is
    both the untuned reference and the tuner's input."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    label: str | None = None
    search: Mapping[str, Dimension] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, preprocessing, split, model(s), evaluation.

    ``refit`` (the one refit switch, for classic and neural models alike): after
    validation has chosen the hyperparameters (a ``grid``) and, for a model that stops
    early, the epoch count, fit a fresh model with those choices on training plus
    validation and test that one. The validation interactions (in a leave-one-out split
    each user's most recent one) then become training data. For a model that stops
    early this trains a second network; the early-stopped one's test metrics are kept as
    ``test_before_refit``. ``false`` tests the model fitted on training alone.
    (Old configs' ``[model.train] refit`` is read as this switch, with a warning.)

    Independent of ``refit``, the artifact ``recloop train``/``compare --output`` saves
    for serving is refitted on *every* interaction after the evaluation
    (:func:`recloop.experiment.refit_all`).
    """

    name: str = "experiment"
    seed: int = 42
    refit: bool = True
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    #: Exposure-aware re-ranking of every evaluated list (calibration, exposure quota);
    #: off by default. See docs/fairness.md.
    rerank: FairnessConfig = field(default_factory=FairnessConfig)
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
                          **({"search": space_table(m.search)} if m.search else {}),
                          **({"label": m.label} if m.label else {})} for m in self.models]
        return plain(out)


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
        _apply_experiment_override(raw, override)
    return experiment_from_dict(raw, source=str(path))


def _apply_experiment_override(raw: dict, override: str) -> None:
    """As :func:`apply_override`; ``model.x=v`` also reaches the one ``[[models]]`` table."""
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if sep and parts[0] == "model" and "models" in raw and "model" not in raw:
        if len(raw["models"]) != 1:
            raise ConfigError(f"override {override!r} is ambiguous: the config lists {len(raw['models'])} models")
        set_path(raw["models"][0], parts[1:], parse_value(text), override)
        return
    apply_override(raw, override)


def experiment_from_dict(raw: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
    raw = dict(raw)
    model_tables: list[Any] = []
    if "model" in raw and "models" in raw:
        raise ConfigError(f"{source}: use either [model] or [[models]], not both")
    if "model" in raw:
        model_tables = [raw.pop("model")]
    elif "models" in raw:
        model_tables = list(raw.pop("models"))
    wheres = [f"models[{i}]" if len(model_tables) > 1 else "model" for i in range(len(model_tables))]
    model_tables = [_legacy_refit(table, where, raw, source) for table, where in zip(model_tables, wheres)]
    config = from_dict(ExperimentConfig, raw, "")
    specs = tuple(model_spec(table, where) for table, where in zip(model_tables, wheres))
    return dataclasses.replace(config, models=specs)


def _legacy_refit(table: Any, where: str, raw: dict, source: str) -> Any:
    """Read an old ``[model.train] refit`` as the experiment's one ``refit`` switch."""
    train = table.get("train") if isinstance(table, Mapping) else None
    if not isinstance(train, Mapping) or "refit" not in train:
        return table
    value = train["refit"]
    warnings.warn(f"{source}: {where}.train.refit is replaced by the top-level `refit = {str(value).lower()}`, "
                  "one switch for every model; reading it as that", FutureWarning, stacklevel=4)
    if raw.setdefault("refit", value) != value:
        raise ConfigError(f"{source}: {where}.train.refit = {value!r} contradicts refit = {raw['refit']!r}; "
                          "keep only the top-level refit")
    return {**table, "train": {k: v for k, v in train.items() if k != "refit"}}


def model_spec(table: Any, where: str) -> ModelSpec:
    """Check a model table against the registry and the model's config class."""
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
    search = parse_space(table.pop("search"), f"{where}.search") if "search" in table else {}
    if grid and search:
        raise ConfigError(f"{where} has both a grid and a search; keep [{where}.grid] (every experiment tries all "
                          f"of it) or [{where}.search] (sampled by `recloop tune`), not both")
    config_class = MODELS[name].config_class
    params = from_dict(config_class, table, f"{where}.")  # validates names and types
    # Nested configs (``train``) stay plain tables here, so specs and run records are JSON-able.
    values = {k: plain(getattr(params, k)) if dataclasses.is_dataclass(getattr(params, k)) else getattr(params, k)
              for k in table}
    checked_grid = {}
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{where}.grid.{key} must be a non-empty list of values")
        checked_grid[key] = tuple(getattr(from_dict(config_class, {**table, key: v}, f"{where}.grid."), key)
                                  for v in options)
    for key, dimension in search.items():  # every bound and choice must make a valid config
        for v in dimension.bounds():
            from_dict(config_class, merge(table, nest({key: v})), f"{where}.search.")
    return ModelSpec(name, values, checked_grid, label, search)
