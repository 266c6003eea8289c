"""Fixtures for the serving tests: event stores on both backends, small artifacts, and a
real server process.

PostgreSQL: ``RECLOOP_TEST_POSTGRES_URL`` names an existing server (CI may start one
with ``scripts/start-postgres.sh``); otherwise a throwaway server is started in a temp
dir for the session with the same script. Without PostgreSQL the Postgres cases skip,
or fail under ``RECLOOP_REQUIRE_DATA=1`` (CI).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from serve_helpers import fast_service, free_port, hashing_embedder, missing

ROOT = Path(__file__).resolve().parents[2]


def _postgres_available() -> bool:
    return shutil.which("pg_ctl") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server's maintenance database (``postgres``)."""
    url = os.environ.get("RECLOOP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not _postgres_available():
        missing("PostgreSQL is not installed (apt-get install postgresql) and RECLOOP_TEST_POSTGRES_URL is unset")
    pytest.importorskip("psycopg")
    base = Path(tempfile.mkdtemp(prefix="recloop-pg-"))
    base.chmod(0o755)  # the server runs as user postgres when the tests run as root
    data = base / "data"
    script = ROOT / "scripts" / "start-postgres.sh"
    done = subprocess.run([str(script), "start", str(data), str(free_port())], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        missing(f"could not start a throwaway PostgreSQL: {done.stderr.strip()}")
    try:
        yield done.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", str(data)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


_database_numbers = itertools.count()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"recloop_test_{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """An empty event store URL on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "events.db")
    return request.getfixturevalue("postgres_url")


# --- artifacts and services ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_artifact(tmp_path_factory):
    """EASE on a small synthetic log with titles and a genre feature (120 items, 300 users)."""
    from recloop.data import SyntheticConfig, generate
    from recloop.models import EASE

    data = generate(SyntheticConfig(n_users=300, n_items=120, n_clusters=6, mean_interactions=15, seed=1))
    model = EASE(l2=50.0).fit(data.interactions, item_features=data.item_features)
    return model.save(tmp_path_factory.mktemp("artifacts") / "synthetic-ease")


@pytest.fixture(scope="session")
def ml100k_artifact(tmp_path_factory):
    """EASE (l2 500) on all of ml-100k, with titles and genres: the browser test's model."""
    from recloop.data import load_dataset
    from recloop.models import EASE

    data_dir = Path(os.environ.get("RECLOOP_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    if not (data_dir / "ml-100k").exists():
        missing(f"dataset ml-100k not found under {data_dir} (set RECLOOP_DATA_DIR)")
    data = load_dataset("ml-100k", data_dir=data_dir, download=False)
    model = EASE(l2=500.0).fit(data.interactions, item_features=data.item_features,
                               user_features=data.user_features)
    return model.save(tmp_path_factory.mktemp("artifacts") / "ml100k-ease")


@pytest.fixture
def make_service(tmp_path):
    """``make_service(artifact, db=None, **settings)``: a RecommendationService with the
    hashing embedder, closed after the test."""
    from recloop.serve.service import RecommendationService
    from recloop.serve.settings import ServeSettings

    services = []

    def make(artifact, db=None, **options):
        settings = ServeSettings(artifact=str(artifact), db=str(db or tmp_path / "events.db"), **options)
        service = RecommendationService(settings, embedder_factory=lambda: hashing_embedder)
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


@pytest.fixture
def client(synthetic_artifact, tmp_path):
    """A TestClient of the app serving the synthetic artifact (a test file may define its own)."""
    from fastapi.testclient import TestClient

    from recloop.serve.app import create_app
    from recloop.serve.settings import ServeSettings

    settings = ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path / "events.db"))
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        yield client
