"""Reader for the one-sequence-per-line format of the S3-Rec / ICLRec papers.

Each line is ``user item1 item2 ...`` with items in time order. The file carries no
timestamps, so an item's position in its line stands in for time.

The file is read in blocks of whole lines and split into tokens with numpy on its bytes:
the tokens' characters become one Arrow string array (no Python string per
interaction), held as integers while every id is a canonically written integer (see
:func:`recloop.data.tables.append_ids`), and dictionary-encoded into dense indices. Fields are separated by
ASCII whitespace; lines end at ``\\n`` (a ``\\r`` before it is whitespace).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from recloop.data.dataset import Dataset
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.data.tables import append_ids
from recloop.errors import DataError

BLOCK_BYTES = 1 << 22  # 4 MiB of text per block: its byte- and token-level temporaries (~16x) stay small
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.split() splits on, in ASCII


def load_sequences(path: Path, name: str | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    user_tokens, item_tokens, lengths, positions = [], [], [], []
    line_base = 0
    for block in _blocks(path):
        users, items, per_line, position, bad = _tokenize(block, path)
        if bad is not None:
            line, user = bad
            raise DataError(f"{path}, line {line_base + line}: user {user!r} has no items; expected "
                            "'user item1 item2 ...'")
        line_base += block.count(b"\n")
        if len(items):
            append_ids(user_tokens, users)
            append_ids(item_tokens, items)
            lengths.append(per_line)
            positions.append(position.astype(np.int32))  # an item's place in its line; < 2**31 in a block
    if not item_tokens:
        raise DataError(f"{path}: no sequences in the file")
    # Users in order of their first line: the same as by first interaction, every line having one.
    user_vocabulary, user_of_line = IdMap.from_values(pa.chunked_array(user_tokens), "user")
    user_idx = np.repeat(user_of_line, np.concatenate(lengths))
    del user_tokens, user_of_line, lengths
    items, item_idx = IdMap.from_values(pa.chunked_array(item_tokens), "item")
    del item_tokens
    timestamp = np.concatenate(positions, dtype=np.int64)
    del positions
    log = Interactions(user_idx, item_idx, user_vocabulary, items, timestamp=timestamp)
    return Dataset(name or path.stem, log)


def _blocks(path: Path):
    """The file's bytes in blocks that end at a line end (the last may not)."""
    rest = b""
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK_BYTES):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                rest = chunk
                continue
            rest = chunk[cut:]
            yield chunk[:cut]
    if rest:
        yield rest


def _tokenize(block: bytes, path: Path):
    """Split one block of whole lines into the user token of each non-blank line, the
    item tokens, the number of items per line and each item's position in its line.

    ``bad`` is ``(line in block, user)`` for the first line with a user but no item.
    """
    raw = np.frombuffer(block, dtype=np.uint8)
    space = _SPACE[raw]
    solid = ~space
    starts = np.flatnonzero(solid & np.concatenate(([True], space[:-1])))
    ends = np.flatnonzero(solid & np.concatenate((space[1:], [True]))) + 1
    line = np.searchsorted(np.flatnonzero(raw == 10), starts)  # 0-based line of each token in the block
    first = np.ones(len(starts), dtype=bool)
    first[1:] = line[1:] != line[:-1]
    heads = np.flatnonzero(first)  # token index of each line's user
    per_line = np.diff(np.append(heads, len(starts))) - 1
    # The tokens' bytes, spaces removed, are contiguous: one Arrow string array over them.
    strings = pa.StringArray.from_buffers(len(starts), pa.py_buffer(_offsets(ends - starts)),
                                          pa.py_buffer(raw[solid]))
    try:
        strings.validate(full=True)
    except pa.ArrowInvalid:
        raise DataError(f"{path}: not valid utf-8 text") from None
    if (per_line == 0).any():
        lone = heads[np.argmax(per_line == 0)]
        return None, None, None, None, (int(line[lone]) + 1, strings[int(lone)].as_py())
    users = strings.take(pa.array(heads))
    items = strings.filter(pa.array(~first))
    # position of an item in its line: its token index minus the index of the line's first item
    position = np.arange(len(starts), dtype=np.int64) - np.repeat(heads, per_line + 1) - 1
    return users, items, per_line, position[~first], None


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Arrow string offsets (int32) for consecutive values of these byte lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise DataError("a block of the sequence file holds over 2 GiB of ids")  # cannot happen with BLOCK_BYTES
    return offsets.astype(np.int32)
