"""Loading a fitted model back: any artifact directory, checked before it is used.

The format and its writer are in :mod:`recloop.models.artifact_writer` (``model.save``
calls it); this module reads it back, resolving the model class by name through the
registry, so it sits above ``recloop.models``. A reloaded model gives bit-identical
scores: every array round-trips exactly.

Everything read is checked, and each failure is an :class:`~recloop.errors.ArtifactError`
naming the file and the problem (never a bare JSON, key or safetensors error): required
files present; JSON files parseable; ``model.json`` naming a known model with a valid
config; ``users.json``/``items.json`` lists of unique ids whose counts match the header;
each state array's dtype and shape as the header records them (an ``int8`` array where
the model saved ``float32`` is refused); no NaN or infinite value in a floating state
array; the fitted-on history inside the vocabularies; and finally one scoring call (the
first and last user) that must give ``(2, n_items)`` scores without NaN, which catches
weights that do not fit the id lists in any model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.data.social import UserGraph
from recloop.errors import ArtifactError, RecloopError
from recloop.models import MODELS, Recommender
from recloop.models.artifact_writer import (
    EXTRA,
    FEATURES,
    FORMAT,
    FORMAT_VERSION,
    HEADER,
    HISTORY,
    ITEMS,
    METRICS,
    STATE,
    USER_GRAPH,
    USERS,
    save_artifact,
)

__all__ = ["Artifact", "ArtifactError", "load_artifact", "load_model", "save_artifact"]


@dataclass
class Artifact:
    """A loaded artifact: the model plus what was written beside it."""

    path: Path
    model: Any
    metrics: dict
    extra: dict


def load_model(path: str | Path) -> Recommender:
    """The model of the artifact at ``path`` (see :func:`load_artifact`)."""
    return load_artifact(path).model


def load_artifact(path: str | Path) -> Artifact:
    """Read and check an artifact directory written by ``model.save`` / ``save_artifact``."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a recloop artifact: no such directory "
                            "(write one with `recloop train CONFIG --output DIR`)")
    if not (path / HEADER).is_file():
        raise ArtifactError(f"{path} is not a recloop artifact: {HEADER} is missing "
                            "(write one with `recloop train CONFIG --output DIR`)")
    header = _read_json(path, HEADER, dict)
    model = _build_model(path, header)
    users = _read_ids(path, USERS, "user", header)
    items = _read_ids(path, ITEMS, "item", header)
    state = _read_state(path, header)
    history = _read_arrays(path, HISTORY)
    try:
        model.history_ = Interactions.from_arrays(history, users, items)
    except (RecloopError, KeyError, ValueError, IndexError, TypeError) as error:
        raise ArtifactError(f"{path / HISTORY}: the fitted-on interactions do not fit {USERS} ({len(users)} ids) "
                            f"and {ITEMS} ({len(items)} ids): {_reason(error)}") from None
    model.users_, model.items_ = users, items
    for name in FEATURES:
        file = f"{name}.json"
        features = None
        if (path / file).is_file():
            try:
                features = Features.from_dict(_read_json(path, file, dict))
            except ArtifactError:
                raise
            except (RecloopError, KeyError, ValueError, IndexError, TypeError) as error:
                raise ArtifactError(f"{path / file}: not a valid features table: {_reason(error)}") from None
        setattr(model, f"{name}_", features)
    model.user_graph_ = _read_user_graph(path, users)
    try:
        model._set_state(state)
    except (RecloopError, KeyError, ValueError, IndexError, TypeError, RuntimeError) as error:
        raise ArtifactError(f"{path / STATE}: the arrays do not make a {header['model']} model with "
                            f"{len(users)} users and {len(items)} items: {_reason(error)}") from None
    _check_scores(path, model)
    metrics = _read_json(path, METRICS, dict) if (path / METRICS).is_file() else {}
    extra = _read_json(path, EXTRA, dict) if (path / EXTRA).is_file() else {}
    return Artifact(path, model, metrics, extra)


# --- the checks -------------------------------------------------------------------------------------
def _read_json(path: Path, name: str, kind: type) -> Any:
    file = path / name
    if not file.is_file():
        raise ArtifactError(f"{path} is not a complete artifact: {name} is missing")
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ArtifactError(f"{file}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{file}: invalid JSON: {error}") from None
    if not isinstance(data, kind):
        raise ArtifactError(f"{file}: expected a JSON {'object' if kind is dict else 'list'}, "
                            f"got {type(data).__name__}")
    return data


