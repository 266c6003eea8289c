"""The CLI end to end, in-process, on synthetic data and ml-100k."""

import json

import pytest

from recloop.cli import main

CONFIG = """
name = "cli-test"
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[evaluation]
k = [10]
[[models]]
name = "popular"
[[models]]
name = "ease"
l2 = 30.0
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(CONFIG)
    return path


def test_evaluate_writes_metrics_json(tmp_path, config, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(config), "--model", "ease", "--json", str(out), "--quiet"]) == 0
    record = json.loads(out.read_text())
    assert 0 < record["metrics"]["ndcg@10"] <= 1 and "hr@10" in record["metrics"]
    assert "ndcg@10" in capsys.readouterr().out


def test_train_then_recommend(tmp_path, config, capsys):
    artifact = tmp_path / "art"
    assert main(["train", str(config), "--model", "ease", "--output", str(artifact), "--quiet",
                 "--model.l2=10"]) == 0
    assert json.loads((artifact / "model.json").read_text())["config"]["l2"] == 10.0
    capsys.readouterr()
    assert main(["recommend", str(artifact), "--user", "u1", "-k", "3", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert len(items) == 3 and all(isinstance(x["item_id"], str) for x in items)
    assert main(["recommend", str(artifact), "--items", "i1,i2", "-k", "2"]) == 0


def test_compare_writes_table_artifacts_and_report(tmp_path, config, capsys):
    out = tmp_path / "run"
    assert main(["compare", str(config), "--output", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "popular" in table and "ease" in table
    assert (out / "models" / "ease" / "model.json").exists()
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64") == 3 and "Paired tests" in report
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"popular", "ease"}


def test_errors_are_one_line_not_tracebacks(tmp_path, config, capsys):
    assert main(["evaluate", str(config), "--model", "ease", "--model.l3=1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop: error:") and "did you mean 'l2'" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "missing.toml")]) == 2
    artifact = tmp_path / "art"
    main(["train", str(config), "--model", "popular", "--output", str(artifact), "--quiet"])
    capsys.readouterr()
    assert main(["recommend", str(artifact), "--user", "nobody"]) == 2
    assert "unknown user id 'nobody'" in capsys.readouterr().err
    assert main(["data", "ml-100", "--offline"]) == 2
    assert "did you mean 'ml-100k'" in capsys.readouterr().err


def test_data_describes_a_dataset(data_dir, capsys):
    assert main(["data", "ml-100k", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "interactions           100000" in out and "popularity curve" in out


def test_help_says_which_artifact_is_which(capsys):
    for command in ("train", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "served model" in text and "refitted on every interaction" in text
        assert "evaluated model" in text and "--no-refit-all" in text


def test_train_saves_the_served_model_with_the_evaluated_metrics(tmp_path, config, capsys):
    served, evaluated = tmp_path / "served", tmp_path / "evaluated"
    assert main(["train", str(config), "--model", "ease", "--output", str(served), "--quiet"]) == 0
    assert main(["train", str(config), "--model", "ease", "--output", str(evaluated), "--quiet",
                 "--no-refit-all"]) == 0
    assert "served model, refitted on all" in capsys.readouterr().err
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (served, evaluated))
    assert a["metrics"] == b["metrics"] and a["fitted_on"] == "all" and b["fitted_on"] == "split"
    assert a["fitted_interactions"] > b["fitted_interactions"]
def test_version_names_the_release_and_the_commit(capsys):
    import recloop
    from recloop.utils import git_commit

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"recloop {recloop.__version__}")
    commit = git_commit()
    assert (f"(commit {commit})" in out) if commit else out == f"recloop {recloop.__version__}"


def test_git_commit_is_none_outside_a_checkout(monkeypatch, tmp_path):
    from recloop import utils

    monkeypatch.setattr(utils, "__file__", str(tmp_path / "recloop" / "utils.py"))
    assert utils.git_commit() is None
    record = utils.provenance()
    assert record["commit"] is None and record["recloop"]


def test_compare_records_version_commit_date_and_machine(tmp_path, config, capsys):
    from datetime import datetime

    import torch

    import recloop
    from recloop.utils import git_commit

    out = tmp_path / "run"
    assert main(["compare", str(config), "--output", str(out), "--quiet"]) == 0
    origin = json.loads((out / "results.json").read_text())["provenance"]
    assert origin["recloop"] == recloop.__version__
    assert origin["commit"] == git_commit()
    assert datetime.fromisoformat(origin["date"]).utcoffset().total_seconds() == 0
    assert origin["machine"]["torch"] == torch.__version__ and origin["machine"]["cpus"] >= 1
    assert origin["machine"]["python"].count(".") == 2 and origin["machine"]["platform"]
    report = (out / "report.html").read_text()
    assert "<h2>Provenance</h2>" in report and origin["date"] in report and origin["machine"]["python"] in report
    if origin["commit"]:
        assert origin["commit"] in report


@pytest.mark.parametrize(("content", "message"), [
    ("", "the file is empty; expected a header row naming the columns ['user_id', 'item_id']"),
    ("uid,iid\n1,2\n", "no columns 'user_id', 'item_id' in the header; it has 'uid', 'iid'"),
])
def test_data_errors_name_the_file_and_the_column(tmp_path, capsys, content, message):
    log = tmp_path / "log.csv"
    log.write_text(content)
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'name = "csv"\n[data]\ndataset = "{log}"\n[model]\nname = "popular"\n')
    assert main(["evaluate", str(experiment), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recloop: error: {log}: {message}") and "internal error" not in err
    assert main(["data", str(log)]) == 2
    assert f"{log}: {message}" in capsys.readouterr().err


def test_data_expand_writes_shards_that_load_back(tmp_path, capsys, data_dir):
    out = tmp_path / "big"
    assert main(["data", "expand", "ml-100k", "--interactions", "2e5", "--output", str(out), "--seed", "3",
                 "--data-dir", str(data_dir)]) == 0
    assert "interactions (target 200,000" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert abs(manifest["interactions"] - 200_000) / 200_000 < 0.05 and manifest["seed"] == 3
    assert main(["data", str(out)]) == 0
    assert f"interactions           {manifest['interactions']}" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --interactions is required
        main(["data", "expand", "ml-100k", "--output", str(tmp_path / "x")])
    assert "--interactions" in capsys.readouterr().err


def test_recommend_rejects_a_bad_k_and_an_empty_history(tmp_path, config, capsys):
    artifact = tmp_path / "ease"
    assert main(["train", str(config), "--model", "ease", "--output", str(artifact), "--quiet"]) == 0
    for k in ("0", "-3", "five"):
        with pytest.raises(SystemExit):
            main(["recommend", str(artifact), "--user", "u1", "-k", k])
        assert "argument -k" in capsys.readouterr().err
    assert main(["recommend", str(artifact), "--items", " , "]) == 2
    assert "--items needs at least one item id" in capsys.readouterr().err


def test_serve_on_a_port_another_process_holds_is_a_named_error_before_the_model_loads(tmp_path, capsys):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # The artifact does not exist: the port is checked first, so the port is what is named.
        assert main(["serve", str(tmp_path / "no-artifact"), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in error and "another process listens there" in error
    assert "Traceback" not in error
def test_compare_reports_cold_and_warm_users_apart(tmp_path, capsys):
    path = tmp_path / "cold.toml"
    path.write_text('name = "cold"\n[data]\ndataset = "synthetic"\n'
                    '[split]\nmethod = "ratio"\ntest_ratio = 0.2\nseed = 1\ncold_users = 0.3\ncold_history = [1, 3]\n'
                    '[evaluation]\nk = [10]\nbeyond = []\n[[models]]\nname = "popular"\n[[models]]\nname = "itemknn"\n')
    out = tmp_path / "results.json"
    assert main(["compare", str(path), "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cold-1 users (" in printed and "cold-3 users (" in printed and "warm users (" in printed
    record = json.loads(out.read_text())
    groups = record["models"]["itemknn"]["groups"]
    assert set(groups) == {"cold-1", "cold-3", "warm"}
    total = sum(g["n_users"] for g in groups.values())
    assert total == record["models"]["itemknn"]["n_users"]
    # the per-group means recombine into the overall mean
    overall = sum(g["metrics"]["ndcg@10"] * g["n_users"] for g in groups.values()) / total
    assert overall == pytest.approx(record["models"]["itemknn"]["metrics"]["ndcg@10"], rel=1e-6)
    assert record["split"]["users_cold-1"] == groups["cold-1"]["n_users"]
