"""Reader for any CSV or Parquet interaction log, given which column is which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recloop.data.dataset import Dataset
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.data.shard import UserShard
from recloop.data.tables import ParquetColumns, read_columns, release_unused_memory
from recloop.errors import DataError


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each field; ``rating`` and ``timestamp`` are optional."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None


def load_table(path: Path, columns: ColumnMapping = ColumnMapping(), sep: str = ",", name: str | None = None,
               shard: UserShard | None = None) -> Dataset:
    """Load a ``.csv``/``.tsv``/``.txt`` (with a header row) or ``.parquet`` file, or a folder of
    ``.parquet`` shards (read as one table).

    Columns are read by pyarrow and handed on as Arrow or numpy arrays, one at a time, so
    that loading holds about the log's own columns plus its dense indices, and no Python
    object per row. With a ``shard``, the vocabularies are those of the whole table and
    only the rows of the shard's users are kept (:mod:`recloop.data.shard`): the user and
    item columns are read whole, one after the other, and a Parquet table's numeric
    columns only for the kept rows.
    """
    path = Path(path)
    required = [c for c in (columns.user, columns.item, columns.rating, columns.timestamp) if c is not None]
    roles = {field: getattr(columns, field) for field in ("user", "item", "rating", "timestamp")
             if getattr(columns, field) is not None}
    hint = ("the columns are mapped as " + ", ".join(f"{field}={column!r}" for field, column in roles.items())
            + " (set data.user, data.item, data.rating, data.timestamp in the config, or a ColumnMapping)")
    if path.suffix == ".parquet" or path.is_dir():
        fields = ParquetColumns(path, required, hint)

        def line(row: int) -> str:
            return f"row {row}"
    else:
        if path.suffix == ".tsv":
            sep = "\t"
        rating = {} if columns.rating is None else {columns.rating: np.float32}
        read = read_columns(path, None, sep, header=True, text=[columns.user, columns.item], numeric=rating,
                            other=[c for c in (columns.timestamp,) if c is not None], hint=hint)
        fields = {**read.text, **read.numeric, **read.other}
        read_line = read.line
        del read

        def line(row: int) -> str:
            return f"line {read_line(row)}"
    # One column at a time, each released before the next is read or converted: the peak
    # is about the log's int64 indices plus one source column, not the whole table twice.
    users, user_idx = IdMap.from_values(fields.pop(columns.user), "user")
    if len(user_idx) == 0:
        raise DataError(f"{path}: no interactions (the table has its columns and no rows)")
    keep = None if shard is None else shard.rows(users, user_idx)
    if keep is not None:
        user_idx = user_idx[keep]
    release_unused_memory()
    items, item_idx = IdMap.from_values(fields.pop(columns.item), "item")
    if keep is not None:
        item_idx = item_idx[keep]
    release_unused_memory()

    def pop(column: str):
        """The column's values of the kept rows (read for those rows only where it can be)."""
        if isinstance(fields, ParquetColumns):
            return fields.pop(column, keep)
        values = fields.pop(column)
        if keep is None:
            return values
        return values[keep] if isinstance(values, np.ndarray) else values.filter(pa.array(keep))

    timestamp = None
    if columns.timestamp is not None:
        timestamp = _as_epoch_seconds(pop(columns.timestamp), path, columns.timestamp,
                                      line if keep is None else (lambda row: f"row {row} of rank {shard.rank}'s rows"))
        release_unused_memory()
    rating = None
    if columns.rating is not None:
        values = pop(columns.rating)
        rating = np.asarray(values if isinstance(values, np.ndarray) else values.to_numpy(), dtype=np.float32)
        del values
        release_unused_memory()
    log = Interactions(user_idx, item_idx, users, items, rating, timestamp)
    return Dataset(name or path.stem, log)


def _as_epoch_seconds(values: np.ndarray | pa.ChunkedArray, path: Path, column: str, line) -> np.ndarray:
    """Integers pass through; date-time text becomes seconds since the epoch."""
    if isinstance(values, np.ndarray):  # a numeric Parquet column
        return values.astype(np.int64, copy=False)
    if pa.types.is_integer(values.type):
        return values.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("us", tz="UTC" if not getattr(values.type, "tz", None) else values.type.tz))
        return ((values.to_pandas() - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    text = pd.Series(values.to_numpy(zero_copy_only=False))
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(np.int64)
    parsed = pd.to_datetime(text, errors="coerce", utc=True)
    if parsed.isna().any():
        position = int(np.argmax(parsed.isna().to_numpy()))
        raise DataError(f"{path}, {line(position)}: {column!r} is {text.iloc[position]!r}, expected a number or a date")
    # Resolution-independent (pandas 3 parses to microseconds, pandas 2 to nanoseconds).
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
