"""Search spaces of hyperparameters, as an experiment file declares them under ``[model.search]``.

Each key names a hyperparameter of the model's config (nested ones, such as the trainer's,
in a sub-table or with a dotted key) and says what values a tuner may try::

    [model.search]
    hidden = [32, 64, 128]                        # a list: one of these values
    layers = {low = 1, high = 3}                  # integer bounds: an integer range (inclusive)
    dropout = {low = 0.0, high = 0.5}             # float bounds: a float range
    "train.lr" = {low = 1e-4, high = 1e-2, log = true}   # sampled on a log scale

A range may also say ``step`` (a grid inside the range) and ``type = "int"`` or
``"float"`` (when the bounds' own types do not say it: ``{low = 10, high = 1000, type =
"float", log = true}``). The dimensions are plain dataclasses; :meth:`Dimension.suggest`
asks any object with Optuna's ``suggest_int``/``suggest_float``/``suggest_categorical``
methods (an ``optuna.Trial``), so this module does not import Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from recloop.errors import ConfigError, closest

RANGE_KEYS = ("low", "high", "log", "step", "type")


class Suggester(Protocol):
    """What a dimension asks for a value (an ``optuna.Trial`` is one)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: list) -> Any: ...


@dataclass(frozen=True)
class Choice:
    """One of ``choices``."""

    choices: tuple[Any, ...]

    def suggest(self, name: str, trial: Suggester) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def bounds(self) -> tuple[Any, ...]:
        return self.choices

    def contains(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]`` (both included), every ``step``, on a log scale when ``log``."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, name: str, trial: Suggester) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def bounds(self) -> tuple[int, int]:
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high \
            and (value - self.low) % self.step == 0


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``, every ``step`` when given, on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, name: str, trial: Suggester) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


Dimension = Choice | IntRange | FloatRange


def parse_space(table: Any, where: str = "model.search") -> dict[str, Dimension]:
    """The dimensions of a ``[model.search]`` table, keyed by dotted path (``train.lr``).

    Raises :class:`ConfigError` naming the key for anything that is not a non-empty list
    or a ``{low, high, ...}`` table with ``low < high`` (``low > 0`` on a log scale)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of hyperparameter = list or {{low, high}}, got {table!r}")
    space: dict[str, Dimension] = {}
    for key, value in table.items():
        path = f"{where}.{key}"
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{path} is an empty list; give the values to try")
            space[key] = Choice(tuple(value))
        elif isinstance(value, Mapping) and ("low" in value or "high" in value):
            space[key] = _parse_range(value, path)
        elif isinstance(value, Mapping):  # a nested section: [model.search.train]
            space.update({f"{key}.{k}": v for k, v in parse_space(value, path).items()})
        else:
            raise ConfigError(f"{path} = {value!r}: give a list of values ([32, 64]) or a range "
                              "({low = 1e-4, high = 1e-2, log = true})")
    return space


def _parse_range(value: Mapping, path: str) -> Dimension:
    for key in value:
        if key not in RANGE_KEYS:
            raise ConfigError(f"unknown key {path}.{key}{closest(key, RANGE_KEYS)}; a range has {list(RANGE_KEYS)}")
    if "low" not in value or "high" not in value:
        raise ConfigError(f"{path} needs both low and high")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise ConfigError(f"{path}.{name} must be a finite number, got {bound!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{path}.log must be true or false, got {log!r}")
    kind = value.get("type", "int" if all(isinstance(v, int) for v in (low, high, step or 1)) else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{path}.type must be 'int' or 'float', got {kind!r}")
    if not low < high:
        raise ConfigError(f"{path}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{path}: a log-scale range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{path}.step must be a positive number, got {step!r}")
    if step is not None and log:
        raise ConfigError(f"{path}: step and log cannot be combined")
    if kind == "int":
        if not all(float(v).is_integer() for v in (low, high, step or 1)):
            raise ConfigError(f"{path}: an integer range needs integer low, high and step")
        return IntRange(int(low), int(high), log, int(step or 1))
    return FloatRange(float(low), float(high), log, None if step is None else float(step))


def space_table(space: Mapping[str, Dimension]) -> dict[str, Any]:
    """The ``[model.search]`` table of ``space`` (dotted keys), as :func:`parse_space` reads it."""
    out: dict[str, Any] = {}
    for key, dimension in space.items():
        if isinstance(dimension, Choice):
            out[key] = list(dimension.choices)
        else:
            table = {"low": dimension.low, "high": dimension.high, "log": dimension.log}
            if isinstance(dimension, FloatRange):
                table["type"] = "float"
            if dimension.step not in (None, 1):
                table["step"] = dimension.step
            out[key] = table
    return out


def suggest(space: Mapping[str, Dimension], trial: Suggester) -> dict[str, Any]:
    """One value per dimension, keyed by dotted path."""
    return {name: dimension.suggest(name, trial) for name, dimension in space.items()}


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-3, "hidden": 64}`` -> ``{"train": {"lr": 1e-3}, "hidden": 64}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` set on it, nested tables merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
