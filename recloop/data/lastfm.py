"""Reader for HetRec 2011 Last.fm (``hetrec2011-lastfm-2k``).

I. Cantador, P. Brusilovsky, T. Kuflik, "2nd Workshop on Information Heterogeneity and
Fusion in Recommender Systems (HetRec 2011)", RecSys 2011. Non-commercial use.

Files (tab separated; a header line is optional; CRLF or LF line ends):

* ``user_artists.dat``: ``userID artistID weight``. One row per (user, artist) pair; the
  weight (play count) becomes the interaction's ``rating``, so ``to_csr(weighted=True)``
  and ALS's confidence see plays. The pairs carry no time.
* ``artists.dat``: ``id name url pictureURL`` (UTF-8). Item text ``title`` is the artist's
  name; ``tags`` its ``TOP_TAGS`` most used tags (by how many tag assignments name them,
  ties by tag id), and the categorical feature ``tag`` the same tags.
* ``tags.dat``: ``tagID tagValue`` (Latin-1).
* ``user_taggedartists.dat``: ``userID artistID tagID day month year``: the tag
  assignments with their dates, read by :func:`read_tag_assignments`.
* ``user_friends.dat``: ``userID friendID``, both directions listed; it becomes the
  dataset's :class:`~recloop.data.social.UserGraph`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recloop.data.dataset import Dataset
from recloop.data.features import CategoricalFeature, Features
from recloop.data.ids import IdMap
from recloop.data.interactions import Interactions
from recloop.data.social import UserGraph
from recloop.data.tables import read_table
from recloop.errors import DataError

TOP_TAGS = 5  # tags per artist in the item text
PLAYS, ARTISTS, TAGS, TAGGED, FRIENDS = ("user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat",
                                         "user_friends.dat")


def _read(path: Path, columns: list[str], numeric: list[str] = (), encoding: str = "utf-8",
          required: list[str] | None = None) -> pd.DataFrame:
    """A HetRec file as strings (``numeric`` columns as numbers), with or without its header line."""
    frame = read_table(path, columns, "\t", header=False, encoding=encoding,
                       required=columns if required is None else required)
    for column in columns:  # a few ids carry stray spaces ("65  " is artist 65)
        frame[column] = frame[column].str.strip()
    first = frame.iloc[0, 0] if len(frame) else ""
    if not str(first).strip().isdigit():  # the published files start with a header such as "userID"
        frame = frame.iloc[1:]
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            line = int(values.index[values.isna()][0])
            raise DataError(f"{path}, line {line}: {column} {frame[column][line]!r} is not a number")
        frame[column] = values
    return frame


def load_lastfm(folder: Path, name: str = "lastfm-2k") -> Dataset:
    """The play counts as interactions (``rating`` = plays), artist names and top tags as
    item features, and the friend graph as ``user_graph``. Side files are optional."""
    folder = Path(folder)
    plays = _read(folder / PLAYS, ["user_id", "item_id", "plays"], numeric=["plays"])
    users, user_idx = IdMap.from_values(plays["user_id"].to_numpy(), "user")
    items, item_idx = IdMap.from_values(plays["item_id"].to_numpy(), "item")
    log = Interactions(user_idx, item_idx, users, items, plays["plays"].to_numpy(np.float32))
    item_features = None
    if (folder / ARTISTS).is_file():
        artists = _read(folder / ARTISTS, ["item_id", "name", "url", "picture"], required=["item_id", "name"])
        ids = artists["item_id"].to_list()
        top = _top_tags(folder) if (folder / TAGS).is_file() and (folder / TAGGED).is_file() else {}
        tag_lists = [top.get(i, []) for i in ids]
        item_features = Features(IdMap(ids, "item"), {"tag": CategoricalFeature.from_lists(tag_lists)},
                                 {"title": artists["name"].fillna("").to_numpy(object),
                                  "tags": np.asarray([", ".join(t) for t in tag_lists], dtype=object)})
    user_graph = None
    if (folder / FRIENDS).is_file():
        friends = _read(folder / FRIENDS, ["user_id", "friend_id"])
        user_graph = UserGraph.from_id_pairs(users, friends["user_id"], friends["friend_id"])
    return Dataset(name, log, item_features, None, user_graph)


def read_tag_assignments(folder: str | Path) -> pd.DataFrame:
    """Every tag assignment: columns ``user_id``, ``item_id`` (artist), ``tag`` (its
    text) and ``date`` (``datetime64``, the day it was made), in file order."""
    folder = Path(folder)
    tagged = _read(folder / TAGGED, ["user_id", "item_id", "tag_id", "day", "month", "year"],
                   numeric=["day", "month", "year"])
    names = _tag_names(folder)
    dates = pd.to_datetime({"year": tagged["year"], "month": tagged["month"], "day": tagged["day"]}, errors="coerce")
    return pd.DataFrame({"user_id": tagged["user_id"].to_numpy(), "item_id": tagged["item_id"].to_numpy(),
                         "tag": tagged["tag_id"].map(names).fillna("").to_numpy(object),
                         "date": dates.to_numpy()})


def _tag_names(folder: Path) -> dict[str, str]:
    tags = _read(folder / TAGS, ["tag_id", "tag"], encoding="latin-1")
    return dict(zip(tags["tag_id"], tags["tag"].str.strip()))


def _top_tags(folder: Path) -> dict[str, list[str]]:
    """Each artist's ``TOP_TAGS`` most assigned tags, most used first (ties: lower tag id)."""
    tagged = _read(folder / TAGGED, ["user_id", "item_id", "tag_id", "day", "month", "year"])
    names = _tag_names(folder)
    counts = tagged.groupby(["item_id", "tag_id"]).size().rename("n").reset_index()
    counts["tag_number"] = pd.to_numeric(counts["tag_id"], errors="coerce")
    counts = counts.sort_values(["item_id", "n", "tag_number"], ascending=[True, False, True])
    top = counts.groupby("item_id").head(TOP_TAGS)
    out: dict[str, list[str]] = {}
    for item, tag_id in zip(top["item_id"], top["tag_id"]):
        name = names.get(tag_id, "")
        if name and name not in out.setdefault(item, []):
            out[item].append(name)
    return out