def _build_model(path: Path, header: dict) -> Recommender:
    file = path / HEADER
    if header.get("format") != FORMAT or not isinstance(header.get("format_version"), int) \
            or not 1 <= header["format_version"] <= FORMAT_VERSION:
        raise ArtifactError(f"{file}: unsupported artifact format {header.get('format')!r} version "
                            f"{header.get('format_version')!r} (this recloop reads {FORMAT!r} 1..{FORMAT_VERSION})")
    name, config = header.get("model"), header.get("config")
    if name not in MODELS:
        raise ArtifactError(f"{file}: unknown model {name!r}; models are {sorted(MODELS)}")
    if not isinstance(config, dict):
        raise ArtifactError(f"{file}: 'config' must be an object of {name} hyperparameters")
    if header["format_version"] == 1 and isinstance(config.get("train"), dict):
        # Written before the refit became one experiment-level switch: a training-time
        # choice that says nothing about the fitted model, so it is dropped on loading.
        config = {**config, "train": {k: v for k, v in config["train"].items() if k != "refit"}}
    try:
        return MODELS[name](**config)
    except RecloopError as error:
        raise ArtifactError(f"{file}: invalid {name} config: {error}") from None


def _read_user_graph(path: Path, users: IdMap) -> UserGraph | None:
    if not (path / USER_GRAPH).is_file():
        return None
    try:
        return UserGraph.from_arrays(_read_arrays(path, USER_GRAPH), users)
    except ArtifactError:
        raise
    except (RecloopError, KeyError, ValueError, IndexError, TypeError) as error:
        raise ArtifactError(f"{path / USER_GRAPH}: not a user graph over {USERS} ({len(users)} ids): "
                            f"{_reason(error)}") from None


def _read_ids(path: Path, name: str, kind: str, header: dict) -> IdMap:
    ids = _read_json(path, name, list)
    expected = header.get(f"n_{kind}s")
    if expected is not None and len(ids) != expected:
        raise ArtifactError(f"{path / name} holds {len(ids)} {kind} ids, but the model was saved with {expected}")
    if not all(isinstance(x, str) for x in ids):
        raise ArtifactError(f"{path / name}: {kind} ids must be strings")
    try:
        return IdMap(ids, kind)
    except ValueError as error:
        raise ArtifactError(f"{path / name}: {error}") from None


def _read_arrays(path: Path, name: str) -> dict[str, np.ndarray]:
    file = path / name
    if not file.is_file():
        raise ArtifactError(f"{path} is not a complete artifact: {name} is missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise ArtifactError(f"{file}: not a readable safetensors file (truncated or corrupt?): "
                            f"{_reason(error)}") from None


def _read_state(path: Path, header: dict) -> dict[str, np.ndarray]:
    state = _read_arrays(path, STATE)
    file = path / STATE
    schema = header.get("state")
    if isinstance(schema, dict):  # format 2: the dtype and shape of every array, as saved
        if set(schema) != set(state):
            missing, unexpected = sorted(set(schema) - set(state)), sorted(set(state) - set(schema))
            raise ArtifactError(f"{file}: arrays differ from {HEADER}: missing {missing}, unexpected {unexpected}")
        for key, array in state.items():
            saved = schema[key]
            if not isinstance(saved, dict):
                raise ArtifactError(f"{path / HEADER}: state entry {key!r} must be an object with dtype and shape")
            if array.dtype.name != saved.get("dtype"):
                raise ArtifactError(f"{file}: {key!r} is {array.dtype.name}, but the model saved it as "
                                    f"{saved.get('dtype')}")
            if list(array.shape) != list(saved.get("shape", [])):
                raise ArtifactError(f"{file}: {key!r} has shape {list(array.shape)}, but the model saved "
                                    f"{saved.get('shape')}")
    for key, array in state.items():
        if np.issubdtype(array.dtype, np.floating) and array.size:
            bad = _count_non_finite(array)
            if bad:
                raise ArtifactError(f"{file}: {key!r} has {bad} NaN or infinite values of {array.size}; "
                                    "the model diverged or the file is corrupt")
    return state


def _count_non_finite(array: np.ndarray, block: int = 1 << 22) -> int:
    """NaN and infinite values, counted in blocks (no full-size mask for a 12k x 12k EASE)."""
    flat = array.reshape(-1)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + block]))) for i in range(0, flat.size, block))


def _check_scores(path: Path, model: Recommender) -> None:
    """One scoring call on the first and the last user: the arrays must fit the id lists."""
    if model.n_users == 0:
        return
    users = np.unique([0, model.n_users - 1])
    try:
        scores = model.score(users)
    except (RecloopError, KeyError, ValueError, IndexError, TypeError, RuntimeError) as error:
        raise ArtifactError(f"{path}: the {model.name} state does not fit {USERS} ({model.n_users} ids) and "
                            f"{ITEMS} ({model.n_items} ids): scoring fails with {_reason(error)}") from None
    if scores.shape != (len(users), model.n_items):
        raise ArtifactError(f"{path}: the {model.name} state scores {scores.shape[-1]} items, but {ITEMS} holds "
                            f"{model.n_items} ids")
    if np.isnan(scores).any():
        raise ArtifactError(f"{path}: the {model.name} model scores NaN; the artifact is corrupt")


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
