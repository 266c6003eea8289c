"""The OpenAPI schema is true to the responses: checked by generating requests from it
(schemathesis, a bounded number per operation) and by hand for the error body; ``/docs``
works offline."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.serve.app import create_app
from recloop.serve.settings import ServeSettings

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 20  # per operation and mode: the whole module runs in about 15-30 s


@pytest.fixture(scope="module")
def app(synthetic_artifact, tmp_path_factory):
    serve_settings = ServeSettings(artifact=str(synthetic_artifact), db=str(tmp_path_factory.mktemp("api") / "e.db"))
    app = create_app(serve_settings, service_factory=fast_service)
    with TestClient(app):  # runs the lifespan: the service lives while the module's tests run
        yield app


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


OPERATIONS = [("POST", "/recommend"), ("GET", "/items/{item_id}/similar"), ("POST", "/events"), ("GET", "/items"),
              ("POST", "/items"), ("GET", "/features"), ("GET", "/items/{item_id}"), ("GET", "/health"),
              ("GET", "/metrics"), ("POST", "/admin/reload"), ("GET", "/online-report"),
              ("DELETE", "/users/{user_id}"), ("GET", "/users/{user_id}/data")]


def test_the_generated_tests_cover_every_operation(app):
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    assert sorted((m.upper(), p) for p, ms in paths.items() for m in ms) == sorted(OPERATIONS)


#: Operations with a body or constrained parameters: what invalid ("negative") requests can break.
NEGATABLE = {("POST", "/recommend"), ("GET", "/items/{item_id}/similar"), ("POST", "/events"), ("GET", "/items"),
             ("POST", "/items"), ("POST", "/admin/reload")}
CASES = [(m, p, "positive") for m, p in OPERATIONS] + [(m, p, "negative") for m, p in OPERATIONS if (m, p) in NEGATABLE]


@pytest.mark.parametrize("method, path, mode", CASES)
def test_every_operation_answers_as_its_schema_says(api_schema, method, path, mode):
    """No 5xx; every status code documented for its route; every body (errors included)
    valid against the documented model; for requests the schema allows ("positive") and
    requests it does not ("negative"). (Hypothesis driven directly rather than through
    schemathesis' pytest plugin, which does not run under this pytest version.)"""
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                       response_schema_conformance])

    check()


def test_errors_are_sent_as_documented(app):
    with TestClient(app) as client:  # (schemathesis' calls run the lifespan each: a fresh service here)
        _check_errors(client)


def _check_errors(client):
    from recloop.serve.schemas import ErrorResponse

    schema = client.get("/openapi.json").json()
    answers = {
        422: client.post("/recommend", content=b'{"user_id": "u1", "k": NaN}', headers={"content-type": "application/json"}),
        404: client.post("/recommend", json={"user_id": "nobody"}),
        409: client.post("/items", json={"item_id": "i1", "text": "exists"}),
        413: client.post("/events", content=b" " * 2_000_000, headers={"content-type": "application/json"}),
    }
    for status, answer in answers.items():
        assert answer.status_code == status
        body = answer.json()
        assert ErrorResponse.model_validate(body).model_dump(exclude_none=True) == body
        assert isinstance(body["detail"], str) and (("errors" in body) == (status == 422))
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's default, which we do not send


def test_schema_states_the_servers_limits(app):
    schema = TestClient(app).get("/openapi.json").json()
    limits = app.state.settings.limits
    request = schema["components"]["schemas"]["RecommendRequest"]
    assert request["properties"]["k"]["maximum"] == limits.max_k
    assert request["properties"]["exclude"]["maxItems"] == limits.max_list
    assert request["properties"]["items"]["anyOf"][0]["maxItems"] == limits.max_list
    assert [branch["required"] for branch in request["oneOf"]] == [["user_id"], ["items"]]  # user_id xor items
    assert schema["components"]["schemas"]["EventBatch"]["properties"]["events"]["maxItems"] == limits.max_batch
    assert schema["components"]["schemas"]["NewItemRequest"]["properties"]["text"]["maxLength"] == limits.max_text
    similar = schema["paths"]["/items/{item_id}/similar"]["get"]["parameters"]
    assert next(p for p in similar if p["name"] == "k")["schema"]["maximum"] == limits.max_k
    for path, methods in schema["paths"].items():  # every route documents the error body it can send
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    for path, method in [("/recommend", "post"), ("/events", "post"), ("/items", "post"), ("/admin/reload", "post")]:
        assert {"413", "422"} <= set(schema["paths"][path][method]["responses"]), (method, path)
    assert "400" in schema["paths"]["/recommend"]["post"]["responses"]


def test_docs_page_works_offline(app):
    """The Swagger UI page names only this server's own URLs, and each of them answers."""
    client = TestClient(app)
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text))
    urls |= set(re.findall(r"""url:\s*["']([^"']+)["']""", page.text))
    assert urls, page.text
    assert not [u for u in urls if re.match(r"^(https?:)?//", u)], urls  # no CDN, nothing remote
    for url in urls:
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 100, url
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls) and any(u.endswith(".css") for u in urls)
    assert "/openapi.json" in urls
    assert '"validatorUrl": null' in page.text  # no badge fetched from validator.swagger.io
