"""A synthetic interaction log with planted structure, for tests and scale benchmarks.

The structure a good recommender should recover:

* **Taste clusters**: every item belongs to one of ``n_clusters`` topics; every user
  mixes one or two of them (Dirichlet with small concentration).
* **Power-law popularity**: within its topic, item ``r`` (by rank) is drawn with weight
  ``(r + 1) ** -popularity_exponent``.
* **Sequential habit**: with probability ``sequential_strength`` the next item is the
  "successor" of the previous one (a fixed random item of the same topic), so order
  carries information that only sequence models can use.
* **Item text**: a title built from the topic's words, so text embeddings cluster by
  topic, and the topic as a ``genre`` feature.

Everything is vectorised: ten million interactions take about fifteen seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.data.dataset import Dataset
from recloop.data.features import CategoricalFeature, Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.utils import make_rng

TOPIC_WORDS = (
    ("space", "galaxy", "rocket", "alien", "planet", "orbit"),
    ("love", "romance", "wedding", "heart", "kiss", "date"),
    ("murder", "detective", "crime", "police", "heist", "gang"),
    ("dragon", "magic", "wizard", "quest", "kingdom", "sword"),
    ("laugh", "comedy", "prank", "party", "silly", "fun"),
    ("war", "soldier", "battle", "army", "general", "front"),
    ("ghost", "horror", "haunted", "blood", "scream", "night"),
    ("cartoon", "family", "animated", "kids", "puppy", "toy"),
    ("music", "band", "concert", "song", "dance", "stage"),
    ("ocean", "island", "pirate", "ship", "storm", "treasure"),
    ("robot", "future", "cyber", "machine", "android", "code"),
    ("western", "cowboy", "desert", "sheriff", "horse", "outlaw"),
)
FILLER_WORDS = ("the", "story", "of", "a", "return", "last", "great", "secret", "tale", "day")


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 500
    n_clusters: int = 8
    mean_interactions: float = 20.0
    min_interactions: int = 5
    popularity_exponent: float = 0.8
    user_concentration: float = 0.1
    sequential_strength: float = 0.5
    seed: int = 0


def generate(config: SyntheticConfig = SyntheticConfig(), name: str = "synthetic") -> Dataset:
    """A :class:`Dataset` with the structure described in the module docstring."""
    rng = make_rng(config.seed)
    n_users, n_items, n_clusters = config.n_users, config.n_items, config.n_clusters
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    item_cluster[:n_clusters] = np.arange(min(n_clusters, n_items))  # every topic has an item

    # Per-topic sampling tables: items of the topic with power-law weights by a random rank.
    cluster_items = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    cluster_cdf = []
    for members in cluster_items:
        rng.shuffle(members)
        weights = (np.arange(len(members)) + 1.0) ** -config.popularity_exponent
        cluster_cdf.append(np.cumsum(weights) / weights.sum())
    successor = np.empty(n_items, dtype=np.int64)
    for members in cluster_items:
        successor[members] = members[rng.permutation(len(members))]

    taste = rng.dirichlet(np.full(n_clusters, config.user_concentration), size=n_users)
    lengths = np.maximum(config.min_interactions,
                         rng.geometric(1.0 / max(1.0, config.mean_interactions - config.min_interactions + 1),
                                       size=n_users) + config.min_interactions - 1)
    lengths = np.minimum(lengths, n_items)

    # One flat slot per interaction: slot s belongs to user_idx[s] at position[s].
    user_idx = np.repeat(np.arange(n_users), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(len(user_idx)) - np.repeat(starts, lengths)
    # Draw each slot's topic from its user's taste: shifting user u's CDF by u makes all
    # CDFs one sorted array, so one searchsorted serves every user.
    shifted_cdf = (np.cumsum(taste, axis=1) + np.arange(n_users)[:, None]).ravel()
    draw = user_idx + rng.random(len(user_idx)) * (1 - 1e-9)
    topic = np.minimum(np.searchsorted(shifted_cdf, draw, side="right") - user_idx * n_clusters, n_clusters - 1)
    item_idx = np.empty(len(user_idx), dtype=np.int64)
    u = rng.random(len(user_idx))
    for c in range(n_clusters):
        where = topic == c
        members = cluster_items[c]
        item_idx[where] = members[np.minimum(np.searchsorted(cluster_cdf[c], u[where]), len(members) - 1)]
    # The sequential habit: walk positions in order, so a successor follows the final
    # (possibly itself followed) previous item.
    follow = (rng.random(len(user_idx)) < config.sequential_strength) & (position > 0)
    by_position = np.argsort(position, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(position))])
    for t in range(1, len(bounds) - 1):
        slots = by_position[bounds[t]:bounds[t + 1]]
        slots = slots[follow[slots]]
        item_idx[slots] = successor[item_idx[slots - 1]]

    # First occurrence of each (user, item) only, as a real log of distinct consumptions.
    _, first = np.unique(user_idx * n_items + item_idx, return_index=True)
    first.sort()
    rating = np.clip(np.round(3.5 + rng.normal(0, 1, size=len(first))), 1, 5).astype(np.float32)
    users = IdMap([f"u{i}" for i in range(n_users)], "user")
    items = IdMap([f"i{i}" for i in range(n_items)], "item")
    # Rows are already in canonical order (user, then position = time).
    log = Interactions(user_idx[first], item_idx[first], users, items, rating,
                       1_000_000 + position[first] * 60 + user_idx[first] % 60, _sorted=True)

    topic_names = [TOPIC_WORDS[c % len(TOPIC_WORDS)][0] + ("" if c < len(TOPIC_WORDS) else str(c))
                   for c in range(n_clusters)]
    titles = np.asarray([_title(rng, c, i) for i, c in enumerate(item_cluster)], dtype=object)
    features = Features(items, {"genre": CategoricalFeature.from_lists([[topic_names[c]] for c in item_cluster],
                                                                       topic_names)},
                        {"title": titles, "genres": np.asarray([topic_names[c] for c in item_cluster], dtype=object)})
    return Dataset(name, log, features).compact()


def _title(rng: np.random.Generator, cluster: int, item: int) -> str:
    words = TOPIC_WORDS[cluster % len(TOPIC_WORDS)]
    picked = rng.choice(len(words), size=2, replace=False)
    return f"{FILLER_WORDS[item % len(FILLER_WORDS)].title()} {words[picked[0]]} {words[picked[1]]} {item}"
