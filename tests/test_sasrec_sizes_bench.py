"""benchmarks/sasrec_sizes.py at a tiny size: every seed of every size runs the experiment
path, and the table pairs the sizes on the same users."""

from __future__ import annotations

import json

import numpy as np
import pytest

CONFIG = """
name = "tiny-sizes"
refit = false
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[model]
name = "sasrec"
hidden = {hidden}
layers = 1
heads = 1
max_len = 10
[model.train]
epochs = 2
eval_every = 1
batch_size = 128
num_threads = 1
progress = false
[evaluation]
k = [10]
metrics = ["ndcg", "hr"]
beyond = []
"""


def test_sizes_run_per_seed_and_pair_on_the_same_users(tmp_path, capsys):
    from benchmarks import sasrec_sizes

    configs = []
    for hidden in (8, 16):
        path = tmp_path / f"sasrec-{hidden}.toml"
        path.write_text(CONFIG.format(hidden=hidden))
        configs.append(str(path))
    out = tmp_path / "sizes.json"
    report = sasrec_sizes.main([*configs, "--seeds", "0", "1", "--json", str(out)])
    runs = report["runs"]
    assert [(r["size"], r["seed"]) for r in runs] == [("8:1:1", 0), ("8:1:1", 1), ("16:1:1", 0), ("16:1:1", 1)]
    assert json.loads(out.read_text())["runs"] == json.loads(json.dumps(runs))
    for run in runs:  # the stored per-user values are the ones the test metric averages
        assert run["test"]["ndcg@10"] == pytest.approx(np.mean(run["per_user"]["ndcg@10"]))
        assert len(run["per_user"]["ndcg@10"]) == len(run["users"]) > 0
        assert run["epochs_run"] == 2 and run["stopped"] == "max_epochs"
    assert runs[0]["test"] != runs[1]["test"]  # another seed, another model

    rows, pairs = sasrec_sizes.summarise(runs)
    assert [r["size"] for r in rows] == ["8:1:1", "16:1:1"] and rows[0]["params"] < rows[1]["params"]
    small = rows[0]
    assert small["test"] == pytest.approx(np.median([runs[0]["test"]["ndcg@10"], runs[1]["test"]["ndcg@10"]]))
    assert small["ci_low"] <= small["mean_over_seeds"] <= small["ci_high"]
    (pair,) = pairs
    expected = np.mean([np.mean(runs[i]["per_user"]["ndcg@10"]) for i in (2, 3)]) - np.mean(
        [np.mean(runs[i]["per_user"]["ndcg@10"]) for i in (0, 1)])
    assert (pair["larger"], pair["smaller"]) == ("16:1:1", "8:1:1")
    assert pair["difference"] == pytest.approx(expected) and pair["low"] <= pair["difference"] <= pair["high"]

    sasrec_sizes.main(["--table", str(out)])
    printed = capsys.readouterr().out
    assert "| 16:1:1 - 8:1:1 |" in printed and f"**{small['test']:.4f}**" in printed


def test_the_tuners_final_test_counts_as_one_more_seed(tmp_path, capsys):
    pytest.importorskip("optuna")
    from benchmarks import sasrec_sizes
    from recloop.cli import main as recloop

    config = tmp_path / "tune.toml"
    config.write_text(CONFIG.format(hidden=8) + '[model.search]\n"train.lr" = {low = 1e-3, high = 1e-2, log = true}\n')
    assert recloop(["tune", str(config), "--trials", "1", "-o", str(tmp_path / "study"), "--quiet"]) == 0
    tuned = json.loads((tmp_path / "study" / "tune.json").read_text())
    report = sasrec_sizes.main([str(tmp_path / "study" / "best.toml"), "--seeds", "1", "2"])

    run = sasrec_sizes.from_tune(tmp_path / "study" / "tune.json")
    assert (run["size"], run["seed"], run["test"]) == ("8:1:1", 0, tuned["test"]["metrics"])
    (row,), pairs = sasrec_sizes.summarise(report["runs"] + [run])
    assert row["seeds"] == [0, 1, 2] and row["paired_seeds"] == [1, 2] and pairs == []
    tests = sorted([tuned["test"]["metrics"]["ndcg@10"], *(r["test"]["ndcg@10"] for r in report["runs"])])
    assert row["test"] == pytest.approx(tests[1]) and (row["test_min"], row["test_max"]) == (tests[0], tests[2])
    with pytest.raises(ValueError, match="seed twice"):  # seed 0 trained again and given twice
        sasrec_sizes.summarise([run, {**run, "config": "again"}])
