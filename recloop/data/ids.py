"""Vocabularies that map external ids (strings) to dense indices and back.

External ids are always strings: MovieLens' ``50`` and Amazon's ``B00ABC`` both arrive
as text in a URL or a JSON body, so keeping one type end to end removes a class of
"item 50 is not item '50'" bugs. Dense indices are ``int64`` positions ``0..n-1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recloop.errors import UnknownIdError


class IdMap:
    """An immutable, ordered vocabulary of external ids.

    Parameters
    ----------
    ids:
        The external ids in index order; converted to ``str``. Must be unique.
    kind:
        What the ids are (``"user"`` or ``"item"``), used in error messages.
    """

    __slots__ = ("_ids", "_index", "kind")

    def __init__(self, ids: Iterable[object], kind: str = "id"):
        self._ids = np.asarray([str(x) for x in ids], dtype=object)
        self._index = {x: i for i, x in enumerate(self._ids)}
        self.kind = kind
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(x for x in self._ids if x in seen or seen.add(x))
            raise ValueError(f"{kind} ids must be unique; {dup!r} appears twice")

    @classmethod
    def from_values(cls, values: Sequence[object] | np.ndarray, kind: str = "id") -> tuple[IdMap, np.ndarray]:
        """Build a vocabulary from raw values in order of first appearance.

        Returns the map and the dense index of every value.
        """
        as_str = np.asarray(values).astype(str)
        uniques, first, inverse = np.unique(as_str, return_index=True, return_inverse=True)
        # np.unique sorts; reorder to first appearance so indices follow the file order.
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return cls(uniques[order], kind), rank[inverse].astype(np.int64)

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
        if missing == "raise":
            return np.fromiter((self.index(x) for x in external_ids), dtype=np.int64)
        return np.fromiter((self._index.get(str(x), -1) for x in external_ids), dtype=np.int64)

    def id(self, index: int) -> str:
        """The external id at a dense index."""
        return str(self._ids[index])

    def take(self, indices: np.ndarray) -> IdMap:
        """The sub-vocabulary at ``indices``, re-numbered ``0..len(indices)-1``."""
        return IdMap(self._ids[np.asarray(indices)], self.kind)

    def extend(self, new_ids: Iterable[object]) -> IdMap:
        """A vocabulary with ``new_ids`` appended (ids already present are skipped)."""
        fresh = [str(x) for x in dict.fromkeys(str(x) for x in new_ids) if str(x) not in self._index]
        return IdMap(list(self._ids) + fresh, self.kind)

    def to_list(self) -> list[str]:
        return [str(x) for x in self._ids]
