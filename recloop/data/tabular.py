"""Reader for any CSV or Parquet interaction log, given which column is which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions
from recloop.data.tables import read_parquet, read_table
from recloop.errors import DataError


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each field; ``rating`` and ``timestamp`` are optional."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None


def load_table(path: Path, columns: ColumnMapping = ColumnMapping(), sep: str = ",", name: str | None = None) -> Dataset:
    """Load a ``.csv``/``.tsv``/``.txt`` (with a header row) or ``.parquet`` file."""
    path = Path(path)
    required = [c for c in (columns.user, columns.item, columns.rating, columns.timestamp) if c is not None]
    roles = {field: getattr(columns, field) for field in ("user", "item", "rating", "timestamp")
             if getattr(columns, field) is not None}
    hint = ("the columns are mapped as " + ", ".join(f"{field}={column!r}" for field, column in roles.items())
            + " (set data.user, data.item, data.rating, data.timestamp in the config, or a ColumnMapping)")
    if path.suffix == ".parquet":
        frame = read_parquet(path)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; it has "
                            f"{', '.join(repr(str(c)) for c in frame.columns) or 'none'}; {hint}")
        if frame[required].isna().any().any():
            column = next(c for c in required if frame[c].isna().any())
            raise DataError(f"{path}, row {int(np.argmax(frame[column].isna().to_numpy()))}: missing {column!r}")
    else:
        if path.suffix == ".tsv":
            sep = "\t"
        frame = read_table(path, None, sep, header=True, required=required,
                           numeric=[c for c in (columns.rating,) if c is not None], hint=hint)
    if len(frame) == 0:
        raise DataError(f"{path}: no interactions (the table has its columns and no rows)")
    timestamp = None
    if columns.timestamp is not None:
        timestamp = _as_epoch_seconds(frame[columns.timestamp], path, columns.timestamp)
    rating = None if columns.rating is None else pd.to_numeric(frame[columns.rating]).to_numpy(np.float32)
    log = Interactions.from_ids(frame[columns.user].astype(str).to_numpy(), frame[columns.item].astype(str).to_numpy(),
                                rating, timestamp)
    return Dataset(name or path.stem, log)


def _as_epoch_seconds(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """Integers pass through; date-time text becomes seconds since the epoch."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    if parsed.isna().any():
        position = int(np.argmax(parsed.isna().to_numpy()))
        where = f"line {values.index[position]}" if path.suffix != ".parquet" else f"row {position}"
        raise DataError(f"{path}, {where}: {column!r} is {values.iloc[position]!r}, expected a number or a date")
    # Resolution-independent (pandas 3 parses to microseconds, pandas 2 to nanoseconds).
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
