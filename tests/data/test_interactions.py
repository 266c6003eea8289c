import numpy as np
import pytest

from recloop.data import IdMap, Interactions, UserHistories
from recloop.errors import DataError, UnknownIdError


def small_log():
    # user b's events arrive out of time order; a has a tie in time (broken by file order)
    return Interactions.from_ids(["a", "b", "a", "b", "a"], ["x", "y", "y", "z", "z"],
                                 rating=np.array([5, 4, 3, 2, 1]), timestamp=np.array([10, 30, 10, 20, 5]))


def test_ids_map_to_dense_indices_in_first_appearance_order():
    log = small_log()
    assert log.users.to_list() == ["a", "b"]
    assert log.items.to_list() == ["x", "y", "z"]
    assert log.users.index("b") == 1 and log.items.id(2) == "z"


def test_canonical_order_is_user_then_time_then_file_position():
    log = small_log()
    frame = log.to_frame()
    assert frame["user_id"].tolist() == ["a", "a", "a", "b", "b"]
    # a: z@5, then x@10 and y@10 in file order; b: z@20, y@30
    assert frame["item_id"].tolist() == ["z", "x", "y", "z", "y"]


def test_histories_are_time_ordered_and_selectable():
    log = small_log()
    histories = log.histories(np.array([1, 0]))
    assert [log.items.id(i) for i in histories.row(0)] == ["z", "y"]
    assert [log.items.id(i) for i in histories.row(1)] == ["z", "x", "y"]
    padded = histories.padded(4, pad=-1)
    assert padded[0].tolist() == [-1, -1, log.items.index("z"), log.items.index("y")]
    assert histories.padded(2)[1].tolist() == [log.items.index("x"), log.items.index("y")]


def test_csr_is_binary_or_weighted():
    log = Interactions.from_ids(["a", "a", "b"], ["x", "x", "y"], rating=np.array([2.0, 3.0, 4.0]))
    assert log.to_csr().toarray().tolist() == [[1, 0], [0, 1]]
    assert log.to_csr(weighted=True).toarray().tolist() == [[5, 0], [0, 4]]
    assert log.item_counts().tolist() == [1, 1]  # distinct users, not events


def test_immutable_arrays():
    log = small_log()
    with pytest.raises(ValueError):
        log.item_idx[0] = 2


def test_unknown_id_names_the_id():
    with pytest.raises(UnknownIdError, match="'nope'"):
        small_log().items.index("nope")


def test_select_concat_and_remap_keep_vocabularies_consistent():
    log = small_log()
    first, rest = log.select(np.arange(len(log)) < 2), log.select(np.arange(len(log)) >= 2)
    assert len(first.concat(rest)) == len(log)
    assert np.array_equal(first.concat(rest).to_csr().toarray(), log.to_csr().toarray())
    sub = log.remap(np.array([1]), np.array([1, 2]))
    assert sub.users.to_list() == ["b"] and sub.items.to_list() == ["y", "z"]
    assert len(sub) == 2


def test_mismatched_lengths_are_rejected():
    users, items = IdMap(["a"], "user"), IdMap(["x"], "item")
    with pytest.raises(DataError, match="item_idx"):
        Interactions(np.array([0, 0]), np.array([0]), users, items)
    with pytest.raises(DataError, match="out of range"):
        Interactions(np.array([0]), np.array([3]), users, items)


def test_user_histories_from_lists_round_trip():
    histories = UserHistories.from_lists([[2, 0], [], [1]], n_items=3)
    assert histories.lengths.tolist() == [2, 0, 1]
    assert histories.to_csr().toarray().tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(DataError):
        UserHistories.from_lists([[5]], n_items=3)


def test_arrays_round_trip():
    log = small_log()
    again = Interactions.from_arrays(log.to_arrays(), log.users, log.items)
    assert again.to_frame().equals(log.to_frame())
