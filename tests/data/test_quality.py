"""`recloop data check`: ml-100k with injected anomalies (a scripted bot, duplicated rows,
a conflicting rating, future and zero timestamps, a burst) is flagged exactly, genuine
users are not, and [data.filters] drops what was flagged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from recloop.cli import main
from recloop.config import experiment_from_dict
from recloop.data import load_dataset
from recloop.data.quality import CheckConfig, DataFilters, apply_filters, check_dataset, robust_z
from recloop.experiment import load_data
from tests.conftest import dataset_path

NOW = 1_800_000_000  # 2027-01-15: a fixed "now", so that the test does not age
BOT = "bot-9999"
FUTURE = 4_102_444_800  # 2100-01-01
BURST_TIME = 880_000_000


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """ml-100k plus the anomalies; returns the folder and what was injected."""
    source = dataset_path("ml-100k")
    folder = tmp_path_factory.mktemp("ml-100k-injected")
    for name in ("u.item", "u.user"):
        shutil.copy(source / name, folder / name)
    log = pd.read_csv(source / "u.data", sep="\t", names=["user", "item", "rating", "time"], dtype=str)
    rng = np.random.default_rng(0)
    start = 885_000_000
    bot = pd.DataFrame({"user": BOT, "item": [str(i) for i in range(1, 1501)], "rating": "5",
                        "time": [str(start + s) for s in range(1500)]})  # one rating a second for 25 minutes
    duplicated = log.iloc[rng.choice(len(log), 50, replace=False)]
    first = log.iloc[0]
    conflict = pd.DataFrame([{"user": first.user, "item": first["item"], "rating": str(int(first.rating) % 5 + 1),
                              "time": str(int(first.time) + 86_400)}])
    seen = set(zip(log.user, log["item"]))
    burst_users = rng.choice(log.user.unique(), 300, replace=False)
    burst_rows = []
    for user in burst_users:  # 300 real users, each one new item, all in the same second
        item = next(str(i) for i in rng.permutation(np.arange(1, 1683)) if (user, str(i)) not in seen)
        burst_rows.append({"user": user, "item": item, "rating": "3", "time": str(BURST_TIME)})
    future = pd.DataFrame([{"user": "5", "item": "1600", "rating": "4", "time": str(FUTURE)}])
    zero = pd.DataFrame([{"user": "6", "item": "1601", "rating": "4", "time": "0"}])
    full = pd.concat([log, bot, duplicated, conflict, pd.DataFrame(burst_rows), future, zero])
    full.to_csv(folder / "u.data", sep="\t", header=False, index=False)
    return folder, {"duplicates": duplicated, "conflict": (first.user, first["item"]),
                    "burst_users": set(burst_users), "genuine_users": set(log.user)}


@pytest.fixture(scope="module")
def report(injected):
    folder, _ = injected
    return check_dataset(load_dataset(folder), CheckConfig(now=NOW))


def _flagged_rows(report, dataset, name) -> pd.DataFrame:
    log = dataset.interactions
    mask = report.rows[name]
    return pd.DataFrame({"user": log.users.ids[log.user_idx[mask]], "item": log.items.ids[log.item_idx[mask]],
                         "time": log.timestamp[mask]})


@pytest.mark.filterwarnings("ignore:.*have no user features")
def test_every_injected_anomaly_is_flagged_and_nothing_else(injected, report):
    folder, truth = injected
    dataset = load_dataset(folder)
    found = report.findings
    # the bot, and no genuine ml-100k user
    assert [dataset.interactions.users.id(int(u)) for u in report.bot_users] == [BOT]
    assert "peak events per 60s 60" in found["bot users"].examples[0]
    # exactly the 50 duplicated rows
    assert found["duplicates"].count == 50
    dupes = _flagged_rows(report, dataset, "duplicates")
    assert sorted(zip(dupes.user, dupes["item"])) == sorted(zip(truth["duplicates"].user, truth["duplicates"]["item"]))
    # the one conflicting pair, and only its older rating is what a filter would drop
    assert found["conflicting ratings"].count == 1
    conflicting = _flagged_rows(report, dataset, "conflicting ratings")
    assert list(zip(conflicting.user, conflicting["item"])) == [truth["conflict"]]
    # the future and the zero timestamp
    assert _flagged_rows(report, dataset, "future timestamps").time.tolist() == [FUTURE]
    assert _flagged_rows(report, dataset, "zero timestamps").time.tolist() == [0]
    # the burst: exactly its 300 rows (its window holds nothing else)
    burst = _flagged_rows(report, dataset, "bursts")
    assert len(burst) >= 300 and set(burst.user) >= truth["burst_users"]
    assert (burst.time // 60 == BURST_TIME // 60).all()
    assert sorted(report.flagged()) == ["bot users", "bursts", "conflicting ratings", "duplicates",
                                        "future timestamps", "zero timestamps"]


def test_genuine_ml100k_has_no_bot_or_anomaly(ml100k):
    report = check_dataset(ml100k, CheckConfig(now=NOW))
    assert report.flagged() == []
    assert len(report.bot_users) == 0
    assert report.findings["cold items"].count == 333  # items with fewer than 5 ratings
    assert report.findings["sparsity"].share == pytest.approx(1 - 100_000 / (943 * 1682))


def test_filters_drop_what_was_flagged(injected, report):
    folder, _ = injected
    dataset = load_dataset(folder)
    filters = DataFilters(drop_duplicates=True, drop_conflicts=True, drop_bad_timestamps=True, drop_bursts=True,
                          drop_bots=True, thresholds=CheckConfig(now=NOW))
    cleaned, dropped = apply_filters(dataset, filters)
    assert dropped == {"duplicates": 50, "conflicting ratings": 1, "zero timestamps": 1, "future timestamps": 1,
                       "bursts": report.findings["bursts"].count, "bot users": 1500}
    assert len(cleaned.interactions) == len(dataset.interactions) - sum(dropped.values())
    again = check_dataset(cleaned, CheckConfig(now=NOW))
    assert again.flagged() == []
    # The experiment config path: [data.filters] applies before preprocessing.
    config = experiment_from_dict({"data": {"dataset": str(folder), "filters": {
        "drop_bots": True, "drop_duplicates": True, "thresholds": {"now": NOW}}}})
    loaded = load_data(config.data, config.preprocess)
    assert len(loaded.interactions) == len(dataset.interactions) - 1500 - 50
    assert BOT not in set(loaded.interactions.users.ids[loaded.interactions.user_idx])


def test_unknown_filter_key_names_the_closest():
    from recloop.errors import ConfigError

    with pytest.raises(ConfigError, match="drop_bots"):
        experiment_from_dict({"data": {"filters": {"drop_bot": True}}})


def test_cli_table_json_and_strict_exit(injected, tmp_path, capsys):
    folder, _ = injected
    out = tmp_path / "check.json"
    assert main(["data", "check", str(folder), "--now", str(NOW), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bot users" in text and "FLAG" in text and BOT in text
    record = json.loads(out.read_text())
    assert record["checks"]["duplicates"]["count"] == 50 and record["checks"]["bot users"]["flagged"]
    assert main(["data", "check", str(folder), "--now", str(NOW), "--strict"]) == 1
    capsys.readouterr()
    assert main(["data", "check", str(dataset_path("ml-100k")), "--now", str(NOW), "--strict"]) == 0


def test_positions_are_not_checked_as_times(tmp_path):
    # The sequence format (amazon-beauty) stores each item's position as its time: 0, 1, ...
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"u{u} " + " ".join(str(i) for i in range(u % 7 + 3)) + "\n" for u in range(40)))
    report = check_dataset(load_dataset(path))
    assert "zero timestamps" not in report.findings and "bursts" not in report.findings
    assert report.findings["items without features"].count == report.findings["items without features"].total
    assert report.findings["timestamps"].flag is False


def test_robust_z_hand_checked():
    z = robust_z(np.exp(np.array([1.0, 2.0, 3.0, 4.0, 100.0])))
    # log values 1..4, 100: median 3, MAD median(|-2,-1,0,1,97|) = 1 -> z = (x - 3) / 1.4826
    assert z == pytest.approx((np.array([1, 2, 3, 4, 100]) - 3) / 1.4826)
