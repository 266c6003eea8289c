"""One entry point that turns a dataset name or path into a :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

from recloop.data.amazon import load_sequences
from recloop.data.amazon_text import load_json_sequences, with_item_titles
from recloop.data.dataset import Dataset
from recloop.data.download import KNOWN_DATASETS, locate
from recloop.data.lastfm import load_lastfm
from recloop.data.movielens import load_movielens_1m, load_movielens_100k, load_movielens_csv
from recloop.data.shard import UserShard, keep_shard
from recloop.data.synthetic import SyntheticConfig, generate
from recloop.data.tabular import ColumnMapping, load_table
from recloop.errors import DataError, closest

FORMATS = ("movielens-100k", "movielens-1m", "movielens", "amazon-sequences", "amazon-json", "table", "lastfm")


def load_dataset(source: str | Path, format: str | None = None, *, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, download: bool = True,
                 columns: ColumnMapping = ColumnMapping(), sep: str = ",", shard: UserShard | None = None) -> Dataset:
    """Load a dataset.

    ``source`` is a known name (``"ml-100k"``, ``"ml-latest-small"``, ``"ml-1m"``,
    ``"ml-20m"``, ``"ml-25m"``, ``"amazon-beauty"``, ``"amazon-scientific"``, ``"lastfm-2k"``),
    ``"synthetic"``, or a path to a folder or file. A known name is looked for under ``data_dir`` then ``cache_dir``,
    and downloaded into the cache when missing and ``download`` is allowed.
    ``format`` is inferred from the files when not given; ``columns`` and ``sep`` apply
    to ``format="table"`` (generic CSV/Parquet). ``shard`` keeps the rows of that shard's
    users only, over the whole log's vocabularies (:mod:`recloop.data.shard`); a table is
    filtered while it is read, other formats after.
    """
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown dataset format {format!r}; formats are {FORMATS}")
    name = str(source)
    if name == "synthetic":
        return keep_shard(generate(SyntheticConfig()), shard)
    path = Path(source)
    if name in KNOWN_DATASETS and not path.exists():
        path = locate(name, data_dir, cache_dir, download)
        format = format or KNOWN_DATASETS[name].format
    elif not path.exists():
        known = sorted(KNOWN_DATASETS) + ["synthetic"]
        raise DataError(f"dataset {name!r} is neither a known name{closest(name, known)} nor an existing path; "
                        f"known names are {', '.join(known)}")
    if path.is_dir() and name in KNOWN_DATASETS and KNOWN_DATASETS[name].format == "amazon-sequences":
        path = path / KNOWN_DATASETS[name].required[0]
    format = format or infer_format(path)
    label = name if name in KNOWN_DATASETS else path.stem
    if format == "movielens-100k":
        return keep_shard(load_movielens_100k(path, label), shard)
    if format == "movielens-1m":
        return keep_shard(load_movielens_1m(path, label), shard)
    if format == "movielens":
        return keep_shard(load_movielens_csv(path, label), shard)
    if format == "amazon-sequences":
        dataset = load_sequences(path, label)
        items = path.with_name("items.tsv")  # amazon-beauty's item titles, beside Beauty.txt
        return keep_shard(with_item_titles(dataset, items) if items.is_file() else dataset, shard)
    if format == "amazon-json":
        return keep_shard(load_json_sequences(path, label), shard)
    if format == "lastfm":
        return keep_shard(load_lastfm(path, label), shard)
    return load_table(path, columns, sep, label, shard)


def infer_format(path: Path) -> str:
    if path.is_dir():
        if any(path.glob("*.inter.json")):
            return "amazon-json"
        for marker, format in (("u.data", "movielens-100k"), ("ratings.dat", "movielens-1m"),
                               ("ratings.csv", "movielens"), ("user_artists.dat", "lastfm")):
            if (path / marker).is_file():
                return format
        if any(path.glob("*.parquet")):
            return "table"
        raise DataError(f"{path}: no known dataset layout (expected u.data, ratings.dat or ratings.csv); "
                        "pass a file and format='table' with a column mapping for your own data")
    if path.suffix in (".csv", ".tsv", ".parquet"):
        return "table"
    if path.suffix == ".txt":
        return "amazon-sequences"
    raise DataError(f"{path}: cannot tell the format from the name; pass format= one of {FORMATS}")
