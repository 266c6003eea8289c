"""Reading delimited text and Parquet tables with errors that name the file and line.

Interaction logs are read by :func:`read_columns` (delimited text) and
:class:`ParquetColumns` with pyarrow: ids stay Arrow strings or integers and numbers
become numpy arrays, with no Python object per row. :func:`read_table` reads a file as text into a
data frame; it serves the small side files (titles, genres, tags) and, when a log is not
clean enough for the typed read, re-reads it to name the bad line and value.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recloop.errors import DataError

UNIT_SEPARATOR = "\x1f"
CSV_BLOCK_BYTES = 1 << 24  # a delimited log is parsed 16 MiB at a time


def _names(columns) -> str:
    return ", ".join(repr(str(c)) for c in columns) or "none"


def _missing_columns(path: Path, missing: Sequence[str], available: Sequence[str], hint: str = "") -> DataError:
    """The one message for mapped columns a file lacks: the file, what is missing, what it has."""
    return DataError(f"{path}: no column{'s' if len(missing) > 1 else ''} {_names(missing)} in the header; "
                     f"it has {_names(available)}{f'; {hint}' if hint else ''}")


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
            raise _missing_columns(path, missing, frame.columns, hint)
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


class ParquetColumns:
    """One Parquet file, or all ``*.parquet`` shards of a folder (in name order) as one
    table, read one column at a time.

    A log's columns are read, converted and released one after the other, so that loading
    never holds the whole Arrow table beside its converted arrays.
    """

    def __init__(self, path: Path, columns: Sequence[str], hint: str = ""):
        self.path = Path(path)
        try:
            self.files = sorted(self.path.glob("*.parquet")) if self.path.is_dir() else [self.path]
            if not self.files:
                raise DataError(f"{path}: no *.parquet files in the folder")
            available = pq.read_schema(self.files[0]).names
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001 - pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: not a readable Parquet file ({error})") from None
        missing = [c for c in columns if c not in available]
        if missing:
            raise _missing_columns(path, missing, available, hint)

    def pop(self, column: str, rows: np.ndarray | None = None) -> np.ndarray | pa.ChunkedArray:
        """Every value of ``column``: a numpy array of its own dtype for a numeric column
        (filled batch by batch, so that no second full copy exists), else an Arrow array.
        ``rows`` (a boolean mask over the table's rows) keeps only those rows; a numeric
        column is then never held whole. A missing value raises :class:`DataError` naming
        its row."""
        try:
            field = pq.read_schema(self.files[0]).field(column)
            if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
                return self._numbers(column, field.type.to_pandas_dtype(), rows)
            values = pq.read_table(self.files if self.path.is_dir() else self.path, columns=[column]).column(column)
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001 - pyarrow raises several unrelated types for a bad file
            raise DataError(f"{self.path}: not a readable Parquet file ({error})") from None
        if values.null_count:
            self._missing(column, values.is_null().to_numpy(zero_copy_only=False), 0)
        return values if rows is None else values.filter(pa.array(rows))

    def _numbers(self, column: str, dtype, rows: np.ndarray | None = None) -> np.ndarray:
        files = [pq.ParquetFile(f) for f in self.files]
        total = sum(f.metadata.num_rows for f in files)
        out = np.empty(total if rows is None else int(np.count_nonzero(rows)), dtype=dtype)
        start = kept = 0
        for file in files:
            for batch in file.iter_batches(batch_size=1 << 20, columns=[column]):
                values = batch.column(0)
                if values.null_count:
                    self._missing(column, values.is_null().to_numpy(zero_copy_only=False), start)
                values = values.to_numpy()
                if rows is not None:
                    values = values[rows[start:start + len(values)]]
                out[kept:kept + len(values)] = values
                start += batch.num_rows
                kept += len(values)
        return out

    def _missing(self, column: str, is_null: np.ndarray, offset: int):
        row = offset + int(np.argmax(is_null))
        raise DataError(f"{self.path}, row {row}: missing {column!r}")


def release_unused_memory() -> None:
    """Hand Arrow's freed blocks back to the system, so that numpy can reuse them."""
    pa.default_memory_pool().release_unused()


@dataclass(frozen=True)
class Columns:
    """Typed columns of a delimited file: ``text`` columns (ids) as Arrow arrays of their
    text, or of integers where every value is a canonically written integer; numeric ones
    as numpy arrays; ``other`` ones as numpy ``int64`` when they parse as integers, else
    as Arrow arrays of whatever type they parse to."""

    path: Path
    text: dict[str, pa.ChunkedArray]
    numeric: dict[str, np.ndarray]
    other: dict[str, pa.ChunkedArray | np.ndarray]
    lines: np.ndarray | None  # file line of each row when read as text; None: rows are consecutive lines
    first_line: int

    def __len__(self) -> int:
        return len(next(iter((*self.text.values(), *self.numeric.values(), *self.other.values()))))

    def line(self, row: int) -> int:
        """The 1-based line of the file that holds row ``row``."""
        return int(self.lines[row]) if self.lines is not None else self.first_line + row


def read_columns(path: Path, columns: Sequence[str] | None, sep: str, header: bool, *,
                 text: Sequence[str] = (), numeric: Mapping[str, type] | None = None, other: Sequence[str] = (),
                 encoding: str = "utf-8", hint: str = "") -> Columns:
    """Read the named columns of a delimited log with pyarrow, typed, no Python object per row.

    ``columns`` names the fields of a header-less file; with ``header`` the first line
    does. ``text`` columns (ids) are kept exactly as written, ``numeric`` ones are parsed
    to the given numpy dtype, ``other`` ones get the type pyarrow infers. Every column
    named must be present on every line. A file the typed read does not take cleanly
    (a malformed line, a missing value, a non-number, a blank line) is re-read as text
    by :func:`read_table`, which raises :class:`DataError` naming the line; should that
    read accept the file, its values are used.
    """
    path = Path(path)
    numeric = dict(numeric or {})
    wanted = [*text, *numeric, *other]
    types = {c: pa.string() for c in text}
    # Numbers are parsed as 64-bit and narrowed after, as the text reader does (same rounding).
    types.update({c: pa.int64() if np.dtype(t).kind in "iu" else pa.float64() for c, t in numeric.items()})
    source = _raw(path, columns, sep, header, wanted, encoding, hint)
    read = None if source is None else _typed_read(source, columns, sep, header, wanted, types, numeric, encoding)
    if read is not None:
        return Columns(path, {c: read[c] for c in text}, {c: read[c] for c in numeric}, {c: read[c] for c in other},
                       None, 2 if header else 1)
    frame = read_table(path, columns, sep, header, encoding, numeric=list(numeric), required=wanted, hint=hint)
    return Columns(path, {c: pa.chunked_array([pa.array(frame[c].to_numpy(object), pa.string())]) for c in text},
                   {c: frame[c].to_numpy(numeric[c]) for c in numeric},
                   {c: pa.chunked_array([pa.array(frame[c].to_numpy(object), pa.string())]) for c in other},
                   frame.index.to_numpy(), 2 if header else 1)


def _raw(path: Path, columns: Sequence[str] | None, sep: str, header: bool, wanted: Sequence[str],
         encoding: str, hint: str = "") -> Path | pa.BufferReader | None:
    """What pyarrow should read, after the checks that need no parse: the file exists,
    is not empty, and its header has the wanted columns. ``None``: the typed read cannot
    take this file (it is left to the text reader)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if not head.strip() and path.stat().st_size == len(head):
        expected = (f"a header row naming the columns {list(wanted)}" if header
                    else f"lines of {len(columns or ())} fields {list(columns or ())} separated by {sep!r}")
        raise DataError(f"{path}: the file is empty; expected {expected}")
    if header:
        try:
            first = head.split(b"\n", 1)[0].decode(encoding).rstrip("\r")
        except UnicodeDecodeError:
            return None
        if len(sep) == 1:
            names = next(csv.reader([first], delimiter=sep,
                                    quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE), [])
        else:
            names = first.split(sep)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise _missing_columns(path, missing, names, hint)
    if len(sep) == 1:
        return path
    # pyarrow takes a one-byte delimiter; ML-1M's "::" becomes the ASCII unit separator.
    data = path.read_bytes()
    if UNIT_SEPARATOR.encode() in data:
        return None
    return pa.BufferReader(data.replace(sep.encode(encoding), UNIT_SEPARATOR.encode()))


def _typed_read(source: Path | pa.BufferReader, columns: Sequence[str] | None, sep: str, header: bool,
                wanted: Sequence[str], types: Mapping[str, pa.DataType], numeric: Mapping[str, type],
                encoding: str) -> dict[str, pa.ChunkedArray | np.ndarray] | None:
    """The wanted columns, streamed block by block, or ``None`` when pyarrow cannot parse
    the file or a value is missing. Numbers (``numeric``, and integer ``other`` columns as
    ``int64``) become numpy arrays block by block; ids stay Arrow (see
    :func:`append_ids`); other columns stay Arrow as parsed."""
    arrow: dict[str, list[pa.Array]] = {}
    parts: dict[str, list[np.ndarray]] = {c: [] for c in numeric}
    try:
        reader = pacsv.open_csv(
            source if isinstance(source, pa.BufferReader) else str(source),
            read_options=pacsv.ReadOptions(column_names=None if header else list(columns), encoding=encoding,
                                           block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=sep if len(sep) == 1 else UNIT_SEPARATOR,
                                             quote_char='"' if sep == "," else False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict(types), include_columns=list(wanted),
                                                 null_values=[""], strings_can_be_null=True))
        for c in wanted:
            if c not in numeric:
                arrow[c] = []
                if c not in types and pa.types.is_integer(reader.schema.field(c).type):
                    parts[c] = []  # an integer column of inferred type: numpy int64, like a numeric one
                    del arrow[c]
        for batch in reader:
            for column in wanted:
                values = batch.column(column)
                if values.null_count:
                    return None
                if column in parts:
                    number = values.to_numpy().astype(numeric.get(column, np.int64), copy=False)
                    if number.dtype.kind == "f" and np.isnan(number).any():
                        return None  # "NaN" is not a number to the text reader either
                    parts[column].append(number)
                elif types.get(column) == pa.string():
                    append_ids(arrow[column], values)
                else:
                    arrow[column].append(values)
        schema = reader.schema
    except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    out: dict[str, pa.ChunkedArray | np.ndarray] = {}
    for column in list(parts):  # concatenated one at a time, each list freed before the next
        chunks = parts.pop(column)
        out[column] = np.concatenate(chunks) if chunks else np.empty(0, numeric.get(column, np.int64))
        del chunks
    for column, chunks in arrow.items():
        out[column] = pa.chunked_array(chunks, chunks[0].type if chunks else schema.field(column).type)
    return out


def append_ids(chunks: list[pa.Array], values: pa.Array) -> None:
    """Append a block of id text to ``chunks``, as int32 or int64 while every id so far is
    an integer written the canonical way (``"42"``, not ``"042"`` or ``"+42"``): the text
    is then exactly ``str`` of the number, so nothing is lost, and an int32 costs 4 bytes
    a row where the text costs its digits plus a 4-byte offset. The first id that is not
    turns the column (earlier blocks too) back into text."""
    kind = chunks[0].type if chunks else pa.int32()
    if not pa.types.is_string(kind):
        try:
            numbers = pc.cast(values, pa.int64())
            canonical = pc.all(pc.equal(pc.cast(numbers, pa.string()), values)).as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            canonical = False
        if canonical:
            low, high = pc.min_max(numbers).values()
            if kind == pa.int32() and (low.as_py() < -2**31 or high.as_py() >= 2**31):
                kind = pa.int64()
                chunks[:] = [c.cast(kind) for c in chunks]
            chunks.append(numbers.cast(kind))
            return
        kind = pa.string()
        chunks[:] = [c.cast(kind) for c in chunks]
    chunks.append(values)
