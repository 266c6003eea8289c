"""Vocabularies that map external ids (strings) to dense indices and back.

External ids are always strings: MovieLens' ``50`` and Amazon's ``B00ABC`` both arrive
as text in a URL or a JSON body, so keeping one type end to end removes a class of
"item 50 is not item '50'" bugs. Dense indices are ``int64`` positions ``0..n-1``.

Only the vocabulary holds strings. A log's rows are encoded without a Python object per
row: integer columns are hashed as integers (pyarrow's dictionary encoding, which keeps
the order of first appearance) and only the distinct values are turned into text, so a
column of 1e8 int32 ids costs its codes and no strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recloop.errors import UnknownIdError

VECTOR_LOOKUP = 1024  # from this many ids on, indices() hashes them in one pass (pandas) instead of one by one


class IdMap:
    """An immutable, ordered vocabulary of external ids.

    Parameters
    ----------
    ids:
        The external ids in index order; converted to ``str``. Must be unique.
    kind:
        What the ids are (``"user"`` or ``"item"``), used in error messages.
    """

    __slots__ = ("_ids", "_lookup", "_pandas", "kind")

    def __init__(self, ids: Iterable[object], kind: str = "id"):
        self._ids = np.asarray([str(x) for x in ids], dtype=object)
        self._lookup: dict[str, int] | None = None
        self._pandas: pd.Index | None = None
        self.kind = kind
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(x for x in self._ids if x in seen or seen.add(x))
            raise ValueError(f"{kind} ids must be unique; {dup!r} appears twice")

    @classmethod
    def _unique(cls, ids: np.ndarray, kind: str) -> IdMap:
        """A map over ``ids``, an object array of distinct ``str`` (not checked again)."""
        vocabulary = cls.__new__(cls)
        vocabulary._ids, vocabulary._lookup, vocabulary._pandas, vocabulary.kind = ids, None, None, kind
        return vocabulary

    @classmethod
    def from_values(cls, values: Sequence[object] | np.ndarray | pa.Array | pa.ChunkedArray,
                    kind: str = "id") -> tuple[IdMap, np.ndarray]:
        """Build a vocabulary from raw values in order of first appearance.

        Returns the map and the dense index (``int64``) of every value. Values are the
        same id when their text is the same (``1`` and ``"1"``); integer and string
        columns, numpy or pyarrow, are encoded without a Python object per value.
        """
        ids, codes = _dictionary_encode(values)
        return cls._unique(ids, kind), codes

    @property
    def _index(self) -> dict[str, int]:
        # Built on first lookup: loading and splitting a log never needs it.
        if self._lookup is None:
            self._lookup = {x: i for i, x in enumerate(self._ids)}
        return self._lookup

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def __iter__(self):
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and len(self) == len(other) and bool(np.all(self._ids == other._ids))

    def __hash__(self) -> int:
        return hash((self.kind, len(self._ids)))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3])
        return f"IdMap(kind={self.kind!r}, n={len(self)}, ids=[{head}{', ...' if len(self) > 3 else ''}])"

    @property
    def ids(self) -> np.ndarray:
        """The external ids in index order (a read-only object array)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    def index(self, external_id: object) -> int:
        """The dense index of one external id; :class:`UnknownIdError` if absent."""
        try:
            return self._index[str(external_id)]
        except KeyError:
            raise UnknownIdError(f"unknown {self.kind} id {str(external_id)!r}: it is not among the "
                                 f"{len(self)} {self.kind}s the model knows") from None

    def indices(self, external_ids: Iterable[object], missing: str = "raise") -> np.ndarray:
        """Dense indices of many ids. ``missing="raise"`` or ``"negative"`` (gives -1)."""
        if isinstance(external_ids, np.ndarray | pa.Array | pa.ChunkedArray) and len(external_ids) >= VECTOR_LOOKUP:
            keys = np.asarray(external_ids).astype(str)
            if self._pandas is None:
                self._pandas = pd.Index(self._ids)
            found = self._pandas.get_indexer(keys).astype(np.int64)
            if missing == "raise" and (found < 0).any():
                self.index(keys[np.argmax(found < 0)])  # raises UnknownIdError naming the first unknown id
            return found
        if missing == "raise":
            return np.fromiter((self.index(x) for x in external_ids), dtype=np.int64)
        return np.fromiter((self._index.get(str(x), -1) for x in external_ids), dtype=np.int64)

    def id(self, index: int) -> str:
        """The external id at a dense index."""
        return str(self._ids[index])

    def take(self, indices: np.ndarray) -> IdMap:
        """The sub-vocabulary at ``indices``, re-numbered ``0..len(indices)-1``."""
        indices = np.asarray(indices)
        if indices.dtype == bool or len(np.unique(indices)) == len(indices):
            return IdMap._unique(self._ids[indices], self.kind)
        return IdMap(self._ids[indices], self.kind)  # raises: an id taken twice

    def extend(self, new_ids: Iterable[object]) -> IdMap:
        """A vocabulary with ``new_ids`` appended (ids already present are skipped)."""
        fresh = [str(x) for x in dict.fromkeys(str(x) for x in new_ids) if str(x) not in self._index]
        return IdMap(list(self._ids) + fresh, self.kind)

    def to_list(self) -> list[str]:
        return [str(x) for x in self._ids]


def _dictionary_encode(values) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values as ``str`` (object array, first-appearance order) and the
    ``int64`` code of every value."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        column = values
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not (pa.types.is_integer(column.type) or pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type)) or column.null_count:
            # Other types keep the text Python gives them ("1.0", "None"), as numpy values do.
            return _dictionary_encode(np.asarray(column.to_numpy(zero_copy_only=False)))
    else:
        array = np.asarray(values)
        if array.ndim != 1:
            array = array.reshape(-1)
        # Integers are hashed as integers; anything else as its str() text.
        column = pa.array(array if array.dtype.kind in "iu" else array.astype(str))
    encoded = pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    codes = np.empty(len(column), dtype=np.int64)
    start, dictionary = 0, pa.array([], type=column.type)
    for chunk in chunks:  # chunks of one encoding share the final dictionary
        codes[start:start + len(chunk)] = chunk.indices.to_numpy()
        start += len(chunk)
        dictionary = chunk.dictionary
    ids = dictionary.to_numpy(zero_copy_only=False)
    if ids.dtype != object:
        ids = ids.astype(str).astype(object)
    return ids, codes
