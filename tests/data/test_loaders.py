import numpy as np
import pandas as pd
import pytest

from recloop.data import ColumnMapping, generate, load_dataset
from recloop.data.download import KNOWN_DATASETS, locate
from recloop.errors import DataError
from tests.conftest import dataset_path


def test_ml100k_counts_and_side_features(ml100k):
    log = ml100k.interactions
    assert (len(log), log.n_users, log.n_items) == (100_000, 943, 1682)
    assert set(np.unique(log.rating)) == {1, 2, 3, 4, 5}
    toy_story = log.items.index("1")
    assert ml100k.item_features.text["title"][toy_story] == "Toy Story (1995)"
    assert ml100k.item_features.categorical["genre"].labels(toy_story) == ["Animation", "Children's", "Comedy"]
    user_1 = log.users.index("1")
    assert ml100k.user_features.categorical["occupation"].labels(user_1) == ["technician"]
    assert ml100k.user_features.categorical["age"].labels(user_1) == ["18-24"]


def test_ml100k_latin1_titles(ml100k):
    titles = ml100k.item_features.text["title"]
    assert any("é" in t for t in titles)  # e.g. "Misérables" is Latin-1 encoded in u.item


def test_movielens_csv_layout_with_tags(data_dir):
    dataset_path("ml-latest-small")
    with pytest.warns(UserWarning, match="no item features"):
        dataset = load_dataset("ml-latest-small", data_dir=data_dir, download=False)
    log = dataset.interactions
    assert log.n_users >= 610 and len(log) >= 100_836
    toy_story = log.items.index("1")
    assert "pixar" in dataset.item_features.text["tags"][toy_story]
    assert "Animation" in dataset.item_features.categorical["genre"].labels(toy_story)


def test_amazon_sequences_keep_line_order(data_dir):
    dataset_path("amazon-beauty")
    log = load_dataset("amazon-beauty", data_dir=data_dir, download=False).interactions
    assert (log.n_users, log.n_items, len(log)) == (22_363, 12_101, 198_502)
    first = log.histories(np.array([log.users.index("2")])).row(0)
    assert [log.items.id(i) for i in first] == ["6", "7", "8", "9", "10", "4", "11"]


