"""Readers for the MovieLens layouts GroupLens publishes.

* 100K: ``u.data`` (tab separated), ``u.item`` (Latin-1, 19 genre flags), ``u.user``.
* 1M: ``ratings.dat``, ``movies.dat`` (Latin-1), ``users.dat``, ``::`` separated.
* latest-small / 20M / 25M: ``ratings.csv``, ``movies.csv`` (genres with ``|``), ``tags.csv``.

Ratings keep their value and timestamp; movies get ``title``, ``genres`` and, where the
release has them, ``tags`` as text, and ``genre`` as a categorical feature; users get
``age`` (bucketed as in ML-1M), ``gender`` and ``occupation``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recloop.data.dataset import Dataset
from recloop.data.features import CategoricalFeature, Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.data.tables import read_columns, read_table

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
AGE_BUCKETS = ((18, "Under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))
ML1M_AGES = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def age_bucket(age: float) -> str:
    for upper, label in AGE_BUCKETS:
        if age < upper:
            return label
    return "56+"


def _ratings(path: Path, columns: list[str] | None, sep: str, header: bool, user: str = "user_id",
             item: str = "item_id", encoding: str = "utf-8") -> Interactions:
    """The ratings file as a log: ids kept as written, rating and time typed, by pyarrow."""
    read = read_columns(path, columns, sep, header, text=[user, item],
                        numeric={"rating": np.float32, "timestamp": np.int64}, encoding=encoding)
    users, user_idx = IdMap.from_values(read.text[user], "user")
    items, item_idx = IdMap.from_values(read.text[item], "item")
    return Interactions(user_idx, item_idx, users, items, read.numeric["rating"], read.numeric["timestamp"])


def _user_features(ids, ages, genders, occupations) -> Features:
    return Features(IdMap(ids, "user"), {
        "age": CategoricalFeature.from_lists([[a] for a in ages]),
        "gender": CategoricalFeature.from_lists([[g] for g in genders]),
        "occupation": CategoricalFeature.from_lists([[o] for o in occupations]),
    })


def _movie_features(ids, titles, genre_lists, tags: dict[str, str] | None = None) -> Features:
    text = {"title": np.asarray(titles, dtype=object),
            "genres": np.asarray([", ".join(g) for g in genre_lists], dtype=object)}
    if tags is not None:
        text["tags"] = np.asarray([tags.get(i, "") for i in ids], dtype=object)
    return Features(IdMap(ids, "item"), {"genre": CategoricalFeature.from_lists(genre_lists)}, text)


def load_movielens_100k(folder: Path, name: str = "ml-100k") -> Dataset:
    folder = Path(folder)
    log = _ratings(folder / "u.data", RATING_COLUMNS, "\t", header=False)
    item_features = user_features = None
    if (folder / "u.item").is_file():
        columns = ["item_id", "title", "release", "video_release", "url", *ML100K_GENRES]
        items = read_table(folder / "u.item", columns, "|", header=False, encoding="latin-1",
                           numeric=ML100K_GENRES, required=["item_id", "title", *ML100K_GENRES])
        flags = items[list(ML100K_GENRES)].to_numpy(dtype=np.int64)
        genre_lists = [[g for g, f in zip(ML100K_GENRES, row) if f] for row in flags]
        item_features = _movie_features(items["item_id"].astype(str).to_list(), items["title"].to_list(), genre_lists)
    if (folder / "u.user").is_file():
        users = read_table(folder / "u.user", ["user_id", "age", "gender", "occupation", "zip"], "|", header=False,
                           numeric=["age"], required=["user_id", "age", "gender", "occupation"])
        user_features = _user_features(users["user_id"].astype(str).to_list(), [age_bucket(a) for a in users["age"]],
                                       users["gender"].to_list(), users["occupation"].to_list())
    return Dataset(name, log, item_features, user_features)


def load_movielens_1m(folder: Path, name: str = "ml-1m") -> Dataset:
    folder = Path(folder)
    log = _ratings(folder / "ratings.dat", RATING_COLUMNS, "::", header=False, encoding="latin-1")
    item_features = user_features = None
    if (folder / "movies.dat").is_file():
        movies = read_table(folder / "movies.dat", ["item_id", "title", "genres"], "::", header=False,
                            encoding="latin-1", required=["item_id", "title", "genres"])
        item_features = _movie_features(movies["item_id"].astype(str).to_list(), movies["title"].to_list(),
                                        [g.split("|") for g in movies["genres"]])
    if (folder / "users.dat").is_file():
        users = read_table(folder / "users.dat", ["user_id", "gender", "age", "occupation", "zip"], "::",
                           header=False, encoding="latin-1", numeric=["occupation"],
                           required=["user_id", "gender", "age", "occupation"])
        user_features = _user_features(users["user_id"].astype(str).to_list(),
                                       [ML1M_AGES.get(a, a) for a in users["age"]], users["gender"].to_list(),
                                       [ML1M_OCCUPATIONS[int(o)] if 0 <= o < 21 else str(o) for o in users["occupation"]])
    return Dataset(name, log, item_features, user_features)


def load_movielens_csv(folder: Path, name: str = "movielens") -> Dataset:
    """latest-small, latest, 20M and 25M: CSV files with headers."""
    folder = Path(folder)
    log = _ratings(folder / "ratings.csv", None, ",", header=True, user="userId", item="movieId")
    item_features = None
    if (folder / "movies.csv").is_file():
        movies = read_table(folder / "movies.csv", None, ",", header=True, required=["movieId", "title", "genres"])
        tags = None
        if (folder / "tags.csv").is_file():
            tag_rows = read_table(folder / "tags.csv", None, ",", header=True, required=["movieId", "tag"])
            # Keep each movie's distinct tags in first-use order, lower-cased.
            tag_rows = tag_rows.assign(tag=tag_rows["tag"].str.strip().str.lower())
            tags = {str(movie): ", ".join(dict.fromkeys(group)) for movie, group in tag_rows.groupby("movieId")["tag"]}
        genre_lists = [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"]]
        item_features = _movie_features(movies["movieId"].astype(str).to_list(), movies["title"].to_list(),
                                        genre_lists, tags)
    return Dataset(name, log, item_features)
