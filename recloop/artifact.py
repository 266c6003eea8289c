"""The on-disk form of a fitted model: a directory of plain arrays and JSON, no pickle.

::

    artifact/
      model.json            format version, model name, hyperparameters, recloop version
      state.safetensors     the model's learned arrays
      history.safetensors   the interactions it was fitted on (known items, histories)
      users.json items.json external ids in index order
      item_features.json    side features, when the model had them
      user_features.json
      metrics.json          evaluation results, when there are any
      extra.json            anything else the writer attaches (experiment config, timings)

A reloaded model gives bit-identical scores: every array round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from recloop import __version__
from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.errors import DataError

FORMAT = "recloop-artifact"
FORMAT_VERSION = 1


@dataclass
class Artifact:
    """A loaded artifact: the model plus what was written beside it."""

    path: Path
    model: Any
    metrics: dict
    extra: dict


def save_artifact(model, path: Path, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (a half-written artifact never appears)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "recloop_version": __version__,
                  "model": model.name, "config": _jsonable(dataclasses.asdict(model.config))}
        _write_json(staging / "model.json", header)
        state = {k: np.ascontiguousarray(v) for k, v in model._get_state().items()}
        save_file(state, str(staging / "state.safetensors"))
        save_file({k: np.ascontiguousarray(v) for k, v in model.history_.to_arrays().items()},
                  str(staging / "history.safetensors"))
        _write_json(staging / "users.json", model.users_.to_list())
        _write_json(staging / "items.json", model.items_.to_list())
        for name in ("item_features", "user_features"):
            features = getattr(model, f"{name}_", None)
            if features is not None:
                _write_json(staging / f"{name}.json", features.to_dict())
        _write_json(staging / "metrics.json", _jsonable(metrics or {}))
        _write_json(staging / "extra.json", _jsonable(extra or {}))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "artifact")
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def load_artifact(path: Path) -> Artifact:
    """Read an artifact directory written by :func:`save_artifact`."""
    from recloop.models import get_model_class

    path = Path(path)
    header_path = path / "model.json"
    if not header_path.is_file():
        raise DataError(f"{path} is not a recloop artifact: {header_path.name} is missing "
                        "(write one with `recloop train CONFIG --output DIR`)")
    header = json.loads(header_path.read_text())
    if header.get("format") != FORMAT or header.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(f"{path}: unsupported artifact format {header.get('format')!r} "
                        f"version {header.get('format_version')!r}")
    model_class = get_model_class(header["model"])
    model = model_class(**header["config"])
    users = IdMap(json.loads((path / "users.json").read_text()), "user")
    items = IdMap(json.loads((path / "items.json").read_text()), "item")
    model.users_, model.items_ = users, items
    model.history_ = Interactions.from_arrays(load_file(str(path / "history.safetensors")), users, items)
    for name in ("item_features", "user_features"):
        file = path / f"{name}.json"
        setattr(model, f"{name}_", Features.from_dict(json.loads(file.read_text())) if file.is_file() else None)
    model._set_state(load_file(str(path / "state.safetensors")))
    return Artifact(path, model, _read_json(path / "metrics.json"), _read_json(path / "extra.json"))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python, paths to strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
