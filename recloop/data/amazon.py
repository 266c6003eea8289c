"""Reader for the one-sequence-per-line format of the S3-Rec / ICLRec papers.

Each line is ``user item1 item2 ...`` with items in time order. The file carries no
timestamps, so an item's position in its line stands in for time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recloop.data.dataset import Dataset
from recloop.data.interactions import Interactions
from recloop.errors import DataError


def load_sequences(path: Path, name: str | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    users, items, positions = [], [], []
    with open(path, "rb") as f:  # decoded line by line, so a bad byte is reported on its line
        for line_number, raw in enumerate(f, start=1):
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError as error:
                raise DataError(f"{path}, line {line_number}: not valid UTF-8 text (byte {error.start} of the line)") \
                    from None
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{path}, line {line_number}: user {fields[0]!r} has no items; expected "
                                "'user item1 item2 ...'")
            users.extend([fields[0]] * (len(fields) - 1))
            items.extend(fields[1:])
            positions.extend(range(len(fields) - 1))
    if not users:
        raise DataError(f"{path}: no sequences in the file; expected lines of 'user item1 item2 ...'")
    log = Interactions.from_ids(np.asarray(users), np.asarray(items), timestamp=np.asarray(positions, dtype=np.int64))
    return Dataset(name or path.stem, log)
