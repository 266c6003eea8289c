"""Cold-start protocols: items never seen in training, users with a handful of interactions.

**Cold items.** A seeded ``fraction`` of the items (among those with interactions) is
removed from training together with every interaction on it. Each user with a held-out
interaction on a cold item is then ranked against *all cold items and only them*, given
their training history; the targets are the cold items they interacted with. Only
models that can score an item from its content (text, genres) do better than chance.
The cold items stay in the vocabulary with their features, so a model scores them as it
scores any catalog item (``model.score``); a model that can also place an item known only
by its text (``embed_items`` + ``text_to_item_vectors`` + ``user_vectors``) gets a second
row per projection, scored as ``user_vectors @ text_to_item_vectors(text).T``.

**New users** ("given N", after Breese, Heckerman and Kadie, "Empirical Analysis of
Predictive Algorithms for Collaborative Filtering", UAI 1998). A seeded ``fraction`` of
the users is removed from training with their whole history. Each is then ranked over
all items given only their first ``N`` interactions in time (``N`` in ``given``); the
targets are the rest of their history, the ``N`` given items are masked. The model scores
them as anonymous users (``UNKNOWN_USER``): whatever it knows comes from those ``N`` items.

Both protocols are described by a TOML file (see ``configs/ml-latest-small-cold-start.toml``)
and run by :func:`run_cold_start`; several split seeds give a median.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recloop.config import DataConfig, ModelSpec, model_spec
from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions, UserHistories
from recloop.data.preprocess import PreprocessConfig
from recloop.data.splits import ratio_split
from recloop.errors import ConfigError, DataError
from recloop.evaluate.evaluator import EvaluationConfig, EvaluationResult, Evaluator
from recloop.experiment import build_model, fit, load_data
from recloop.models import Recommender, get_model_class
from recloop.models.base import UNKNOWN_USER
from recloop.typed_config import apply_override, from_dict, read_toml
from recloop.utils import make_rng


# --- splits ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ColdItemSplit:
    """``train`` holds no interaction on ``cold_items``; ``test`` holds all of them."""

    train: Interactions
    test: Interactions
    cold_items: np.ndarray


def cold_item_split(log: Interactions, fraction: float = 0.2, seed: int = 42) -> ColdItemSplit:
    """Remove ``round(fraction * n)`` random items (of the ``n`` with interactions), with
    every interaction on them, from training. Same seed, same split."""
    if not 0 < fraction < 1:
        raise ConfigError(f"cold item fraction must be in (0, 1), got {fraction}")
    present = np.flatnonzero(log.item_counts() > 0)
    n_cold = round(fraction * len(present))
    if n_cold == 0:
        raise DataError(f"a cold-item fraction of {fraction} of {len(present)} items selects no item")
    cold = np.sort(make_rng(seed).choice(present, size=n_cold, replace=False))
    is_cold = np.zeros(log.n_items, dtype=bool)
    is_cold[cold] = True
    held_out = is_cold[log.item_idx]
    return ColdItemSplit(log.select(~held_out), log.select(held_out), cold)


@dataclass(frozen=True, eq=False)
class NewUserSplit:
    """``train`` holds no interaction of ``new_users``; ``test`` holds all of theirs."""

    train: Interactions
    test: Interactions
    new_users: np.ndarray


def new_user_split(log: Interactions, fraction: float = 0.2, seed: int = 42) -> NewUserSplit:
    """Hold out ``round(fraction * n)`` random users (of the ``n`` with interactions) entirely."""
    if not 0 < fraction < 1:
        raise ConfigError(f"new user fraction must be in (0, 1), got {fraction}")
    active = log.active_users()
    n_new = round(fraction * len(active))
    if n_new == 0:
        raise DataError(f"a new-user fraction of {fraction} of {len(active)} users selects no user")
    new = np.sort(make_rng(seed).choice(active, size=n_new, replace=False))
    is_new = np.zeros(log.n_users, dtype=bool)
    is_new[new] = True
    held_out = is_new[log.user_idx]
    return NewUserSplit(log.select(~held_out), log.select(held_out), new)


def given_n(log: Interactions, n: int) -> tuple[Interactions, Interactions]:
    """Per user with more than ``n`` interactions: the first ``n`` in time (the history
    given to the model) and the rest (the targets). Users with ``n`` or fewer are dropped."""
    if n < 1:
        raise ConfigError(f"given N must be at least 1, got {n}")
    indptr = log.user_indptr
    lengths = np.diff(indptr)
    position = np.arange(len(log)) - np.repeat(indptr[:-1], lengths)  # 0 = the user's earliest
    eligible = np.repeat(lengths > n, lengths)
    return log.select(eligible & (position < n)), log.select(eligible & (position >= n))


# --- evaluation -----------------------------------------------------------------------------------
class _ProtocolView:
    """What the evaluator sees of a model: scores restricted to ``candidates`` and/or
    every user scored as anonymous (from the given history only)."""

    def __init__(self, model: Recommender, candidates: np.ndarray | None = None, anonymous: bool = False):
        self.model, self.name, self.anonymous = model, model.name, anonymous
        self.blocked = None
        if candidates is not None:
            self.blocked = torch.ones(model.n_items, dtype=torch.bool)
            self.blocked[torch.as_tensor(np.asarray(candidates, dtype=np.int64))] = False

    def score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        if self.anonymous:
            user_idx = np.full(len(user_idx), UNKNOWN_USER, dtype=np.int64)
        scores = self.model.score(user_idx, history)
        if self.blocked is not None:
            scores[:, self.blocked.numpy()] = -np.inf
        return scores


class _TextProjectionView:
    """Cold items scored as ``user_vectors @ text_to_item_vectors(their text).T``: what a
    service does with an item it only knows by its text."""

    def __init__(self, model: Recommender, cold_items: np.ndarray, cold_vectors: np.ndarray):
        self.model, self.name = model, model.name
        self.cold_items, self.cold_vectors = np.asarray(cold_items), np.asarray(cold_vectors, dtype=np.float32)

    def score(self, user_idx: np.ndarray, history: UserHistories) -> np.ndarray:
        scores = np.full((len(user_idx), self.model.n_items), -np.inf, dtype=np.float32)
        scores[:, self.cold_items] = self.model.user_vectors(user_idx, history) @ self.cold_vectors.T
        return scores


def evaluate_cold_items(model: Recommender, split: ColdItemSplit, config: EvaluationConfig) -> EvaluationResult:
    """Rank all cold items (only them) for every user with a held-out interaction on one."""
    view = _ProtocolView(model, candidates=split.cold_items)
    return Evaluator(config).evaluate(view, split.test, split.train)  # type: ignore[arg-type]


def projects_text(model: Recommender) -> bool:
    """Whether ``model`` can place items known only by text: it has ``embed_items``,
    ``text_to_item_vectors`` and ``user_vectors``."""
    return all(callable(getattr(model, name, None)) for name in ("embed_items", "text_to_item_vectors", "user_vectors"))


def evaluate_cold_items_by_text(model: Recommender, split: ColdItemSplit, features, config: EvaluationConfig,
                                projection: str | None = None) -> EvaluationResult:
    """As :func:`evaluate_cold_items`, but the cold items' vectors come from their text alone,
    through ``model.text_to_item_vectors(model.embed_items(...), projection)``."""
    text = model.embed_items(features.aligned_to(model.items_).take(split.cold_items))
    vectors = model.text_to_item_vectors(text, projection) if projection else model.text_to_item_vectors(text)
    view = _TextProjectionView(model, split.cold_items, vectors)
    return Evaluator(config).evaluate(view, split.test, split.train)  # type: ignore[arg-type]


def evaluate_new_users(model: Recommender, split: NewUserSplit, n: int, config: EvaluationConfig) -> EvaluationResult:
    """Rank all items for each new user given their first ``n`` interactions."""
    history, target = given_n(split.test, n)
    return Evaluator(config).evaluate(_ProtocolView(model, anonymous=True), target, history)  # type: ignore[arg-type]


# --- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColdItemProtocol:
    """``fraction`` of items made cold; ``models`` compared (``[[cold_items.models]]``).
    ``valid_ratio``: for models that stop early, this share of each user's training
    interactions (drawn with the split seed) becomes their validation set."""

    fraction: float = 0.2
    valid_ratio: float = 0.0
    models: tuple[ModelSpec, ...] = ()


@dataclass(frozen=True)
class NewUserProtocol:
    """``fraction`` of users held out; each ranked given their first ``given`` interactions.
    ``valid_ratio`` as in :class:`ColdItemProtocol`."""

    fraction: float = 0.2
    given: tuple[int, ...] = (1, 3, 5)
    valid_ratio: float = 0.0
    models: tuple[ModelSpec, ...] = ()


@dataclass(frozen=True)
class ColdStartConfig:
    """Both protocols on one dataset, repeated over split ``seeds`` (a model whose config
    has a ``seed`` gets each split's seed too)."""

    name: str = "cold-start"
    seeds: tuple[int, ...] = (42,)
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    evaluation: EvaluationConfig = EvaluationConfig(k=(10, 20), metrics=("ndcg", "recall", "hr"), beyond=())
    cold_items: ColdItemProtocol = ColdItemProtocol()
    new_users: NewUserProtocol = NewUserProtocol()


def cold_start_config_from_dict(raw: Mapping[str, Any], source: str = "config") -> ColdStartConfig:
    raw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    specs = {}
    for section in ("cold_items", "new_users"):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        models = table.pop("models", [])
        specs[section] = tuple(model_spec(m, f"{section}.models[{i}]") for i, m in enumerate(models))
    evaluation = {"k": [10, 20], "metrics": ["ndcg", "recall", "hr"], "beyond": [], **raw.pop("evaluation", {})}
    config = from_dict(ColdStartConfig, {**raw, "evaluation": evaluation}, "")
    return dataclasses.replace(
        config, cold_items=dataclasses.replace(config.cold_items, models=specs["cold_items"]),
        new_users=dataclasses.replace(config.new_users, models=specs["new_users"]))


def load_cold_start_config(path: str | Path, overrides: list[str] | None = None) -> ColdStartConfig:
    """Read a cold-start TOML file, applying ``key.path=value`` overrides."""
    raw = read_toml(Path(path))
    for override in overrides or []:
        apply_override(raw, override)
    return cold_start_config_from_dict(raw, str(path))


# --- running --------------------------------------------------------------------------------------
@dataclass
class ColdStartRecord:
    """One model on one protocol (and ``given`` for new users) with one split seed."""

    protocol: str
    label: str
    seed: int
    metrics: dict[str, float]
    n_users: int
    fit_seconds: float
    given: int | None = None
    result: EvaluationResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "model": self.label, "seed": self.seed, "given": self.given,
                "metrics": self.metrics, "n_users": self.n_users, "fit_seconds": self.fit_seconds}