def test_generic_csv_and_parquet_with_column_mapping(tmp_path):
    frame = pd.DataFrame({"uid": [1, 1, 2], "iid": ["a", "b", "a"], "stars": [4.0, 5.0, 3.0],
                          "when": ["2024-01-01", "2024-01-02", "2024-01-03"]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    mapping = ColumnMapping(user="uid", item="iid", rating="stars", timestamp="when")
    for name in ("log.csv", "log.parquet"):
        log = load_dataset(tmp_path / name, columns=mapping).interactions
        assert (len(log), log.n_users, log.n_items) == (3, 2, 2)
        assert log.timestamp.tolist() == [1704067200, 1704153600, 1704240000]


def test_malformed_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\t3\t100\n1\t3\tfive\t200\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: 'rating' is 'five'"):
        load_dataset(tmp_path)
    bad.write_text("1\t2\t3\t100\n1\t3\n")
    with pytest.raises(DataError, match=r"line 2: missing value"):
        load_dataset(tmp_path)
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id\n1,2\n1,2,3\n")
    with pytest.raises(DataError, match="log.csv"):
        load_dataset(csv)
    seq = tmp_path / "seq.txt"
    seq.write_text("1 2 3\n7\n")
    with pytest.raises(DataError, match=r"seq.txt, line 2: user '7' has no items"):
        load_dataset(seq)


def test_missing_dataset_offline_says_which_files_where(tmp_path):
    with pytest.raises(DataError) as error:
        locate("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
    message = str(error.value)
    assert "u.data" in message and "RECLOOP_DATA_DIR" in message and str(tmp_path) in message


def test_unknown_dataset_name_suggests_closest():
    with pytest.raises(DataError, match="did you mean 'ml-100k'"):
        load_dataset("ml-100", download=False)


def test_every_known_dataset_has_a_checksum():
    for spec in KNOWN_DATASETS.values():
        if spec.url or spec.name != "amazon-scientific":  # local files only: two files, no archive
            assert len(spec.sha256) == 64 and spec.url.startswith("https://")


def test_synthetic_generator_plants_structure():
    dataset = generate()
    log = dataset.interactions
    counts = np.sort(log.item_counts())[::-1]
    assert counts[: len(counts) // 10].sum() > 2 * counts[-len(counts) // 10:].sum()  # skewed popularity
    genre = dataset.item_features.categorical["genre"].matrix.toarray().argmax(1)
    histories = log.histories()
    same_topic = np.mean([np.bincount(genre[histories.row(u)]).max() / len(histories.row(u))
                          for u in range(log.n_users)])
    assert same_topic > 0.6  # users concentrate on their taste clusters
    again = generate()
    assert np.array_equal(again.interactions.item_idx, log.item_idx)


def test_movielens_1m_layout(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978302109\n2::20::4::978301968\n")
    (folder / "movies.dat").write_bytes("10::Misérables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action\n"
                                        .encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    dataset = load_dataset(folder)
    log = dataset.interactions
    assert (len(log), log.n_users, log.n_items) == (3, 2, 2)
    assert dataset.item_features.text["title"][log.items.index("10")] == "Misérables, Les (1995)"
    assert dataset.user_features.categorical["occupation"].labels(log.users.index("1")) == ["K-12 student"]
    assert dataset.user_features.categorical["age"].labels(log.users.index("2")) == ["56+"]


def test_checksummed_download_and_offline_error(tmp_path):
    import hashlib
    import zipfile

    from recloop.data.download import DatasetSpec, fetch

    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("toy/u.data", "1\t2\t3\t4\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = DatasetSpec("toy", "movielens-100k", ("u.data",), (), archive.as_uri(), digest, "toy")
    folder = fetch(spec, tmp_path / "cache")
    assert (folder / "u.data").read_text() == "1\t2\t3\t4\n"
    bad = DatasetSpec("bad", "movielens-100k", ("u.data",), (), archive.as_uri(), "0" * 64, "toy")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(bad, tmp_path / "cache")
    assert not (tmp_path / "cache" / "bad").exists()


def test_empty_and_unmapped_tables_name_the_file_and_the_columns(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty; expected a header row naming the "
                                        r"columns \['user_id', 'item_id'\]"):
        load_dataset(empty)
    unmapped = tmp_path / "log.csv"
    unmapped.write_text("uid,iid\n1,2\n")
    with pytest.raises(DataError, match=r"log\.csv: no columns 'user_id', 'item_id' in the header; "
                                        r"it has 'uid', 'iid'; the columns are mapped as user='user_id'"):
        load_dataset(unmapped)
    with pytest.raises(DataError, match=r"log\.csv: no column 'ts' in the header; it has 'uid', 'iid'"):
        load_dataset(unmapped, columns=ColumnMapping(user="uid", item="iid", timestamp="ts"))
    pd.DataFrame({"uid": [1], "iid": [2]}).to_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError, match=r"log\.parquet: no column 'user_id'.*it has 'uid', 'iid'"):
        load_dataset(tmp_path / "log.parquet", columns=ColumnMapping(item="iid"))
    header_only = tmp_path / "header.csv"
    header_only.write_text("user_id,item_id\n")
    with pytest.raises(DataError, match=r"header\.csv: no interactions"):
        load_dataset(header_only)
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text("")
    with pytest.raises(DataError, match=r"u\.data: the file is empty; expected lines of 4 fields"):
        load_dataset(tmp_path / "ml")
    seq = tmp_path / "seq.txt"
    seq.write_bytes(b"1 2 3\n2 \xff\xfe 4\n")
    with pytest.raises(DataError, match=r"(?i)seq\.txt.*not valid UTF-8"):
        load_dataset(seq)
