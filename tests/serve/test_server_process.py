"""A real multi-worker server: retrain from its event log, reload through the CLI, every
worker follows; metrics add up across worker processes."""

from __future__ import annotations

import time

import httpx
import pytest
from serve_helpers import free_port, start_server, stop_server, wait_healthy

from recloop.cli import main


@pytest.mark.slow
def test_retrain_and_reload_a_running_two_worker_server(synthetic_artifact, tmp_path, capsys):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "events.db"
    process = start_server(synthetic_artifact, db, port, "--workers", "2", "--api-key", "k3y",
                           log_path=tmp_path / "server.log")
    try:
        wait_healthy(process, url)
        headers = {"X-API-Key": "k3y"}
        assert httpx.post(url + "/events", json={"user_id": "x", "item_id": "i1", "type": "click"}).status_code == 401
        events = [{"user_id": f"fresh{n}", "item_id": f"i{n}", "type": "click"} for n in range(1, 30)]
        assert httpx.post(url + "/events", json=events, headers=headers).json() == {"accepted": 29, "new": 29}
        # Whichever worker answers, it has seen the events (read-your-writes across processes).
        for n in range(1, 10):
            answer = httpx.post(url + "/recommend", json={"user_id": f"fresh{n}", "k": 3})
            assert answer.status_code == 200 and f"i{n}" not in [r["item_id"] for r in answer.json()["items"]]

        output = tmp_path / "retrained"
        code = main(["retrain", str(synthetic_artifact), "--db", str(db), "--output", str(output),
                     "--reload", url, "--api-key", "k3y"])
        assert code == 0
        err = capsys.readouterr().err
        assert "folded 29 positive events of 29 (29 new users" in err and "generation 1" in err

        deadline = time.monotonic() + 60
        seen = set()
        while time.monotonic() < deadline:  # both workers report the new model
            health = httpx.get(url + "/health").json()
            seen.add((health["generation"], health["artifact"]))
            generations = {httpx.get(url + "/health").json()["generation"] for _ in range(8)}
            if generations == {1}:
                break
            time.sleep(0.3)
        assert generations == {1}
        health = httpx.get(url + "/health").json()
        assert health["artifact"] == str(output) and health["users"] == 300 + 29 and health["live_users"] == 0

        for _ in range(6):
            httpx.post(url + "/recommend", json={"user_id": "fresh1", "k": 3})
        metrics = httpx.get(url + "/metrics").text
        line = next(row for row in metrics.splitlines()
                    if row.startswith('recloop_http_requests_total{endpoint="/recommend",method="POST",status="200"}'))
        assert float(line.split()[-1]) >= 15  # summed over both workers
    finally:
        stop_server(process)
