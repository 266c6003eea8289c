"""The columnar data path: readers give the logs the row-by-row readers gave, and say
where a file is wrong."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.data import ColumnMapping, IdMap, Interactions, amazon, leave_one_out, load_dataset, ratio_split
from recloop.errors import DataError, UnknownIdError
from tests.conftest import dataset_path


def fingerprint(log: Interactions) -> tuple[int, int, int, str]:
    """Counts and a checksum of every array and both vocabularies, in canonical order."""
    digest = hashlib.sha256()
    for array in (log.user_idx.astype("<i8"), log.item_idx.astype("<i8")):
        digest.update(array.tobytes())
    if log.rating is not None:
        digest.update(log.rating.astype("<f4").tobytes())
    if log.timestamp is not None:
        digest.update(log.timestamp.astype("<i8").tobytes())
    digest.update("\n".join(log.users.to_list()).encode() + b"|" + "\n".join(log.items.to_list()).encode())
    return len(log), log.n_users, log.n_items, digest.hexdigest()[:16]


# Frozen from the row-by-row readers (pandas text columns, np.unique on strings, Python
# lists per Amazon interaction) before they were replaced.
ML100K = (100_000, 943, 1682, "b6ffe80dc5ce933f")
ML100K_LOO_TEST = (943, 943, 1682, "3972bff33b12516b")
ML100K_RATIO_TEST = (20_000, 943, 1682, "e574816803f4f76d")  # ratio_split(0.2, 0.1, seed=3)
BEAUTY = (198_502, 22_363, 12_101, "72b4e67f3435e0ad")
BEAUTY_LOO_TRAIN = (153_776, 22_363, 12_101, "0812c84234b0e5dd")


def test_ml100k_log_and_splits_as_before(ml100k):
    log = ml100k.interactions
    assert fingerprint(log) == ML100K
    assert fingerprint(leave_one_out(log).test) == ML100K_LOO_TEST
    assert fingerprint(ratio_split(log, 0.2, 0.1, seed=3).test) == ML100K_RATIO_TEST


def test_amazon_beauty_log_as_before(data_dir):
    dataset_path("amazon-beauty")
    log = load_dataset("amazon-beauty", data_dir=data_dir, download=False).interactions
    assert fingerprint(log) == BEAUTY
    assert fingerprint(leave_one_out(log).train) == BEAUTY_LOO_TRAIN


def test_amazon_blocks_give_the_same_log_and_line_numbers(tmp_path, monkeypatch):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"u1 a b c\r\n\n  u2\tb  d \nu3 a\nu1 e\n")
    whole = load_dataset(path).interactions
    monkeypatch.setattr(amazon, "BLOCK_BYTES", 5)  # lines straddle many blocks
    blocks = load_dataset(path).interactions
    assert fingerprint(blocks) == fingerprint(whole)
    assert whole.users.to_list() == ["u1", "u2", "u3"] and whole.items.to_list() == ["a", "b", "c", "d", "e"]
    # u1's second line continues at position 0, so it interleaves by position with the first
    assert [whole.items.id(i) for i in whole.histories(np.array([0])).row(0)] == ["a", "e", "b", "c"]
    path.write_bytes(b"1 10 20\n2 20 30\n3000000000 10\n1 007\n")  # integer-looking ids, then one that is not
    whole = load_dataset(path).interactions
    monkeypatch.setattr(amazon, "BLOCK_BYTES", 8)
    assert fingerprint(load_dataset(path).interactions) == fingerprint(whole)
    assert whole.users.to_list() == ["1", "2", "3000000000"] and whole.items.to_list() == ["10", "20", "30", "007"]
    path.write_bytes(b"u1 a b\n\nu2 c\nu3\n")
    with pytest.raises(DataError, match=r"seq.txt, line 4: user 'u3' has no items"):
        load_dataset(path)
    path.write_bytes(b"u1 a\xff\n")
    with pytest.raises(DataError, match="not valid utf-8"):
        load_dataset(path)
    path.write_bytes(b" \n\n")
    with pytest.raises(DataError, match="no sequences"):
        load_dataset(path)


def test_parquet_folder_and_csv_load_the_same_log(ml100k, tmp_path):
    source = ml100k.interactions
    frame = pd.DataFrame({"user_id": source.users.ids[source.user_idx].astype(np.int64).astype(np.int32),
                          "item_id": source.items.ids[source.item_idx].astype(np.int64).astype(np.int32),
                          "timestamp": source.timestamp, "rating": source.rating})
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # not in canonical order
    folder = tmp_path / "shards"
    folder.mkdir()
    for shard, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[part], preserve_index=False), folder / f"part-{shard:05d}.parquet")
    frame.to_csv(tmp_path / "log.csv", index=False)
    mapping = ColumnMapping(rating="rating", timestamp="timestamp")
    from_parquet = load_dataset(folder, columns=mapping).interactions
    from_csv = load_dataset(tmp_path / "log.csv", columns=mapping).interactions
    assert fingerprint(from_parquet) == fingerprint(from_csv)
    assert (len(from_parquet), from_parquet.n_users, from_parquet.n_items) == (100_000, 943, 1682)
    # the same (user, item, rating, time) rows as the MovieLens reader's
    def rows(log):
        return sorted(zip(log.users.ids[log.user_idx], log.items.ids[log.item_idx], log.rating, log.timestamp))
    assert rows(from_parquet) == rows(source)


def test_typed_csv_read_equals_the_text_read(tmp_path):
    clean = tmp_path / "clean.csv"
    clean.write_text("user,item,stars,when\n007,a,4.5,30\n7,b,3,10\n007,b,2.25,20\n")
    # a blank line sends the file through the text reader; the log must not change
    blank = tmp_path / "blank.csv"
    blank.write_text("user,item,stars,when\n007,a,4.5,30\n\n7,b,3,10\n007,b,2.25,20\n")
    mapping = ColumnMapping(user="user", item="item", rating="stars", timestamp="when")
    typed, text = (load_dataset(p, columns=mapping).interactions for p in (clean, blank))
    assert fingerprint(typed) == fingerprint(text)
    assert typed.users.to_list() == ["007", "7"]  # ids are kept as written: "007" is not 7
    assert typed.rating.tolist() == [2.25, 4.5, 3.0]


def test_csv_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "log.csv"
    mapping = ColumnMapping(user="uid", item="iid", rating="stars")
    path.write_text("")
    with pytest.raises(DataError, match=r"log\.csv: the file is empty.*'uid'"):
        load_dataset(path, columns=mapping)
    path.write_text("uid,item\n1,2\n")
    with pytest.raises(DataError, match=r"log\.csv: no columns 'iid', 'stars' in the header; it has 'uid', 'item'"):
        load_dataset(path, columns=mapping)
    path.write_text("uid,iid,stars\n1,2,4\n1,3,\n")
    with pytest.raises(DataError, match=r"log\.csv, line 3: missing value for 'stars'"):
        load_dataset(path, columns=mapping)
    path.write_text("uid,iid,stars\n1,2,4\n1,3,NaN\n")
    with pytest.raises(DataError, match=r"log\.csv, line 3: 'stars' is 'NaN', expected a number"):
        load_dataset(path, columns=mapping)
    path.write_text("uid,iid,stars,when\n1,2,4,2024-01-01\n1,3,5,soon\n")
    with pytest.raises(DataError, match=r"log\.csv, line 3: 'when' is 'soon'"):
        load_dataset(path, columns=ColumnMapping(user="uid", item="iid", rating="stars", timestamp="when"))


def test_parquet_errors_name_file_row_and_column(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": [1, 2], "i": [3, None]}), path)
    with pytest.raises(DataError, match=r"log\.parquet: no column 'item_id' in the header"):
        load_dataset(path, columns=ColumnMapping(user="u"))
    with pytest.raises(DataError, match=r"log\.parquet, row 1: missing 'i'"):
        load_dataset(path, columns=ColumnMapping(user="u", item="i"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_dataset(tmp_path / "empty", format="table")


def test_parquet_datetime_column_becomes_epoch_seconds(tmp_path):
    when = pd.to_datetime(["2024-01-01", "2024-01-02"]).as_unit("ms")
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "x"], "when": pa.array(when)}),
                   tmp_path / "log.parquet")
    log = load_dataset(tmp_path / "log.parquet", columns=ColumnMapping(timestamp="when")).interactions
    assert log.timestamp.tolist() == [1704067200, 1704153600]


def test_ids_are_their_text_whatever_the_column_type():
    as_ints, codes = IdMap.from_values(np.array([30, 10, 30, 20], dtype=np.int32))
    as_text, text_codes = IdMap.from_values(["30", "10", "30", "20"])
    chunked, chunked_codes = IdMap.from_values(pa.chunked_array([[30, 10], [30, 20]]))
    assert as_ints == as_text == chunked and as_ints.to_list() == ["30", "10", "20"]
    assert codes.tolist() == text_codes.tolist() == chunked_codes.tolist() == [0, 1, 0, 2]
    assert codes.dtype == np.int64
    assert IdMap.from_values([1.0, 2.5])[0].to_list() == ["1.0", "2.5"]  # Python's text for floats, as before
    vocabulary = IdMap([str(i) for i in range(3000)], "item")
    many = np.arange(2999, -1, -1)
    assert np.array_equal(vocabulary.indices(many), many)  # ints are looked up by their text
    assert vocabulary.indices(np.array(["5", "nope"] * 600), missing="negative")[:2].tolist() == [5, -1]
    with pytest.raises(UnknownIdError, match="'nope'"):
        vocabulary.indices(np.array(["5", "nope"] * 600))
    with pytest.raises(ValueError, match="appears twice"):
        vocabulary.take(np.array([1, 1]))


def test_already_ordered_rows_are_kept_and_others_sorted():
    users, items = IdMap(["a", "b"], "user"), IdMap(["x", "y", "z"], "item")
    ordered = Interactions(np.array([0, 0, 1, 1]), np.array([2, 0, 1, 2]), users, items,
                           timestamp=np.array([1, 5, 2, 2]))
    assert ordered.item_idx.tolist() == [2, 0, 1, 2]
    shuffled = Interactions(np.array([1, 0, 1, 0]), np.array([2, 0, 1, 2]), users, items,
                            timestamp=np.array([2, 5, 2, 1]))
    assert shuffled.user_idx.tolist() == [0, 0, 1, 1]
    assert shuffled.item_idx.tolist() == [2, 0, 2, 1]  # ties in time keep file order


def test_integer_looking_ids_keep_their_text_across_blocks(tmp_path, monkeypatch):
    from recloop.data import tables

    rows = [f"{u},{i}\n" for u, i in [(1, 10), (2, 20), (3_000_000_000, 10), (1, "007"), (4, "+5"), (5, "-0"),
                                      (2, 10), (6, 20)]]
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id\n" + "".join(rows * 50))
    whole = load_dataset(path).interactions
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 64)  # ints, then a too-large int, then text, block by block
    blocks = load_dataset(path).interactions
    assert fingerprint(blocks) == fingerprint(whole)
    assert whole.users.to_list() == ["1", "2", "3000000000", "4", "5", "6"]
    assert whole.items.to_list() == ["10", "20", "007", "+5", "-0"]
