"""A named interaction log with its side features: what every loader returns."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from recloop.data.features import Features
from recloop.data.interactions import Interactions
from recloop.data.social import UserGraph
from recloop.utils import gini


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions plus optional user and item features over the same vocabularies,
    and optionally a user-user relation (``user_graph``, e.g. Last.fm friendships)."""

    name: str
    interactions: Interactions
    item_features: Features | None = None
    user_features: Features | None = None
    user_graph: UserGraph | None = None

    def __post_init__(self):
        # Features are kept row-aligned with the interaction vocabularies, so that
        # item_features row i always describes item_idx i.
        for attribute, ids in (("item_features", self.interactions.items), ("user_features", self.interactions.users)):
            features = getattr(self, attribute)
            if features is None or features.ids == ids:
                continue
            missing = features.ids.indices(ids, missing="negative") < 0
            if missing.any():
                example = ids.id(int(np.argmax(missing)))
                warnings.warn(f"{self.name}: {int(missing.sum())} {ids.kind}(s) in the interactions have no "
                              f"{attribute.replace('_', ' ')} (e.g. {example!r}); they are kept with empty features",
                              stacklevel=3)
            object.__setattr__(self, attribute, features.aligned_to(ids))
        if self.user_graph is not None and self.user_graph.users != self.interactions.users:
            object.__setattr__(self, "user_graph", self.user_graph.aligned_to(self.interactions.users))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, interactions={len(self.interactions)}, users={self.interactions.n_users}, "
                f"items={self.interactions.n_items}, item_features={self.item_features!r})")

    def with_interactions(self, interactions: Interactions) -> Dataset:
        """The same dataset over another log on the same vocabularies."""
        return replace(self, interactions=interactions)

    def compact(self, sum_across: Callable[[np.ndarray], np.ndarray] | None = None) -> Dataset:
        """Drop users and items without interactions and renumber the rest densely.
        ``sum_across`` (for a log split by user over processes, :mod:`recloop.data.shard`)
        sums the counts over the processes, so that all of them keep the same ids."""
        log = self.interactions
        counts = np.concatenate([log.user_counts(), np.bincount(log.item_idx, minlength=log.n_items)])
        if sum_across is not None:
            counts = sum_across(counts)
        user_keep = np.flatnonzero(counts[:log.n_users] > 0)
        item_keep = np.flatnonzero(counts[log.n_users:] > 0)
        if len(user_keep) == log.n_users and len(item_keep) == log.n_items:
            return self
        return Dataset(self.name, log.remap(user_keep, item_keep),
                       None if self.item_features is None else self.item_features.take(item_keep),
                       None if self.user_features is None else self.user_features.take(user_keep),
                       self.user_graph)  # re-aligned to the kept users by __post_init__

    def describe(self) -> dict:
        """Counts, sparsity and the shape of the popularity curve."""
        log = self.interactions
        popularity = np.sort(log.item_counts())[::-1]
        activity = log.user_counts()
        n_pairs = int(log.to_csr().nnz)
        top = max(1, len(popularity) // 100)
        total = max(1, popularity.sum())
        return {
            "name": self.name,
            "interactions": len(log),
            "users": log.n_users,
            "items": log.n_items,
            "density": n_pairs / max(1, log.n_users * log.n_items),
            "sparsity": 1.0 - n_pairs / max(1, log.n_users * log.n_items),
            "interactions_per_user": _summary(activity),
            "users_per_item": _summary(popularity),
            "top_1pct_item_share": float(popularity[:top].sum() / total),
            "top_20pct_item_share": float(popularity[: max(1, len(popularity) // 5)].sum() / total),
            "item_gini": gini(popularity),
            "has_rating": log.has_rating,
            "has_timestamp": log.has_timestamp,
            "item_features": None if self.item_features is None else {
                "categorical": list(self.item_features.categorical), "text": list(self.item_features.text)},
            "user_features": None if self.user_features is None else {
                "categorical": list(self.user_features.categorical), "text": list(self.user_features.text)},
            **({} if self.user_graph is None else {"user_graph": self.user_graph.describe()}),
        }


def _summary(counts: np.ndarray) -> dict:
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}
