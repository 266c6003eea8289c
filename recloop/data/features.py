"""Side features of users and items, row-aligned with a vocabulary.

Two kinds matter to recloop's models: categorical ones (genres, occupation, age bucket),
kept as a multi-hot matrix so one row can hold several genres, and free text (title,
genres, tags) that the text encoder turns into embeddings for cold-start items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recloop.data.ids import IdMap
from recloop.errors import DataError


@dataclass(frozen=True, eq=False)
class CategoricalFeature:
    """A categorical feature: ``matrix[row, v] = 1`` when the row has value ``values[v]``."""

    values: tuple[str, ...]
    matrix: sp.csr_matrix

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[str]], values: Sequence[str] | None = None) -> CategoricalFeature:
        """From one list of values per row (empty for none)."""
        if values is None:
            values = sorted({v for row in rows for v in row})
        position = {v: j for j, v in enumerate(values)}
        unknown = {v for row in rows for v in row} - position.keys()
        if unknown:
            raise DataError(f"categorical values {sorted(unknown)[:5]} are not in the declared vocabulary")
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(row) for row in rows], out=indptr[1:])
        indices = np.fromiter((position[v] for row in rows for v in row), dtype=np.int64, count=int(indptr[-1]))
        matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), len(values)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return cls(tuple(values), matrix)

    def labels(self, row: int) -> list[str]:
        """The values of one row."""
        start, end = self.matrix.indptr[row], self.matrix.indptr[row + 1]
        return [self.values[j] for j in self.matrix.indices[start:end]]

    def take(self, rows: np.ndarray) -> CategoricalFeature:
        return CategoricalFeature(self.values, self.matrix[np.asarray(rows)].tocsr())


@dataclass(frozen=True, eq=False)
class Features:
    """Side features aligned with ``ids``: row ``r`` describes ``ids.id(r)``."""

    ids: IdMap
    categorical: Mapping[str, CategoricalFeature] = field(default_factory=dict)
    text: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        for name, feature in self.categorical.items():
            if feature.matrix.shape[0] != len(self.ids):
                raise DataError(f"categorical feature {name!r} has {feature.matrix.shape[0]} rows, "
                                f"expected {len(self.ids)}")
        for name, values in self.text.items():
            if len(values) != len(self.ids):
                raise DataError(f"text feature {name!r} has {len(values)} rows, expected {len(self.ids)}")

    def __repr__(self) -> str:
        return (f"Features(n={len(self.ids)}, categorical={list(self.categorical)}, "
                f"text={list(self.text)})")

    def take(self, rows: np.ndarray) -> Features:
        """The features of ``rows`` only, aligned with ``ids.take(rows)``."""
        rows = np.asarray(rows)
        return Features(self.ids.take(rows),
                        {k: v.take(rows) for k, v in self.categorical.items()},
                        {k: np.asarray(v, dtype=object)[rows] for k, v in self.text.items()})

    def aligned_to(self, ids: IdMap) -> Features:
        """These features re-ordered to ``ids``; ids without features get empty rows."""
        position = self.ids.indices(ids, missing="negative")
        if np.all(position >= 0):
            out = self.take(position)
            return Features(ids, out.categorical, out.text)
        present = position >= 0
        categorical = {}
        for name, feature in self.categorical.items():
            rows = sp.vstack([feature.matrix, sp.csr_matrix((1, len(feature.values)), dtype=np.float32)]).tocsr()
            categorical[name] = CategoricalFeature(feature.values, rows[np.where(present, position, -1)])
        text = {name: np.where(present, np.asarray(values, dtype=object)[position], "").astype(object)
                for name, values in self.text.items()}
        return Features(ids, categorical, text)

    def describe_row(self, row: int, fields: Sequence[str] | None = None) -> str:
        """One line of text describing a row, for the text encoder.

        By default the text fields (or the categorical ones when there is no text),
        each as ``"name: a, b"``, the title bare; e.g.
        ``"Toy Story (1995). genres: Animation, Children's, Comedy"``.
        """
        parts = []
        # Text fields already spell out the categories loaders derive them from.
        for name in fields or list(self.text) or list(self.categorical):
            if name in self.text:
                value = str(self.text[name][row]).strip()
                if value:
                    parts.append(value if name == "title" else f"{name}: {value}")
            elif name in self.categorical:
                labels = self.categorical[name].labels(row)
                if labels:
                    parts.append(f"{name}: {', '.join(labels)}")
            else:
                raise DataError(f"no feature named {name!r}; features are "
                                f"{list(self.text) + list(self.categorical)}")
        return ". ".join(parts)

    def texts(self, fields: Sequence[str] | None = None) -> list[str]:
        """:meth:`describe_row` for every row."""
        return [self.describe_row(r, fields) for r in range(len(self.ids))]

    def append(self, ids: Sequence[str], categorical: Mapping[str, Sequence[Sequence[str]]] | None = None,
               text: Mapping[str, Sequence[str]] | None = None) -> Features:
        """Features with new rows for ``ids`` (new items at serving time). Missing
        fields are empty; categorical values outside a vocabulary are an error."""
        categorical, text = categorical or {}, text or {}
        unknown = (set(categorical) - set(self.categorical)) | (set(text) - set(self.text))
        if unknown:
            raise DataError(f"unknown feature(s) {sorted(unknown)}; features are "
                            f"{sorted(set(self.text) | set(self.categorical))}")
        new_ids = self.ids.extend(ids)
        if len(new_ids) != len(self.ids) + len(ids):
            raise DataError("some of the appended ids already have features")
        new_categorical = {}
        for name, feature in self.categorical.items():
            rows = categorical.get(name, [[] for _ in ids])
            extra = CategoricalFeature.from_lists(rows, feature.values)
            new_categorical[name] = CategoricalFeature(feature.values, sp.vstack([feature.matrix, extra.matrix]).tocsr())
        new_text = {name: np.concatenate([np.asarray(values, dtype=object),
                                          np.asarray(text.get(name, [""] * len(ids)), dtype=object)])
                    for name, values in self.text.items()}
        return Features(new_ids, new_categorical, new_text)

    # --- persistence: JSON-able dict -----------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "ids": self.ids.to_list(),
            "kind": self.ids.kind,
            "categorical": {name: {"values": list(f.values),
                                   "rows": [f.matrix.indices[f.matrix.indptr[r]:f.matrix.indptr[r + 1]].tolist()
                                            for r in range(f.matrix.shape[0])]}
                            for name, f in self.categorical.items()},
            "text": {name: [str(v) for v in values] for name, values in self.text.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Features:
        ids = IdMap(data["ids"], data.get("kind", "id"))
        categorical = {}
        for name, f in data.get("categorical", {}).items():
            values = f["values"]
            categorical[name] = CategoricalFeature.from_lists([[values[j] for j in row] for row in f["rows"]], values)
        text = {name: np.asarray(values, dtype=object) for name, values in data.get("text", {}).items()}
        return cls(ids, categorical, text)
