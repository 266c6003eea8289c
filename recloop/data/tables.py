"""Reading delimited text and Parquet tables with errors that name the file and line."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recloop.errors import DataError


def read_table(path: Path, columns: Sequence[str] | None, sep: str, header: bool,
               encoding: str = "utf-8", numeric: Sequence[str] = (), required: Sequence[str] = (),
               hint: str = "") -> pd.DataFrame:
    """Read a delimited file as strings, then check it.

    ``numeric`` columns are converted to numbers; ``required`` columns must be present
    on every line. An empty file, a header without a required column or a bad line
    raises :class:`DataError` with the file (and 1-based line); ``hint`` ends the
    message of a missing column (how to map the columns).
    """
    first_line = 2 if header else 1
    try:
        frame = pd.read_csv(path, sep=sep, header=0 if header else None, names=None if header else columns,
                            dtype=str, encoding=encoding, skip_blank_lines=False, keep_default_na=False,
                            na_values=[""], engine="c" if len(sep) == 1 else "python",
                            quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE)
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: malformed line: {error}") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not valid {encoding} text at byte {error.start}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        frame = None
    if frame is None or (not header and required and frame.dropna(how="all").empty):
        expected = (f"a header row naming the columns {list(required)}" if header
                    else f"lines of {len(columns or ())} fields {list(columns or ())} separated by {sep!r}")
        raise DataError(f"{path}: the file is empty; expected {expected}")
    frame.index = np.arange(len(frame)) + first_line  # index = line number in the file
    frame = frame.dropna(how="all")  # blank lines
    if header:
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: no column{'s' if len(missing) > 1 else ''} {_names(missing)} in the header; "
                            f"it has {_names(frame.columns)}"
                            f"{f'; {hint}' if hint else ''}")
    for column in required:
        empty = frame[column].isna()
        if empty.any():
            line = int(frame.index[np.argmax(empty.to_numpy())])
            raise DataError(f"{path}, line {line}: missing value for {column!r} "
                            f"(expected {len(frame.columns)} fields separated by {sep!r})")
    for column in numeric:
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            line = int(frame.index[np.argmax(bad.to_numpy())])
            raise DataError(f"{path}, line {line}: {column!r} is {frame.loc[line, column]!r}, expected a number")
        frame[column] = values
    return frame


def _names(columns) -> str:
    return ", ".join(repr(str(c)) for c in columns) or "none"


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None
