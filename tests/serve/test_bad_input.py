"""Bad input at the HTTP edge: a 4xx naming the problem, never a 500, never a neighbour's failure.

Bodies are sent as raw bytes: ``NaN``, ``Infinity`` and ``1e400`` are tokens Python's
``json`` module reads (the server's parser included) but no strict client writes, and a
lone surrogate arrives as the JSON escape ``"\\ud800"``.
"""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.serve.app import create_app
from recloop.serve.settings import ServeSettings


def raw(client: TestClient, path: str, text: str):
    return client.post(path, content=text.encode("ascii"), headers={"content-type": "application/json"})


def event(**fields) -> str:
    """An event as JSON text; a field given as ``str`` starting with ``=`` is a raw token."""
    base = {"user_id": "u1", "item_id": "i1", "type": "click", **fields}
    parts = [f'"{k}": {v[1:] if isinstance(v, str) and v.startswith("=") else json.dumps(v)}' for k, v in base.items()]
    return "{" + ", ".join(parts) + "}"


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]

RECOMMEND_CASES = (
    [(f'{{"user_id": "u1", "k": {token}}}', "k") for token in NON_FINITE]
    + [(f'{{"user_id": "u1", "diversity": {token}}}', "diversity") for token in NON_FINITE]
    + [('{"user_id": "\\ud800"}', "user_id"),
       ('{"user_id": "a\\udfffb", "k": 3}', "user_id"),
       ('{"items": ["i1", "\\ud800"]}', "items.1"),
       ('{"user_id": "u1", "exclude": ["\\ud800"]}', "exclude.0"),
       ('{"user_id": "u1", "filters": {"\\ud800": ["x"]}}', "filters"),
       ('{"user_id": "u1", "\\ud800": 1}', "ud800"),  # an unknown field named by a lone surrogate
       ('{"user_id": "u1", "k": true}', "k"),
       ('{"user_id": "u1", "k": 2.5}', "k"),
       ('{"user_id": "u1", "explain": "yes"}', "explain"),
       ('{"user_id": "u1", "diversity": true}', "diversity"),
       ('{"user_id": ""}', "user_id"),
       ('{"user_id": "   "}', "user_id"),
       ('{"items": [" "]}', "items.0")]
)


@pytest.mark.parametrize("body, field", RECOMMEND_CASES)
def test_recommend_rejects_non_finite_numbers_surrogates_and_lax_types(client, body, field):
    answer = raw(client, "/recommend", body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert field in detail, detail
    assert all(set(problem) == {"loc", "msg", "type"} for problem in answer.json()["errors"])  # no raw input echoed
    # The connection and the service are fine: the next request is answered.
    assert client.post("/recommend", json={"user_id": "u3", "k": 2}).status_code == 200


EVENT_CASES = (
    [(event(time=f"={token}"), "time") for token in NON_FINITE]
    + [(event(time="nan"), "time"), (event(time="inf"), "time"), (event(time="=1e300"), "time"),
       (event(time="=-1e308"), "time"), (event(time="=-1"), "time"), (event(time="0001-01-01T00:00:00"), "time"),
       (event(time="9999-12-31T23:59:59"), "time"), (event(time="=true"), "time")]
    + [(event(type="rate", value=f"={token}"), "value") for token in NON_FINITE]
    + [(event(type="rate", value="=1e308"), "value"), (event(type="rate", value="=-1e39"), "value"),
       ('{"user_id": "\\ud800", "item_id": "i1", "type": "click"}', "user_id"),
       ('{"user_id": "u1", "item_id": "\\ud800", "type": "click"}', "item_id"),
       ('{"user_id": "u1", "item_id": "i1", "type": "click", "event_id": "\\ud800"}', "event_id"),
       ('{"user_id": " ", "item_id": "i1", "type": "click"}', "user_id"),
       ('[{"user_id": "u1", "item_id": "i1", "type": "click", "time": NaN}]', "time"),
       ('{"events": [{"user_id": "u1", "item_id": "i1", "type": "click", "time": Infinity}]}', "time")]
)


@pytest.mark.parametrize("body, field", EVENT_CASES)
def test_events_reject_bad_times_values_and_ids(client, body, field):
    answer = raw(client, "/events", body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert field in detail, detail
    reason = {"time": ("from 1970-01-01 to before 3000-01-01", "Unix seconds or an ISO 8601 date"),
              "value": ("finite and within float32 range",)}.get(field, ("",))
    assert any(r in detail for r in reason), detail  # the reason, not only the field
    assert client.app.state.service.store.count() == 0
    assert client.post("/events", json={"user_id": "u1", "item_id": "i1", "type": "click"}).status_code == 200


def test_sane_event_times_are_stored_as_given(client):
    bodies = [event(time="=0"), event(time="2024-05-01T12:00:00"), event(time="2024-05-01T14:00:00+02:00"),
              event(time="=32503679999"), event(type="rate", value="=-3.4e38")]
    for body in bodies:
        assert raw(client, "/events", body).status_code == 200, body
    times = [e.time for e in client.app.state.service.store.events_after(0)]
    assert times[:4] == [0.0, 1714564800.0, 1714564800.0, 32503679999.0]  # a date without a zone is UTC


ITEM_CASES = [
    ('{"item_id": "new", "text": "\\ud800 space"}', "text"),
    ('{"item_id": "\\ud800", "text": "space"}', "item_id"),
    ('{"item_id": "new", "text": "space", "title": "\\udc00"}', "title"),
    ('{"item_id": "new", "text": "space", "features": {"genre": ["\\ud800"]}}', "features.genre.0"),
    ('{"item_id": "new", "text": "   "}', "text"),
    ('{"item_id": " ", "text": "space"}', "item_id"),
    ('{"item_id": "new", "text": NaN}', "text"),
    ('{"item_id": "new", "text": "space", "features": {"genre": "space"}}', "features.genre"),
]


@pytest.mark.parametrize("body, field", ITEM_CASES)
def test_new_items_reject_surrogates_and_blanks(client, body, field):
    answer = raw(client, "/items", body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]
    assert client.post("/items", json={"item_id": "ok", "text": "space rocket"}).status_code == 201


def test_new_item_feature_lists_are_bounded_by_the_settings(synthetic_artifact, tmp_path):
    from recloop.serve.settings import Limits

    settings = ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path / "e.db"), limits=Limits(max_list=3))
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        many_values = client.post("/items", json={"item_id": "a", "text": "t", "features": {"genre": ["space"] * 4}})
        assert many_values.status_code == 422 and "features.genre has 4 values; the limit is 3" in many_values.json()["detail"]
        many_names = client.post("/items", json={"item_id": "a", "text": "t",
                                                 "features": {f"f{i}": ["x"] for i in range(4)}})
        assert many_names.status_code == 422 and "features has 4 names; the limit is 3" in many_names.json()["detail"]
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        features = schema["NewItemRequest"]["properties"]["features"]
        assert features["maxProperties"] == 3 and features["additionalProperties"]["maxItems"] == 3
        assert schema["RecommendRequest"]["properties"]["exclude"]["maxItems"] == 3


