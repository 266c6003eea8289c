"""Every process of a multi-worker ``recloop serve`` loads torch with the PASSIVE OpenMP
wait policy the CLI set (workers inherit it), so a busy neighbour does not make their
thread pools spin; GNU OpenMP reports what it read with ``OMP_DISPLAY_ENV=VERBOSE``."""

from __future__ import annotations

import re

import httpx
import pytest
from serve_helpers import free_port, start_server, stop_server, wait_healthy


@pytest.mark.slow
def test_every_worker_loads_torch_with_the_passive_wait_policy(synthetic_artifact, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_DISPLAY_ENV", "VERBOSE")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = start_server(synthetic_artifact, tmp_path / "events.db", port, "--workers", "2", log_path=log)
    try:
        wait_healthy(process, url)
        assert httpx.post(url + "/recommend", json={"user_id": "u1", "k": 3}).status_code == 200
    finally:
        stop_server(process)
    spins = re.findall(r"GOMP_SPINCOUNT = '(\d+)'", log.read_text())
    assert len(spins) >= 2 and set(spins) == {"0"}, spins  # both workers (and the parent, if it loads torch)
