"""Bad input against a real ``recloop serve`` process: each answer is a 4xx, and the
client's keep-alive connection stays open and usable for the next request."""

from __future__ import annotations

import http.client
import json
import shutil

import pytest
from serve_helpers import free_port, start_server, stop_server, wait_healthy

BAD = [
    ("/recommend", '{"user_id": "u1", "k": NaN}'),
    ("/recommend", '{"user_id": "u1", "k": Infinity}'),
    ("/recommend", '{"user_id": "u1", "k": 1e400}'),
    ("/recommend", '{"user_id": "u1", "diversity": -Infinity}'),
    ("/recommend", '{"user_id": "\\ud800"}'),
    ("/recommend", '{"user_id": "u1", "\\ud800": 1}'),
    ("/recommend", '{"user_id": "u1", "k": true}'),
    ("/events", '{"user_id": "u1", "item_id": "i1", "type": "click", "time": NaN}'),
    ("/events", '{"user_id": "u1", "item_id": "i1", "type": "click", "time": "nan"}'),
    ("/events", '{"user_id": "u1", "item_id": "i1", "type": "click", "time": 1e300}'),
    ("/events", '{"user_id": "u1", "item_id": "i1", "type": "click", "time": "0001-01-01T00:00:00"}'),
    ("/events", '{"user_id": "u1", "item_id": "i1", "type": "rate", "value": 1e308}'),
    ("/events", '{"user_id": "\\ud800", "item_id": "i1", "type": "click"}'),
    ("/items", '{"item_id": "new", "text": "\\ud800"}'),
    ("/items", '{"item_id": "new", "text": NaN}'),
    ("/admin/reload", json.dumps({"artifact": "x" * 5000})),
    ("/admin/reload", json.dumps({"artifact": "/tmp/" + "y" * 300})),
]


@pytest.mark.slow
def test_bad_input_gets_4xx_and_the_connection_stays_usable(synthetic_artifact, tmp_path):
    port = free_port()
    process = start_server(synthetic_artifact, tmp_path / "events.db", port, log_path=tmp_path / "server.log")
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        connection.request("GET", "/health")
        connection.getresponse().read()
        socket = connection.sock
        for path, body in BAD:
            connection.request("POST", path, body=body.encode("ascii"), headers=headers)
            answer = connection.getresponse()
            text = answer.read()
            assert answer.status == 422, (path, body, answer.status, text[:300])
            assert json.loads(text)["detail"]  # valid JSON with a reason
            assert answer.getheader("connection") != "close"
            connection.request("POST", "/recommend", body=b'{"user_id": "u3", "k": 2}', headers=headers)
            follow = connection.getresponse()
            assert follow.status == 200 and len(json.loads(follow.read())["items"]) == 2
            assert connection.sock is socket, f"the connection was dropped after {path} {body}"

        broken = tmp_path / "broken"
        shutil.copytree(synthetic_artifact, broken)
        state = broken / "state.safetensors"
        state.write_bytes(state.read_bytes()[:100])
        connection.request("POST", "/admin/reload", body=json.dumps({"artifact": str(broken)}).encode(), headers=headers)
        answer = connection.getresponse()
        assert answer.status == 422 and "still serving" in json.loads(answer.read())["detail"]
        connection.request("GET", "/health")
        assert json.loads(connection.getresponse().read())["artifact"] == str(synthetic_artifact)
        connection.close()
    finally:
        stop_server(process)
    log = (tmp_path / "server.log").read_text()
    assert "Exception in ASGI application" not in log, log[-3000:]  # uvicorn's mark of an unhandled error
