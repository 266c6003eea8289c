"""How a fitted model writes itself to disk: the artifact format's writing half.

An artifact is a directory of plain arrays and JSON, no pickle::

    artifact/
      model.json            format version, model name, hyperparameters, recloop version,
                            the user/item counts and each state array's dtype and shape
      state.safetensors     the model's learned arrays
      history.safetensors   the interactions it was fitted on (known items, histories)
      users.json items.json external ids in index order
      item_features.json    side features, when the model had them
      user_features.json
      user_graph.safetensors the user-user relation (friendships), when the model had one
      metrics.json          evaluation results, when there are any
      extra.json            anything else the writer attaches (experiment config, timings)

Writing needs only the model, so it lives here, below the model registry, and
``Recommender.save`` calls it. Reading an artifact back needs the registry (the model
class by name) and checks everything it reads: that is :mod:`recloop.artifact`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from recloop import __version__

FORMAT = "recloop-artifact"
#: 2 adds ``n_users``/``n_items`` and the ``state`` schema (dtype and shape per array) to
#: model.json; version 1 artifacts still load, without those checks.
FORMAT_VERSION = 2
HEADER, STATE, HISTORY, USERS, ITEMS = "model.json", "state.safetensors", "history.safetensors", "users.json", \
    "items.json"
METRICS, EXTRA = "metrics.json", "extra.json"
USER_GRAPH = "user_graph.safetensors"
FEATURES = ("item_features", "user_features")


def save_artifact(model: Any, path: str | Path, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write fitted ``model`` to ``path`` atomically (a half-written artifact never appears)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: np.ascontiguousarray(v) for k, v in model._get_state().items()}
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "recloop_version": __version__,
                  "model": model.name, "config": jsonable(dataclasses.asdict(model.config)),
                  "n_users": len(model.users_), "n_items": len(model.items_),
                  "state": {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in state.items()}}
        write_json(staging / HEADER, header)
        save_file(state, str(staging / STATE))
        save_file({k: np.ascontiguousarray(v) for k, v in model.history_.to_arrays().items()}, str(staging / HISTORY))
        write_json(staging / USERS, model.users_.to_list())
        write_json(staging / ITEMS, model.items_.to_list())
        for name in FEATURES:
            features = getattr(model, f"{name}_", None)
            if features is not None:
                write_json(staging / f"{name}.json", features.to_dict())
        graph = getattr(model, "user_graph_", None)
        if graph is not None:
            save_file({k: np.ascontiguousarray(v) for k, v in graph.to_arrays().items()}, str(staging / USER_GRAPH))
        write_json(staging / METRICS, jsonable(metrics or {}))
        write_json(staging / EXTRA, jsonable(extra or {}))
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


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python, paths to strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