@pytest.mark.parametrize("query", ["diversity=NaN", "diversity=inf", "diversity=-Infinity", "k=1e400", "k=NaN",
                                   "k=true", "diversity=1e400"])
def test_similar_rejects_non_finite_query_values(client, query):
    answer = client.get(f"/items/i1/similar?{query}")
    assert answer.status_code == 422, answer.text
    assert query.split("=")[0] in answer.json()["detail"]


def test_a_bad_client_never_fails_the_good_clients_events(client):
    """Eight clients send valid events while one sends bad ones as fast as it can: every
    good event is stored (group commits shared with the bad client included), every bad
    one is refused with 422."""
    statuses: dict[str, list[int]] = {"good": [], "bad": []}
    bad_bodies = [event(user_id="evil", time="=NaN"), event(user_id="evil", time="nan"),
                  event(user_id="evil", time="=Infinity"), event(user_id="evil", time="=1e300"),
                  event(user_id="evil", time="=-1e308"), event(user_id="evil", time="0001-01-01T00:00:00"),
                  event(user_id="evil", type="rate", value="=1e308")]
    done = threading.Event()

    def good(n: int):
        for i in range(25):
            answer = client.post("/events", json=[{"user_id": f"good{n}", "item_id": f"i{i}", "type": "click",
                                                   "event_id": f"{n}-{i}"}])
            statuses["good"].append(answer.status_code)

    def bad():
        while not done.is_set():
            for body in bad_bodies:
                statuses["bad"].append(raw(client, "/events", body).status_code)

    threads = [threading.Thread(target=good, args=(n,)) for n in range(8)]
    spoiler = threading.Thread(target=bad)
    spoiler.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    spoiler.join()
    assert statuses["good"] == [200] * 200
    assert statuses["bad"] and set(statuses["bad"]) == {422}
    stored = client.app.state.service.store.events_after(0, limit=10_000)
    assert len(stored) == 200 and not [e for e in stored if e.user_id == "evil"]


@pytest.mark.parametrize("body", ['{"user_id": NaN}', '{"user_id": Infinity}', '{"items": [NaN]}'])
def test_a_number_id_must_be_finite(client, body):
    answer = raw(client, "/recommend", body)
    assert answer.status_code == 422 and "finite number" in answer.json()["detail"]
    assert client.post("/recommend", json={"user_id": 3, "k": 1}).status_code in (200, 404)  # numbers are ids


@pytest.mark.parametrize("headers", [{}, {"content-type": "text/plain"},
                                     {"content-type": "application/x-www-form-urlencoded"}])
def test_a_body_that_is_not_declared_json_is_a_415_naming_the_content_type(client, headers):
    answer = client.post("/recommend", content=b'{"user_id": "u1", "k": 3}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert "content-type: application/json" in answer.json()["detail"]
    assert (headers.get("content-type") or "no content-type") in answer.json()["detail"]
    # Declared JSON, with a charset, is read as before.
    ok = client.post("/recommend", content=b'{"user_id": "u1", "k": 3}',
                     headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text
