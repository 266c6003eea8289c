"""Loading an artifact checks what it reads: real artifact folders, corrupted as a user
or a crashed copy would, each refused with an ArtifactError naming the file and the
problem (never a bare JSON, key or safetensors error, never a model that fails later)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from recloop.artifact import load_artifact, load_model
from recloop.cli import main
from recloop.data import leave_one_out
from recloop.errors import ArtifactError, DataError
from recloop.experiment import fit
from recloop.models import EASE, SASRec


@pytest.fixture(scope="module")
def ml100k_ease(ml100k, tmp_path_factory):
    """The ml-100k EASE artifact of the issue: 1,682 x 1,682 weights."""
    model = EASE(l2=500.0).fit(ml100k.interactions, item_features=ml100k.item_features)
    return model.save(tmp_path_factory.mktemp("artifacts") / "ease", metrics={"ndcg@10": 0.4})


@pytest.fixture
def copy(ml100k_ease, tmp_path):
    path = tmp_path / "ease"
    shutil.copytree(ml100k_ease, path)
    return path


def rewrite_state(path, change):
    state = load_file(str(path / "state.safetensors"))
    save_file(change(state), str(path / "state.safetensors"))


def refused(path, *fragments):
    with pytest.raises(ArtifactError) as error:
        load_artifact(path)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_sound_artifact_loads_and_scores_every_item(ml100k_ease):
    artifact = load_artifact(ml100k_ease)
    assert artifact.model.n_items == 1682 and artifact.metrics == {"ndcg@10": 0.4}
    header = json.loads((ml100k_ease / "model.json").read_text())
    assert header["state"] == {"weights": {"dtype": "float32", "shape": [1682, 1682]}}
    assert header["n_items"] == 1682 and header["n_users"] == 943


def test_items_json_with_one_id_fewer_than_the_weights(copy):
    ids = json.loads((copy / "items.json").read_text())
    (copy / "items.json").write_text(json.dumps(ids[:-1]))
    refused(copy, "items.json", "1681 item ids", "1682")


def test_items_json_one_id_short_in_a_version_1_artifact_is_caught_by_scoring(copy):
    """Without the header's counts (format 1), the scoring check still sees the mismatch."""
    header = json.loads((copy / "model.json").read_text())
    for key in ("state", "n_users", "n_items"):
        header.pop(key)
    (copy / "model.json").write_text(json.dumps({**header, "format_version": 1}))
    ids = json.loads((copy / "items.json").read_text())
    (copy / "items.json").write_text(json.dumps(ids[:-1]))
    history = load_file(str(copy / "history.safetensors"))
    keep = history["item_idx"] < 1681
    save_file({k: np.ascontiguousarray(v[keep]) for k, v in history.items()}, str(copy / "history.safetensors"))
    refused(copy, "state", "1681")


def test_weights_cut_to_ten_rows(copy):
    rewrite_state(copy, lambda s: {"weights": np.ascontiguousarray(s["weights"][:10])})
    refused(copy, "state.safetensors", "'weights'", "[10, 1682]", "[1682, 1682]")


def test_all_nan_weights(copy):
    rewrite_state(copy, lambda s: {"weights": np.full_like(s["weights"], np.nan)})
    refused(copy, "state.safetensors", "'weights'", "NaN or infinite")


def test_one_infinite_weight(copy):
    def poison(state):
        state["weights"][3, 7] = np.inf
        return state
    rewrite_state(copy, poison)
    refused(copy, "state.safetensors", "1 NaN or infinite values")


def test_int8_weights_for_a_float_model(copy):
    rewrite_state(copy, lambda s: {"weights": (s["weights"] * 100).astype(np.int8)})
    refused(copy, "state.safetensors", "int8", "float32")


def test_truncated_safetensors(copy):
    data = (copy / "state.safetensors").read_bytes()
    (copy / "state.safetensors").write_bytes(data[: len(data) // 2])
    refused(copy, "state.safetensors", "not a readable safetensors file")


def test_bad_model_json(copy):
    (copy / "model.json").write_text('{"format": "recloop-artifact", ')
    refused(copy, "model.json", "invalid JSON")
    (copy / "model.json").write_text('{"format": "recloop-artifact", "format_version": 2, "model": "eas", '
                                     '"config": {}}')
    refused(copy, "model.json", "unknown model 'eas'")
    (copy / "model.json").write_text('{"format": "recloop-artifact", "format_version": 2, "model": "ease", '
                                     '"config": {"l3": 1}}')
    refused(copy, "model.json", "invalid ease config", "did you mean 'l2'")
    (copy / "model.json").write_bytes(b"\xff\xfe not utf-8")
    refused(copy, "model.json", "not UTF-8")


def test_bad_json_in_the_id_lists(copy):
    (copy / "users.json").write_text("[\"1\", \"2\"")
    refused(copy, "users.json", "invalid JSON")


def test_missing_state_file(copy):
    (copy / "state.safetensors").unlink()
    refused(copy, "state.safetensors is missing")


def test_missing_directory_and_header(tmp_path):
    refused(tmp_path / "nowhere", "no such directory")
    refused(tmp_path, "model.json is missing")


def test_artifact_errors_are_data_errors_and_one_line_in_the_cli(copy, capsys):
    assert issubclass(ArtifactError, DataError)
    (copy / "items.json").write_text("{not json")
    assert main(["recommend", str(copy), "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop: error:") and "items.json: invalid JSON" in err and "Traceback" not in err


def test_a_neural_artifact_with_fewer_item_ids_than_embeddings(synthetic, tmp_path):
    parts = leave_one_out(synthetic.interactions)
    model = SASRec(hidden=8, layers=1, heads=1, max_len=5,
                   train={"epochs": 1, "num_threads": 1, "progress": False})
    fit(model, synthetic, parts.train)
    path = model.save(tmp_path / "sasrec")
    assert load_model(path).n_items == synthetic.interactions.n_items
    header = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**header, "n_items": header["n_items"] - 1}))
    ids = json.loads((path / "items.json").read_text())
    (path / "items.json").write_text(json.dumps(ids[:-1]))
    history = load_file(str(path / "history.safetensors"))
    keep = history["item_idx"] < len(ids) - 1
    save_file({k: np.ascontiguousarray(v[keep]) for k, v in history.items()}, str(path / "history.safetensors"))
    refused(path, "state.safetensors", "do not make a sasrec model", f"{len(ids) - 1} items")


def test_a_version_1_neural_artifact_with_the_old_refit_switch_loads(synthetic, tmp_path):
    """Artifacts written before the refit became one experiment-level switch carry
    ``train.refit`` in their config; they load, and score as they did."""
    parts = leave_one_out(synthetic.interactions)
    model = SASRec(hidden=8, layers=1, heads=1, max_len=5, train={"epochs": 1, "num_threads": 1, "progress": False})
    fit(model, synthetic, parts.train)
    path = model.save(tmp_path / "sasrec")
    header = json.loads((path / "model.json").read_text())
    for key in ("state", "n_users", "n_items"):
        header.pop(key, None)
    header["config"]["train"]["refit"] = True
    (path / "model.json").write_text(json.dumps({**header, "format_version": 1}))
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.score([0, 1]), model.score([0, 1]), rtol=1e-5)
