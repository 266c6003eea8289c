"""Serve settings: one typed loader (TOML, flags, --set), a light import, the API key
from the environment, and a warning when exposed without a key."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recloop.cli import main
from recloop.errors import ConfigError
from recloop.serve.settings import (
    API_KEY_VAR,
    ENV_VAR,
    ServeSettings,
    exposure_warning,
    is_local_host,
    load_serve_settings,
)
from recloop.serve.store import default_db_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "serve.toml"


def test_importing_the_settings_loads_no_model_or_web_stack():
    code = ("import sys, recloop.serve.settings; "
            "print([m for m in ('torch', 'faiss', 'fastapi', 'uvicorn') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_example_config_file_flags_and_overrides_in_that_order(tmp_path):
    settings = load_serve_settings(EXAMPLE, ["retrieval.index=hnsw", "limits.max_k=50", "port=9000"],
                                   artifact="/models/x", port=8100, host=None)
    assert settings.artifact == "/models/x"  # the flag beats the file
    assert settings.port == 9000  # --set beats the flag
    assert settings.host == "127.0.0.1"  # a flag left unset keeps the file's value
    assert settings.retrieval.index == "hnsw" and settings.retrieval.exact_max_items == 50_000
    assert settings.limits.max_k == 50 and settings.limits.max_list == 500
    assert settings.policy.positive_types == ("click", "purchase")
    assert ServeSettings.from_json(settings.to_json(), environ={}) == settings


def test_config_errors_name_the_key_and_the_file(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text('artifact = "a"\n[retrieval]\nindx = "hnsw"\n')
    with pytest.raises(ConfigError, match=r"serve.toml: .*'retrieval.indx' \(did you mean 'index'"):
        load_serve_settings(path)
    with pytest.raises(ConfigError, match="index must be one of"):
        load_serve_settings(None, ["retrieval.index=annoy"], artifact="a")
    with pytest.raises(ConfigError, match="need an artifact"):
        load_serve_settings(None, [])


def test_api_key_from_the_environment_in_the_worker_path():
    text = ServeSettings(artifact="a").to_json()  # what `recloop serve` hands each worker
    assert ServeSettings.from_json(text, environ={API_KEY_VAR: "s3cret"}).api_key == "s3cret"
    assert ServeSettings.from_json(text, environ={}).api_key is None
    keyed = ServeSettings(artifact="a", api_key="given").to_json()
    assert ServeSettings.from_json(keyed, environ={API_KEY_VAR: "other"}).api_key == "given"


def test_exposure_warning_only_for_a_non_local_host_without_a_key():
    assert is_local_host("127.0.0.1") and is_local_host("::1") and is_local_host("localhost")
    assert not is_local_host("0.0.0.0") and not is_local_host("example.org")
    assert exposure_warning(ServeSettings(artifact="a")) is None
    assert exposure_warning(ServeSettings(artifact="a", host="0.0.0.0", api_key="k")) is None
    assert API_KEY_VAR in exposure_warning(ServeSettings(artifact="a", host="0.0.0.0"))


def test_service_logs_the_exposure_warning(make_service, synthetic_artifact, caplog):
    with caplog.at_level(logging.WARNING, logger="recloop.serve"):
        make_service(synthetic_artifact, host="0.0.0.0")
    assert any("without an API key" in r.getMessage() for r in caplog.records)


@pytest.fixture
def fake_uvicorn(monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    for name in (ENV_VAR, API_KEY_VAR):  # recorded, so that what `serve` sets is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return calls


def test_cli_serve_reads_the_config_through_the_typed_loader(synthetic_artifact, fake_uvicorn, capsys, monkeypatch,
                                                             tmp_path):
    monkeypatch.setenv("RECLOOP_HOME", str(tmp_path))  # the example config leaves db to the default
    code = main(["serve", str(synthetic_artifact), "--config", str(EXAMPLE), "--set", "retrieval.index=exact",
                 "--rerank.diversity=0.3", "--port", "9001", "--host", "0.0.0.0"])
    assert code == 0
    settings = ServeSettings.from_json(os.environ[ENV_VAR], environ={})
    assert settings.artifact == str(Path(synthetic_artifact).resolve())
    assert settings.retrieval.index == "exact" and settings.rerank.diversity == 0.3
    assert settings.db == str(default_db_path(synthetic_artifact)) and settings.api_key is None
    assert Path(settings.db).is_relative_to(tmp_path / "events")
    assert fake_uvicorn[0]["port"] == 9001 and fake_uvicorn[0]["host"] == "0.0.0.0"
    assert "without an API key" in capsys.readouterr().err
    monkeypatch.setenv(API_KEY_VAR, "from-env")  # the key never needs a command-line flag
    assert main(["serve", str(synthetic_artifact), "--host", "0.0.0.0"]) == 0
    assert json.loads(os.environ[ENV_VAR])["api_key"] == "from-env"
    assert "without an API key" not in capsys.readouterr().err
    assert main(["serve", str(synthetic_artifact), "--set", "retrieval.indx=hnsw"]) == 2
    assert "did you mean 'index'" in capsys.readouterr().err


def test_serve_help_states_the_exact_search_limit_the_code_uses(capsys):
    from recloop.rank.index import RetrievalConfig

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert f"retrieval.exact_max_items = {RetrievalConfig().exact_max_items}" in text
    assert f"({RetrievalConfig().exact_max_items:,}) items" in text and "100k" not in text


def test_retrain_refuses_a_store_that_does_not_exist_and_a_bad_reload_url(synthetic_artifact, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setenv("RECLOOP_HOME", str(tmp_path / "home"))
    missing = tmp_path / "typo" / "events.db"
    assert main(["retrain", str(synthetic_artifact), "--db", str(missing), "--output", str(tmp_path / "out")]) == 2
    assert f"no event store at {missing}" in capsys.readouterr().err
    assert not missing.parent.exists() and not (tmp_path / "out").exists()  # nothing created, nothing written
    assert main(["retrain", str(synthetic_artifact), "--output", str(tmp_path / "out")]) == 2  # default: not served yet
    assert "no event store at" in capsys.readouterr().err
    assert main(["retrain", str(synthetic_artifact), "--output", str(tmp_path / "out"), "--reload", "notaurl"]) == 2
    assert "--reload takes the service's URL" in capsys.readouterr().err
