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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def missing(reason: str) -> None:
    """Skip, or fail in CI (``RECLOOP_REQUIRE_DATA=1``), like the root conftest."""
    if os.environ.get("RECLOOP_REQUIRE_DATA") == "1":
        pytest.fail(reason + " and RECLOOP_REQUIRE_DATA=1")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    done = subprocess.run([str(script), "start", str(data), str(free_port())], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        missing(f"could not start a throwaway PostgreSQL: {done.stderr.strip()}")
    try:
        yield done.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", str(data)], capture_output=True)
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
