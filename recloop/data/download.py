"""Where datasets live, and the checksummed download of the public ones.

A dataset is looked for, in order: at an explicit path; under a data directory (the CLI
passes ``RECLOOP_DATA_DIR``); under the cache directory, where a missing public dataset
is downloaded, verified against its SHA-256 and unpacked. With no network the error
says which files to put where.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recloop.errors import DataError, closest


@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset recloop knows by name."""

    name: str
    format: str
    required: tuple[str, ...]  # files that must exist in the dataset folder
    optional: tuple[str, ...]  # side files used when present
    url: str
    sha256: str
    archive_folder: str = ""  # folder inside a zip archive holding the files; "" for a plain file


# Checksums of the archives as GroupLens and the S3-Rec authors publish them.
KNOWN_DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec("ml-100k", "movielens-100k", ("u.data",), ("u.item", "u.user"),
                "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", "ml-100k"),
    DatasetSpec("ml-1m", "movielens-1m", ("ratings.dat",), ("movies.dat", "users.dat"),
                "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", "ml-1m"),
    DatasetSpec("ml-latest-small", "movielens", ("ratings.csv",), ("movies.csv", "tags.csv"),
                "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
                "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", "ml-latest-small"),
    DatasetSpec("ml-20m", "movielens", ("ratings.csv",), ("movies.csv", "tags.csv"),
                "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
                "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", "ml-20m"),
    DatasetSpec("ml-25m", "movielens", ("ratings.csv",), ("movies.csv", "tags.csv"),
                "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
                "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", "ml-25m"),
    DatasetSpec("amazon-beauty", "amazon-sequences", ("Beauty.txt",), ("items.tsv",),
                "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
    # HetRec 2011 Last.fm; the files sit at the top of the archive. Checksum as recorded by a public
    # project that downloads this archive (not re-computed here: a mismatch refuses the file).
    DatasetSpec("lastfm-2k", "lastfm", ("user_artists.dat",),
                ("artists.dat", "tags.dat", "user_taggedartists.dat", "user_friends.dat"),
                "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
                "6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c"),
    # Two files and no single archive to verify: no download, the files are looked for locally.
    DatasetSpec("amazon-scientific", "amazon-json", ("Scientific.inter.json",), ("Scientific.item.json",), "", ""),
]}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "recloop" / "datasets"


def locate(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
           download: bool = True) -> Path:
    """The folder holding the known dataset ``name``, downloading it if allowed."""
    if name not in KNOWN_DATASETS:
        raise DataError(f"unknown dataset {name!r}{closest(name, KNOWN_DATASETS)}; known datasets are "
                        f"{sorted(KNOWN_DATASETS)}, or pass a path to your own files")
    spec = KNOWN_DATASETS[name]
    candidates = [Path(d) / name for d in (data_dir,) if d is not None]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    candidates.append(cache / name)
    for folder in candidates:
        if all((folder / f).is_file() for f in spec.required):
            return folder
    where = " or ".join(str(c) for c in candidates)
    if not spec.url:
        raise DataError(_missing_message(spec, where, "recloop has no download for it"))
    if not download:
        raise DataError(_missing_message(spec, where, "downloads are disabled"))
    try:
        return fetch(spec, cache)
    except OSError as error:
        raise DataError(_missing_message(spec, where, f"the download from {spec.url} failed: {error}")) from None


def _missing_message(spec: DatasetSpec, where: str, reason: str) -> str:
    files = ", ".join(spec.required + spec.optional)
    return (f"dataset {spec.name!r} was not found in {where}, and {reason}. Put its files ({files}) in a "
            f"folder named {spec.name!r} under the directory named by RECLOOP_DATA_DIR (or pass --data-dir), "
            + (f"or download {spec.url} on a connected machine" if spec.url else
               "copying them from where their publisher ships them"))


def fetch(spec: DatasetSpec, cache_dir: Path) -> Path:
    """Download ``spec`` into ``cache_dir/name``, verifying its SHA-256."""
    target = cache_dir / spec.name
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        download_path = Path(tmp) / Path(spec.url).name
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(download_path, "wb") as out:
            shutil.copyfileobj(response, out)
        digest = sha256_of(download_path)
        if digest != spec.sha256:
            raise DataError(f"checksum mismatch for {spec.url}: expected sha256 {spec.sha256}, got {digest}; "
                            "the file was not used")
        staging = Path(tmp) / "staging"
        staging.mkdir()
        if download_path.suffix == ".zip":
            with zipfile.ZipFile(download_path) as archive:
                archive.extractall(staging)
            source = staging / spec.archive_folder
        else:
            shutil.move(download_path, staging / download_path.name)
            source = staging
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(source), target)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