def seeded(spec: ModelSpec, seed: int) -> dict:
    """Overrides that set the model's own seed (or its trainer's) to the split seed."""
    config_class = get_model_class(spec.name).config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    overrides: dict[str, Any] = {}
    if "seed" in fields:
        overrides["seed"] = seed
    if "train" in fields:
        train = spec.params.get("train", {})
        overrides["train"] = ({**train, "seed": seed} if isinstance(train, Mapping)
                              else dataclasses.replace(train, seed=seed))
    return overrides


def _fit(model: Recommender, dataset: Dataset, train: Interactions, valid_ratio: float, seed: int) -> float:
    """The experiment's :func:`~recloop.experiment.fit` on ``train``; a model that stops
    early first gives up ``valid_ratio`` of each user's interactions as its validation
    set (warm items only, full ranking)."""
    valid = None
    if model.uses_validation and valid_ratio > 0:
        parts = ratio_split(train, valid_ratio, seed=seed)
        train, valid = parts.train, parts.test
    return fit(model, dataset, train, valid)


def run_cold_start(config: ColdStartConfig, dataset: Dataset | None = None, data_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, download: bool = True,
                   log=None) -> list[ColdStartRecord]:
    """Run both protocols of ``config`` on every seed; ``dataset`` skips loading."""
    if dataset is None:
        dataset = load_data(config.data, config.preprocess, data_dir, cache_dir, download)
    say = log or (lambda message: None)
    records: list[ColdStartRecord] = []
    for seed in config.seeds:
        if config.cold_items.models:
            split = cold_item_split(dataset.interactions, config.cold_items.fraction, seed)
            say(f"seed {seed}: {len(split.cold_items)} cold items, {len(split.test)} held-out interactions of "
                f"{len(split.test.active_users())} users")
            for spec in config.cold_items.models:
                model = build_model(spec, seeded(spec, seed))
                seconds = _fit(model, dataset, split.train, config.cold_items.valid_ratio, seed)
                result = evaluate_cold_items(model, split, config.evaluation)
                records.append(ColdStartRecord("cold-items", spec.display_name, seed, result.summary(),
                                               len(result.users), seconds, result=result))
                say(f"  cold items  {spec.display_name:<28} ndcg@10 {result.summary().get('ndcg@10', 0):.4f} "
                    f"({seconds:.1f}s fit)")
                if projects_text(model) and dataset.item_features is not None:
                    for projection in getattr(model, "text_projections", (None,)):
                        result = evaluate_cold_items_by_text(model, split, dataset.item_features, config.evaluation,
                                                             projection)
                        label = f"{spec.display_name} [text -> {projection or 'projection'}]"
                        records.append(ColdStartRecord("cold-items", label, seed, result.summary(),
                                                       len(result.users), seconds, result=result))
                        say(f"  cold items  {label:<28} ndcg@10 {result.summary().get('ndcg@10', 0):.4f}")
        if config.new_users.models:
            split = new_user_split(dataset.interactions, config.new_users.fraction, seed)
            say(f"seed {seed}: {len(split.new_users)} new users, {len(split.test)} held-out interactions")
            for spec in config.new_users.models:
                model = build_model(spec, seeded(spec, seed))
                seconds = _fit(model, dataset, split.train, config.new_users.valid_ratio, seed)
                for n in config.new_users.given:
                    result = evaluate_new_users(model, split, n, config.evaluation)
                    records.append(ColdStartRecord("new-users", spec.display_name, seed, result.summary(),
                                                   len(result.users), seconds, given=n, result=result))
                    say(f"  new users given {n}  {spec.display_name:<22} "
                        f"ndcg@10 {result.summary().get('ndcg@10', 0):.4f}")
    return records


def median_table(records: list[ColdStartRecord], metrics: tuple[str, ...], protocol: str,
                 given: int | None = None) -> list[dict]:
    """Rows ``{"model", metric: median over seeds, metric + "_seeds": [...]}`` in record order."""
    rows: dict[str, dict] = {}
    for record in records:
        if record.protocol != protocol or record.given != given:
            continue
        row = rows.setdefault(record.label, {"model": record.label, "fit_seconds": [], "n_users": record.n_users})
        row["fit_seconds"].append(record.fit_seconds)
        for metric in metrics:
            row.setdefault(f"{metric}_seeds", []).append(record.metrics[metric])
    for row in rows.values():
        for metric in metrics:
            row[metric] = statistics.median(row[f"{metric}_seeds"])
        row["fit_seconds"] = statistics.median(row["fit_seconds"])
    return list(rows.values())
