import json

import numpy as np
import pytest

from recloop.config import load_config
from recloop.data import load_dataset
from recloop.data.loading import infer_format
from recloop.errors import DataError
from recloop.experiment import prepare_data
from tests.conftest import dataset_path


@pytest.fixture(scope="module")
def scientific(data_dir):
    dataset_path("amazon-scientific")
    return load_dataset("amazon-scientific", data_dir=data_dir, download=False)


def test_scientific_counts_order_and_text(scientific):
    log = scientific.interactions
    assert (log.n_users, log.n_items, len(log)) == (8_317, 4_344, 58_492)
    raw = json.loads((dataset_path("amazon-scientific") / "Scientific.inter.json").read_text())
    for user in ("0", "3", "8316"):
        history = log.histories(np.array([log.users.index(user)])).row(0)
        assert [log.items.id(i) for i in history] == [str(i) for i in raw[user]]  # time order kept
    features = scientific.item_features
    assert set(features.text) == {"title", "brand", "categories", "description"}
    row = log.items.index("1")
    assert features.texts(["title", "brand", "categories"])[row] == (
        "Stanley TRA708T Sharpshooter 1/2-Inch Leg Length Staples, Steel (1000 Count). brand: Stanley. "
        "categories: Industrial & Scientific, Fasteners, Collated Fasteners, Staples")


def test_beauty_items_get_their_title_words(data_dir):
    dataset_path("amazon-beauty")
    dataset = load_dataset("amazon-beauty", data_dir=data_dir, download=False)
    items = dataset.interactions.items
    assert list(dataset.item_features.text) == ["title"]
    assert dataset.item_features.text["title"][items.index("2")] == "red shatter crackle nail polish e55"
    empty = [items.id(i) for i, t in enumerate(dataset.item_features.text["title"]) if not t]
    assert empty == ["10205"]  # the one item items.tsv has no title words for


def test_json_layout_is_inferred_and_checked(tmp_path):
    (tmp_path / "Toy.inter.json").write_text(json.dumps({"u1": [3, 1, 2], "u2": [1, 3]}))
    (tmp_path / "Toy.item.json").write_text(json.dumps({"1": {"title": "A lamp."}, "2": {"title": "A desk",
                                                        "categories": ["Home", "Office"]}, "3": {}}))
    assert infer_format(tmp_path) == "amazon-json"
    dataset = load_dataset(tmp_path)
    log = dataset.interactions
    assert [log.items.id(i) for i in log.histories(np.array([0])).row(0)] == ["3", "1", "2"]
    texts = dict(zip(log.items.to_list(), dataset.item_features.texts()))
    assert texts == {"1": "A lamp", "2": "A desk. categories: Home, Office", "3": ""}
    (tmp_path / "Toy.inter.json").write_text(json.dumps({"u1": []}))
    with pytest.raises(DataError, match="u1"):
        load_dataset(tmp_path)


def test_missing_scientific_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="no download.*Scientific.inter.json"):
        load_dataset("amazon-scientific", data_dir=tmp_path, cache_dir=tmp_path)


def test_scientific_config_split_keeps_the_test_period_out(data_dir):
    """No test interaction reaches training or early stopping: train and valid are each
    user's earlier items, test the last."""
    dataset_path("amazon-scientific")
    data = prepare_data(load_config("configs/scientific-sasrec-text.toml"), data_dir=data_dir, download=False)
    parts = data.split
    assert len(parts.test) == 8_317 and len(parts.valid) == 8_317
    test_pairs = set(zip(parts.test.user_idx.tolist(), parts.test.timestamp.tolist()))
    for log in (parts.train, parts.valid):
        assert not test_pairs & set(zip(log.user_idx.tolist(), log.timestamp.tolist()))
    last_train = np.full(parts.train.n_users, -1)
    np.maximum.at(last_train, parts.train.user_idx, parts.train.timestamp)
    assert (last_train[parts.valid.user_idx] < parts.valid.timestamp).all()
    valid_time = np.zeros(parts.valid.n_users, dtype=np.int64)
    valid_time[parts.valid.user_idx] = parts.valid.timestamp
    assert (valid_time[parts.test.user_idx] < parts.test.timestamp).all()
