"""Typed configuration from plain trees: the reader every recloop config goes through.

A frozen dataclass is the truth; a TOML table (or a dict) is only its saved form.
:func:`from_dict` builds the dataclass, checking every key (an unknown one names the
closest valid key) and every value's type (naming the field and the type it needs),
recursively through nested dataclasses. :func:`read_toml` reads a file into a raw tree,
:func:`apply_override` sets ``a.b.c=value`` in it before checking, so overrides are
checked the same way.

This module is the bottom layer: it imports nothing of recloop but its errors, so any
layer (data, models, train, serve) may read its config through it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recloop.errors import ConfigError, closest

__all__ = ["apply_override", "closest", "dump_toml", "from_dict", "plain", "read_toml"]


def read_toml(path: str | Path) -> dict:
    """The raw tree of a TOML config file, ``name`` defaulting to the file's stem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); "
                          "save the config as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    raw.setdefault("name", path.stem)
    return raw


def dump_toml(tree: Mapping[str, Any], header: str = "") -> str:
    """``tree`` (a plain tree: tables, lists, strings, numbers, booleans) as TOML text that
    :func:`read_toml` reads back to the same tree; ``header`` becomes leading ``#`` lines.
    Scalars and lists of scalars first, then sub-tables, then arrays of tables."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _dump_table(tree, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _dump_table(tree: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    def is_table_array(v):
        return isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v)

    scalars = {k: v for k, v in tree.items() if not isinstance(v, Mapping) and not is_table_array(v)}
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join([*path, key]))}")
    for key, value in tree.items():
        if isinstance(value, Mapping):
            lines.extend(["", f"[{'.'.join(_toml_key(p) for p in [*path, key])}]"])
            _dump_table(value, [*path, key], lines)
    for key, value in tree.items():
        if is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(_toml_key(p) for p in [*path, key])}]]"])
                _dump_table(item, [*path, key], lines)


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):  # inside a list: an inline table
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{where}: {value!r} ({type(value).__name__}) cannot be written as TOML")


def parse_value(text: str) -> Any:
    """A command-line value: TOML when it parses (``300``, ``true``, ``[5, 10]``), else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a raw config tree; the value is parsed by :func:`parse_value`."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.path=value")
    set_path(raw, key.strip().split("."), parse_value(text), override)


def set_path(node: dict, parts: list[str], value: Any, override: str = "") -> None:
    """``node[parts[0]][parts[1]]... = value``, creating missing tables."""
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override or '.'.join(parts)!r}: {part!r} is not a section")
    node[parts[-1]] = value


def plain(value: Any) -> Any:
    """JSON/TOML-able: nested dataclasses to dicts, tuples to lists, ``None`` dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


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
