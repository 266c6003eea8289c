"""The Last.fm (HetRec 2011) loader, the friend graph a Dataset carries, and the split
with simulated cold users."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.data import PreprocessConfig, SplitConfig, load_dataset, preprocess, split
from recloop.data.ids import IdMap
from recloop.data.lastfm import load_lastfm, read_tag_assignments
from recloop.data.social import UserGraph
from recloop.data.splits import make_cold_users, ratio_split
from recloop.errors import ConfigError, DataError
from tests.conftest import dataset_path


@pytest.fixture
def tiny(tmp_path):
    """The five files in the published layout: headers, CRLF ends, Latin-1 tags, a stray space."""
    folder = tmp_path / "lastfm-2k"
    folder.mkdir()
    (folder / "user_artists.dat").write_bytes(
        b"userID\tartistID\tweight\r\n2\t51\t100\r\n2\t52\t5\r\n3\t51\t7\r\n3\t53  \t1\r\n4\t52\t40\r\n")
    (folder / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://x\thttp://y\n52\tMorcheeba\thttp://x\n"
        "53\tBjörk\thttp://x\thttp://y\n", encoding="utf-8")
    (folder / "tags.dat").write_bytes("tagID\ttagValue\r\n1\tnew wave\r\n2\tpop\r\n3\tchillout\r\n4\tcafé\r\n"
                                      .encode("latin-1"))
    (folder / "user_taggedartists.dat").write_text(
        "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t51\t2\t1\t4\t2009\n3\t51\t1\t2\t4\t2009\n"
        "4\t51\t1\t3\t5\t2010\n2\t52\t3\t1\t1\t2008\n3\t52\t4\t9\t9\t2009\n")
    (folder / "user_friends.dat").write_bytes(b"userID\tfriendID\r\n2\t3\r\n3\t2\r\n3\t4\r\n4\t3\r\n2\t99\r\n")
    return folder


def test_tiny_files_load_with_plays_text_and_friends(tiny):
    data = load_lastfm(tiny)
    log = data.interactions
    assert (log.n_users, log.n_items, len(log)) == (3, 3, 5)
    assert "53" in log.items  # "53  " read as artist 53
    plays = dict(zip(zip(log.users.ids[log.user_idx], log.items.ids[log.item_idx]), log.rating))
    assert plays[("2", "51")] == 100 and plays[("3", "53")] == 1
    row = data.item_features.ids.index("51")
    # most used tag first: "new wave" (2 assignments) before "pop" (1)
    assert data.item_features.text["tags"][row] == "new wave, pop"
    assert data.item_features.text["title"][data.item_features.ids.index("53")] == "Björk"
    assert sorted(data.item_features.categorical["tag"].labels(data.item_features.ids.index("52"))) == ["café",
                                                                                                     "chillout"]
    graph = data.user_graph
    friends = {log.users.id(u): sorted(log.users.id(v) for v in graph.friends(u)) for u in range(3)}
    assert friends == {"2": ["3"], "3": ["2", "4"], "4": ["3"]}  # 99 is not a user with plays: dropped
    assert graph.n_edges == 2


def test_tag_assignments_keep_their_dates(tiny):
    tags = read_tag_assignments(tiny)
    assert list(tags.columns) == ["user_id", "item_id", "tag", "date"]
    assert len(tags) == 5
    first = tags.iloc[0]
    assert (first.user_id, first.item_id, first.tag) == ("2", "51", "pop")
    assert str(first.date.date()) == "2009-04-01"
    assert tags.iloc[-1].tag == "café"


def test_a_file_with_a_bad_count_names_the_line(tiny):
    (tiny / "user_artists.dat").write_text("2\t51\tmany\n")
    with pytest.raises(DataError, match="line 1: plays 'many'"):
        load_lastfm(tiny)


def test_the_known_name_reads_the_shared_copy():
    dataset_path("lastfm-2k")
    data = load_dataset("lastfm-2k", data_dir=dataset_path("lastfm-2k").parent, download=False)
    log = data.interactions
    assert (log.n_users, log.n_items, len(log)) == (1892, 17632, 92834)
    assert data.user_graph.n_edges == 12717
    assert np.array_equal(data.user_graph.to_csr().toarray().sum(0), data.user_graph.degree())
    first = data.item_features.ids.index("1")
    assert data.item_features.describe_row(first).startswith("MALICE MIZER. tags: ")
    assert log.rating.max() > 100_000  # play counts, not 1s


# --- the graph follows the vocabulary ------------------------------------------------------------------
def test_graph_is_symmetric_without_self_loops_or_duplicates():
    users = IdMap(["a", "b", "c", "d"], "user")
    graph = UserGraph.from_id_pairs(users, ["a", "b", "a", "c", "c"], ["b", "a", "a", "d", "x"])
    matrix = graph.to_csr().toarray()
    assert (matrix == matrix.T).all() and matrix.trace() == 0
    assert graph.n_edges == 2 and list(graph.friends(0)) == [1]


def test_preprocessing_keeps_the_friendships_between_the_users_left(tiny):
    data = load_lastfm(tiny)
    # user "4" has one artist: a 2-core on users drops them, and their friendship with "3"
    kept = preprocess(data, PreprocessConfig(user_core=2))
    assert kept.interactions.users.to_list() == ["2", "3"]
    graph = kept.user_graph
    assert graph.users == kept.interactions.users
    assert list(graph.friends(0)) == [1] and list(graph.friends(1)) == [0]


# --- cold users -----------------------------------------------------------------------------------------
@pytest.fixture
def log(synthetic):
    return synthetic.interactions


def test_cold_users_keep_exactly_their_size_and_all_test_rows(log):
    plain = ratio_split(log, 0.2, 0.1, seed=7)
    parts = make_cold_users(plain, 0.3, (1, 3), seed=7)
    cold1, cold3, warm = parts.user_groups["cold-1"], parts.user_groups["cold-3"], parts.user_groups["warm"]
    tested = plain.test.active_users()
    assert abs(len(cold1) - len(cold3)) <= 1 and len(cold1) + len(cold3) == round(0.3 * len(tested))
    assert len(np.intersect1d(cold1, warm)) == 0 and len(cold1) + len(cold3) + len(warm) == len(tested)
    counts = parts.train.user_counts()
    assert (counts[cold1] == 1).all() and (counts[cold3] == 3).all()
    assert (parts.valid.user_counts()[np.concatenate([cold1, cold3])] == 0).all()
    assert np.array_equal(parts.history("test").user_counts()[cold3], np.full(len(cold3), 3))
    # a cold user's kept items are among their own training items; test and warm users are untouched
    assert parts.test is plain.test
    assert np.array_equal(counts[warm], plain.train.user_counts()[warm])
    before = plain.train.to_csr()
    after = parts.train.to_csr()
    assert (after.multiply(before) != after).nnz == 0


def test_cold_users_are_seeded(log):
    config = SplitConfig(method="ratio", test_ratio=0.2, seed=3, cold_users=0.2)
    a, b = split(log, config), split(log, config)
    for name in a.user_groups:
        assert np.array_equal(a.user_groups[name], b.user_groups[name])
    assert np.array_equal(a.train.item_idx, b.train.item_idx)
    other = split(log, SplitConfig(method="ratio", test_ratio=0.2, seed=4, cold_users=0.2))
    assert not np.array_equal(a.user_groups["cold-1"], other.user_groups["cold-1"])
    # the cold users do not move the test set of the plain split
    plain = split(log, SplitConfig(method="ratio", test_ratio=0.2, seed=3))
    assert np.array_equal(a.test.item_idx, plain.test.item_idx) and not plain.user_groups
    assert a.describe()["users_cold-3"] == len(a.user_groups["cold-3"])


def test_cold_user_settings_are_checked():
    with pytest.raises(ConfigError, match="cold_users"):
        SplitConfig(method="ratio", cold_users=1.5)
    with pytest.raises(ConfigError, match="cold_history"):
        SplitConfig(method="ratio", cold_users=0.2, cold_history=(0, 3))
