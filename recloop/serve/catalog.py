"""The catalog the service recommends from: the model's items, then items added while
serving ("cold" items, which the model never saw).

One index space covers both: ``0..n_model-1`` are the model's ``item_idx``,
``n_model..`` the cold items in the order they were added. The catalog also answers
what the web layer needs of items: titles, categorical labels (genre filters, shared
genres in explanations), and a title search.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.errors import UnknownIdError, closest


class FilterError(ValueError):
    """A filter names a feature or a value the catalog does not have."""


class Catalog:
    """Model items plus cold items: an immutable snapshot.

    Adding an item makes a new catalog (:meth:`with_item`, copying only the short cold
    lists; the model's part is shared), which the live state swaps in with one reference
    assignment. A request reads that reference once and answers from that snapshot
    throughout: its filter mask, scores and ids all have the same length, whatever is
    added meanwhile.
    """

    def __init__(self, items: IdMap, features: Features | None = None):
        self.model_items = items
        self.n_model = len(items)
        if features is not None and features.ids != items:
            features = features.aligned_to(items)
        self._features = features
        self._cold_ids: tuple[str, ...] = ()
        self._cold_index: dict[str, int] = {}
        self._cold_titles: tuple[str, ...] = ()
        self._cold_labels: dict[str, tuple[tuple[str, ...], ...]] = {}
        titles = None
        if features is not None and "title" in features.text:
            titles = [str(t) for t in features.text["title"]]
        self._titles = titles
        self._categorical = {} if features is None else dict(features.categorical)
        self._title_lower = None if titles is None else [t.lower() for t in titles]

    # --- ids --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_model + len(self._cold_ids)

    @property
    def n_cold(self) -> int:
        return len(self._cold_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.model_items or str(item_id) in self._cold_index

    def index(self, item_id: str) -> int:
        """Catalog index of an external item id; :class:`UnknownIdError` names it."""
        item_id = str(item_id)
        if item_id in self.model_items:
            return self.model_items.index(item_id)
        try:
            return self.n_model + self._cold_index[item_id]
        except KeyError:
            raise UnknownIdError(f"unknown item id {item_id!r}: it is neither among the model's {self.n_model} "
                                 f"items nor among the {self.n_cold} items added since (POST /items adds one)") from None

    def indices(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.index(x) for x in item_ids), dtype=np.int64, count=len(item_ids))

    def id(self, index: int) -> str:
        if index < self.n_model:
            return self.model_items.id(index)
        return self._cold_ids[index - self.n_model]

    def ids(self, indices: Sequence[int]) -> list[str]:
        model_ids = self.model_items.ids
        return [str(model_ids[i]) if i < self.n_model else self._cold_ids[i - self.n_model] for i in indices]

    def is_cold(self, index: int) -> bool:
        return index >= self.n_model

    # --- text and labels --------------------------------------------------------------------
    @property
    def has_titles(self) -> bool:
        return self._titles is not None or bool(self._cold_titles and any(self._cold_titles))

    def title(self, index: int) -> str | None:
        if index >= self.n_model:
            return self._cold_titles[index - self.n_model] or None
        return None if self._titles is None else self._titles[index]

    @property
    def feature_names(self) -> list[str]:
        return sorted(self._categorical)

    def values(self, name: str) -> list[str]:
        """The vocabulary of categorical feature ``name``."""
        return list(self._categorical[name].values)

    def labels(self, name: str, index: int) -> list[str]:
        """The values of categorical feature ``name`` for one item (``[]`` if none)."""
        if name not in self._categorical:
            return []
        if index < self.n_model:
            return self._categorical[name].labels(index)
        return list(self._cold_labels[name][index - self.n_model])

    def model_texts(self) -> list[str] | None:
        """One line of text per model item for the text encoder, or ``None`` without text."""
        if self._features is None or not (self._features.text or self._features.categorical):
            return None
        return self._features.texts()

    def describe_new(self, title: str | None, text: str, labels: Mapping[str, Sequence[str]]) -> str:
        """The encoder's line for a new item, shaped like the catalog's own lines
        (:meth:`Features.describe_row`: ``"Title. genres: A, B"``) with ``text`` after,
        so that new and catalog items are compared like with like. A text field named
        after a categorical feature (``genres`` for ``genre``) takes its labels."""
        parts = []
        fields = list(self._features.text) if self._features is not None else []
        for name in fields or (["title"] + list(self._categorical)):
            if name == "title":
                value = title or ""
            else:
                values = labels.get(name) or labels.get(name.rstrip("s")) or []
                value = ", ".join(values)
            if value.strip():
                parts.append(value if name == "title" else f"{name}: {value}")
        if text.strip() and text.strip() != (title or "").strip():
            parts.append(text.strip())
        return ". ".join(parts)

    def with_item(self, item_id: str, title: str | None, labels: Mapping[str, Sequence[str]]) -> Catalog:
        """A new catalog with a cold item appended (this one is left as it is); unknown
        feature values are an error. The item's catalog index is ``len(self)``."""
        self.check_labels(labels)
        if item_id in self:
            raise ValueError(f"item id {item_id!r} is already in the catalog")
        new = copy.copy(self)
        new._cold_labels = {name: self._cold_labels.get(name, ((),) * self.n_cold) + (tuple(labels.get(name, [])),)
                            for name in self._categorical}
        new._cold_titles = self._cold_titles + (title or "",)
        new._cold_index = {**self._cold_index, item_id: self.n_cold}
        new._cold_ids = self._cold_ids + (item_id,)
        return new

    def check_labels(self, labels: Mapping[str, Sequence[str]]) -> None:
        for name, values in labels.items():
            if name not in self._categorical:
                raise FilterError(f"unknown item feature {name!r}{closest(name, self._categorical)}; "
                                  f"features are {self.feature_names}")
            known = self._categorical[name].values
            for value in values:
                if value not in known:
                    raise FilterError(f"unknown {name} {value!r}{closest(value, known)}; "
                                      f"values are {list(known)}")

    # --- filters and search -----------------------------------------------------------------
    def filter_mask(self, filters: Mapping[str, Sequence[str]]) -> np.ndarray:
        """Items with, for every named feature, at least one of the listed values."""
        self.check_labels(filters)
        n_cold = self.n_cold
        mask = np.ones(self.n_model + n_cold, dtype=bool)
        for name, values in filters.items():
            feature = self._categorical[name]
            columns = [feature.values.index(v) for v in values]
            hit = np.zeros(self.n_model + n_cold, dtype=bool)
            matrix: sp.csr_matrix = feature.matrix
            hit[:self.n_model] = np.asarray(matrix[:, columns].sum(axis=1)).ravel() > 0
            wanted = set(values)
            cold_labels = self._cold_labels.get(name, [])
            for j in range(n_cold):
                hit[self.n_model + j] = bool(wanted.intersection(cold_labels[j]))
            mask &= hit
        return mask

    def search(self, query: str, limit: int = 20) -> list[int]:
        """Items whose title (or id, without titles) contains ``query``, case-insensitive;
        titles that start with it first."""
        query = query.strip().lower()
        if not query:
            return []
        starts, contains = [], []
        names = self._title_lower if self._title_lower is not None else [str(x).lower() for x in self.model_items.ids]
        cold = [(t or i).lower() for t, i in zip(self._cold_titles, self._cold_ids)]
        for index, name in enumerate(list(names) + cold):
            if name.startswith(query):
                starts.append(index)
            elif query in name:
                contains.append(index)
            if len(starts) >= limit:
                break
        return (starts + contains)[:limit]
