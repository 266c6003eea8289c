"""Amazon review datasets with item text, in the two layouts they are shipped in.

* **JSON sequences** (the layout of the generative-retrieval papers, e.g. the
  CollisionGenRec files of ``amazon-scientific``): ``<Name>.inter.json`` maps each user id
  to its item ids in time order, ``<Name>.item.json`` maps each item id to a record of text
  fields (``title``, ``description``, ``brand``, ``categories``). There are no timestamps:
  an item's position in its user's list stands in for time, as for the S3-Rec text files.
* **Item table beside a sequence file** (``amazon-beauty/items.tsv``, header ``item``,
  ``asin``, ``title_words``): the first words of each item's title, joined to the ids of
  ``Beauty.txt``; it becomes the text feature ``title``.

Text fields become :class:`~recloop.data.Features` text columns, so a model picks the ones
it reads by name (``text_fields = ["title", "brand", "categories"]``) and
:meth:`Features.texts` assembles them into one string per item.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from recloop.data.dataset import Dataset
from recloop.data.features import Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.errors import DataError

#: Text fields of an item record, in the order they are kept.
ITEM_TEXT_FIELDS = ("title", "brand", "categories", "description")


def json_sequence_files(folder: Path) -> tuple[Path, Path | None]:
    """``(<Name>.inter.json, <Name>.item.json or None)`` of a folder in the JSON layout."""
    folder = Path(folder)
    inter = sorted(folder.glob("*.inter.json"))
    if len(inter) != 1:
        raise DataError(f"{folder}: expected exactly one *.inter.json file, found {[p.name for p in inter]}")
    item = inter[0].with_name(inter[0].name.replace(".inter.json", ".item.json"))
    return inter[0], item if item.is_file() else None


def load_json_sequences(folder: Path, name: str | None = None) -> Dataset:
    """A folder holding ``<Name>.inter.json`` (and ``<Name>.item.json``) as a dataset:
    one interaction per (user, position), ``timestamp`` = the position in the list."""
    inter_path, item_path = json_sequence_files(folder)
    try:
        sequences = json.loads(inter_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{inter_path}: not a JSON object of user -> item list ({error})") from None
    if not isinstance(sequences, dict) or not sequences:
        raise DataError(f"{inter_path}: expected a non-empty JSON object mapping users to item lists")
    bad = next((u for u, s in sequences.items() if not isinstance(s, list) or not s), None)
    if bad is not None:
        raise DataError(f"{inter_path}: user {bad!r} has no item list; expected {{\"user\": [item, ...]}}")
    lengths = np.fromiter((len(s) for s in sequences.values()), dtype=np.int64, count=len(sequences))
    user_ids = np.repeat(np.asarray(list(sequences), dtype=object), lengths)
    item_ids = np.asarray([str(i) for s in sequences.values() for i in s], dtype=object)
    position = np.arange(len(item_ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    log = Interactions.from_ids(user_ids, item_ids, timestamp=position)
    features = None if item_path is None else read_item_records(item_path)
    return Dataset(name or inter_path.name.removesuffix(".inter.json"), log, features)


def read_item_records(path: Path) -> Features:
    """``{"item": {"title": ..., "brand": ..., ...}}`` as text features; fields missing
    from a record are empty, lists are joined with ", ", category paths get ", "."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a JSON object of item -> text fields ({error})") from None
    if not isinstance(records, dict):
        raise DataError(f"{path}: expected a JSON object mapping item ids to records")
    ids = [str(i) for i in records]
    text = {}
    for field in ITEM_TEXT_FIELDS:
        values = [_text(record.get(field, "") if isinstance(record, dict) else "", field) for record in records.values()]
        if any(values):
            text[field] = np.asarray(values, dtype=object)
    return Features(IdMap(ids, "item"), {}, text)


def _text(value, field: str) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    value = " ".join(str(value or "").split())
    if field == "categories":
        value = ", ".join(part.strip() for part in value.split(",") if part.strip())
    if field == "title":
        value = value.rstrip(".")  # texts() joins fields with ". "
    return value


def read_item_titles(path: Path) -> Features:
    """An ``items.tsv`` table (``item``, ``asin``, ``title_words``) as the text feature
    ``title`` (the ASIN is not text a model should read, so it is left out)."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or rows[0][:3] != ["item", "asin", "title_words"]:
        raise DataError(f"{path}: expected a header 'item<TAB>asin<TAB>title_words', got {rows[:1]}")
    body = rows[1:]
    short = next((n for n, row in enumerate(body, start=2) if len(row) < 3), None)
    if short is not None:
        raise DataError(f"{path}, line {short}: expected 3 tab-separated fields")
    return Features(IdMap([r[0] for r in body], "item"), {},
                    {"title": np.asarray([" ".join(r[2].split()) for r in body], dtype=object)})


def with_item_titles(dataset: Dataset, path: Path) -> Dataset:
    """``dataset`` with the item table at ``path`` as its item features."""
    return replace(dataset, item_features=read_item_titles(path))
