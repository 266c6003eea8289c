"""The web layer: a FastAPI app around :class:`~recloop.serve.service.RecommendationService`.

``create_app(settings)`` builds the app; the model is loaded in the app's lifespan (not
at import), the settings and the service reach endpoints as dependencies
(``get_settings``, ``get_service``) that tests can override. ``recloop serve`` runs it
under uvicorn. Every endpoint and body is in the OpenAPI schema at ``/docs``.

Status codes: 404 unknown user or item id (the message names it), 409 an item id that
exists, 422 a malformed or out-of-limits request (the message names the field and the
limit; also an artifact ``/admin/reload`` cannot load, while the old model keeps
serving), 413 a body over ``limits.max_body_bytes``, 401 a missing or wrong API key on a
write or admin endpoint when one is configured, 400 another refusal of the library
(a :class:`~recloop.errors.RecloopError`), 503 the event store failed (the events were
not stored). Every one of them has the body of :class:`~recloop.serve.schemas.ErrorResponse`
and is documented per route in the OpenAPI schema, whose limits (``k <= max_k``, list
sizes, "``user_id`` or ``items``") are this server's settings. Bad input is never a 500:
the request's values are never echoed in a form JSON cannot encode.

``/docs`` (Swagger UI) works offline: its assets are served from the ``fastapi-offline``
package, not from a CDN.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as FastAPIPath
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from recloop import __version__
from recloop.errors import DataError, RecloopError, UnknownIdError
from recloop.serve.events import Event
from recloop.serve.impressions import new_request_id
from recloop.serve.metrics import MetricsMiddleware, ServeMetrics
from recloop.serve.online_report import DEFAULT_CLICK_TYPES
from recloop.serve.router import OnlineRouter, attribution
from recloop.serve.schemas import (
    ErrorResponse,
    EventBatch,
    EventIn,
    EventsBody,
    EventsResponse,
    ForgetResponse,
    HealthResponse,
    ItemInfo,
    NewItemRequest,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    SearchResponse,
    UserDataResponse,
)
from recloop.serve.service import InvalidRequestError, RecommendationService, RecommendResult
from recloop.serve.settings import ENV_VAR, Limits, ServeSettings
from recloop.serve.store import ItemExistsError
from recloop.utils import configure_threads

log = logging.getLogger("recloop.serve")
STATIC = Path(__file__).parent / "static"
API_KEY_HEADER = "X-API-Key"


# --- dependencies ---------------------------------------------------------------------------------
# ``async def``: FastAPI would run a plain ``def`` dependency in the thread pool, a thread
# hand-off per dependency per request for what is an attribute lookup.
async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


async def get_service(request: Request) -> RecommendationService:
    return request.app.state.service


async def get_metrics(request: Request) -> ServeMetrics:
    return request.app.state.metrics


_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="Needed by write and admin endpoints when the server has an API key.")


async def require_api_key(settings: Annotated[ServeSettings, Depends(get_settings)],
                    key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    if settings.api_key is None:
        return
    if key is None:
        raise HTTPException(401, f"this endpoint needs the API key in the {API_KEY_HEADER} header")
    if not secrets.compare_digest(key.encode(), settings.api_key.encode()):
        raise HTTPException(401, f"wrong API key in the {API_KEY_HEADER} header")


Service = Annotated[RecommendationService, Depends(get_service)]
Settings = Annotated[ServeSettings, Depends(get_settings)]
_ERROR_TEXT = {
    400: "A body that is not UTF-8 JSON, or a request the library refused (the message says why)",
    401: "Missing or wrong API key",
    404: "Unknown user or item id",
    409: "The item id exists",
    413: "Request body too large",
    422: "Malformed request or a limit exceeded (`errors` lists validation problems)",
    503: "The event store failed; nothing was stored",
}


def errors(*codes: int, **descriptions: str) -> dict:
    """OpenAPI ``responses`` for these status codes, all with the one error body."""
    return {code: {"model": ErrorResponse, "description": descriptions.get(f"s{code}", _ERROR_TEXT[code])}
            for code in codes}


def _response(result: RecommendResult, **extra) -> JSONResponse:
    """The answer as JSON, built directly: the hot path skips re-validating what the
    service produced against ``RecommendResponse`` (which still documents it)."""
    return JSONResponse({"items": [{"item_id": r.item_id, "score": r.score, "reasons": r.reasons, "title": r.title,
                                    "explored": r.explored} for r in result.items],
                         "source": result.source, "model": result.model, "generation": result.generation, **extra})


# --- routers --------------------------------------------------------------------------------------
recommendations = APIRouter(tags=["recommendations"])


@recommendations.post("/recommend", response_model=RecommendResponse, responses=errors(400, 404, 413, 422))
async def recommend(body: RecommendRequest, service: Service, request: Request) -> JSONResponse:
    """Top-k items for a user (training history plus every event stored so far) or for
    an anonymous list of recent items. Known items are never returned. The answer's
    ``request_id`` attributes later events to it; it is logged as an impression, by the
    experiment arm that gave it (``online`` settings)."""
    arguments = {"user_id": body.user_id, "items": body.items, "k": body.k, "exclude": body.exclude,
                 "filters": body.filters, "diversity": body.diversity, "explain": body.explain, "explore": body.explore,
                 "calibration": body.calibration, "exposure": body.exposure, "friends": body.friends}
    request_id = new_request_id()
    result, arm = await request.app.state.router.recommend(arguments, request_id)
    return _response(result, request_id=request_id, arm=arm)


async def _run(service: RecommendationService, function, **kwargs):
    """Answer in the event loop (about a millisecond of CPU: handing it to a thread and
    back costs two wake-ups, which on a busy machine cost more than the work), unless
    the state has slow one-off work pending (embedding the catalog's text), which goes
    to a thread so that the loop keeps serving."""
    if service.warm:
        return function(**kwargs)
    return await asyncio.to_thread(lambda: function(**kwargs))


@recommendations.get("/items/{item_id}/similar", response_model=RecommendResponse, responses=errors(400, 404, 422))
async def similar(item_id: str, service: Service, k: Annotated[int, Query(ge=1)] = 10, explain: bool = False,
                  diversity: Annotated[float | None, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = None
                  ) -> JSONResponse:
    """Items related to one item (including items added with ``POST /items``)."""
    return _response(await _run(service, service.similar, item_id=item_id, k=k, explain=explain,
                                diversity=diversity))


items = APIRouter(tags=["items"])


@items.get("/items", response_model=SearchResponse, responses=errors(400, 404, 422))
def search_items(service: Service, q: Annotated[str, Query(max_length=200)] = "",
                 limit: Annotated[int, Query(ge=1)] = 20,
                 user_id: Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"\S")] = None) -> dict:
    """Catalog items whose title contains ``q`` (case-insensitive). With ``user_id``, each
    item says whether that user already has it (``known``); an unknown user is a 404."""
    return {"items": service.search(q, limit, user_id)}


@items.get("/features", response_model=dict[str, list[str]])
def features(service: Service) -> dict:
    """The catalog's categorical item features and their values (what ``filters`` take)."""
    return service.features()


@items.get("/items/{item_id}", response_model=ItemInfo, responses=errors(404, 422))
def get_item(item_id: str, service: Service) -> dict:
    return service.item(item_id)


@items.post("/items", response_model=ItemInfo, status_code=201, responses=errors(400, 401, 409, 413, 422),
            dependencies=[Depends(require_api_key)])
def add_item(body: NewItemRequest, service: Service, settings: Settings) -> dict:
    """Add an item the model never saw. Its text is embedded at once; it is
    recommendable, and appears in ``/similar``, from the next request on."""
    limit = settings.limits.max_list
    if len(body.features) > limit:
        raise InvalidRequestError(f"features has {len(body.features)} names; the limit is {limit}")
    for name, values in body.features.items():
        if len(values) > limit:
            raise InvalidRequestError(f"features.{name} has {len(values)} values; the limit is {limit}")
    return service.add_item(body.item_id, body.text, body.features, body.title)


events = APIRouter(tags=["events"])


@events.post("/events", response_model=EventsResponse, responses=errors(400, 401, 404, 413, 422, 503),
             dependencies=[Depends(require_api_key)])
async def post_events(body: EventsBody, service: Service, request: Request,
                      metrics: Annotated[ServeMetrics, Depends(get_metrics)]) -> dict:
    """Store one event, a list, or ``{"events": [...]}``. The answer comes only after
    they are durably committed; the same user's next ``/recommend`` reflects them. An
    event with the ``request_id`` of a ``/recommend`` answer is also attributed to it."""
    raw = [body] if isinstance(body, EventIn) else body.events if isinstance(body, EventBatch) else body
    batch = [Event(e.user_id, e.item_id, e.type, e.value, e.unix_time(), e.event_id) for e in raw]
    try:
        future = service.submit_events(batch)  # checked before it is queued: never fails a neighbour's commit
    except DataError as error:
        if isinstance(error, ItemExistsError):
            raise
        raise InvalidRequestError(str(error)) from None
    linked = attribution(request.app.state.router, raw, batch)  # events naming the answer they came from
    try:
        new = await asyncio.wrap_future(future)
        if linked is not None:
            await asyncio.wrap_future(linked)
    except Exception as error:
        log.exception("event store write failed")
        raise HTTPException(503, f"the event store failed; the events were not stored: {error}") from None
    for event in batch:
        metrics.events.labels(event.type).inc()
    return {"accepted": len(batch), "new": new}


operations = APIRouter(tags=["operations"])


@operations.get("/health", response_model=HealthResponse)
def health(service: Service) -> dict:
    return service.health()


@operations.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics_endpoint(metrics: Annotated[ServeMetrics, Depends(get_metrics)]) -> Response:
    """Prometheus text format: requests by endpoint and status, latency histograms."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@operations.post("/admin/reload", response_model=ReloadResponse, responses=errors(
    400, 401, 413, 422, s422="The artifact cannot be loaded (the message says why); the old model keeps serving"),
    dependencies=[Depends(require_api_key)])
def reload(service: Service, metrics: Annotated[ServeMetrics, Depends(get_metrics)],
           body: ReloadRequest | None = None) -> dict | JSONResponse:
    """Swap in a new artifact (e.g. written by ``recloop retrain``) without dropping
    requests; every worker process on the same event store follows. An artifact that
    cannot be loaded (missing, truncated or inconsistent files) is a 422 naming the
    problem, and the model served so far keeps serving."""
    requested = body.artifact if body else None
    try:
        result = service.reload(requested)
    except Exception as error:  # any failure to load is the artifact's: say why, keep serving
        reason = str(error) if isinstance(error, RecloopError) else f"{type(error).__name__}: {error}"
        log.warning("reload of %s refused: %s", _shorten(str(requested)), _shorten(reason, 500),
                    exc_info=not isinstance(error, RecloopError))
        return _error(422, f"cannot load the artifact {_shorten(str(requested or service.state.path))}: "
                           f"{_shorten(reason, 1000)}; still serving {service.state.path}")
    metrics.reloads.inc()
    return result


@operations.get("/online-report", responses=errors(401, 422), dependencies=[Depends(require_api_key)])
async def online_report_endpoint(request: Request, types: str = ",".join(DEFAULT_CLICK_TYPES)) -> dict:
    """Per experiment arm: users, impressions, click-through rate with its interval,
    clicks at each position, and the significance test (``recloop online-report``)."""
    return await asyncio.to_thread(request.app.state.router.report, [t for t in types.split(",") if t.strip()])
users = APIRouter(tags=["users"])
UserId = Annotated[str, FastAPIPath(min_length=1, max_length=256, pattern=r"\S")]


@users.delete("/users/{user_id}", response_model=ForgetResponse, responses=errors(400, 401, 422),
              dependencies=[Depends(require_api_key)])
def forget_user(user_id: UserId, service: Service, request: Request) -> dict:
    """Erase a user (an admin endpoint: the API key when the server has one): their
    events are deleted from the store and scrubbed from its files, their live state is
    dropped, and the next `/recommend` for the id treats it as a new visitor (404 until
    it sends events). Every later `recloop retrain` leaves them out. An unknown id is not
    an error (nothing to delete). See docs/privacy.md."""
    log = request.app.state.router.log
    if log is None:
        return service.forget_user(user_id)
    log.flush()  # this process's queued impressions of the user are written first, then erased with the rest
    answer = service.forget_user(user_id)
    # Other workers commit what they had queued within `linger`: a second pass after it.
    time.sleep(2 * log.linger)
    late = log.erase_user(request.app.state.router.stored_user(user_id))
    if late:
        answer["deleted"]["queued_impressions"] = late
    return answer


@users.get("/users/{user_id}/data", response_model=UserDataResponse, responses=errors(400, 401, 422),
           dependencies=[Depends(require_api_key)])
def user_data(user_id: UserId, service: Service) -> dict:
    """Everything stored about a user, as JSON: their events in the store, the service's
    live state of them, and their training history in the served model. Guarded like
    `DELETE /users/{user_id}` (the API key when the server has one): the service does not
    authenticate end users, so the application in front of it asks on their behalf."""
    return service.user_data(user_id)


# --- errors ---------------------------------------------------------------------------------------
def _printable(text: str) -> str:
    """``text`` as UTF-8 can encode it: a lone surrogate becomes its escape (``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"


def _echo(value) -> str:
    """A request value, shown in a message: JSON text with everything escaped to ASCII
    (``NaN``, ``"\\ud800"``), cut to 80 characters."""
    try:
        text = json.dumps(jsonable_encoder(value), ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):  # a value jsonable_encoder cannot take is shown by its repr
        text = ascii(value)
    return text[:80]


def _error(status: int, message: str, problems: list | None = None) -> JSONResponse:
    body = {"detail": _printable(str(message))}
    if problems is not None:
        body["errors"] = problems
    return JSONResponse(body, status_code=status)


def _problem(item: dict) -> dict:
    """A pydantic error without its ``input`` and ``ctx`` (raw values, maybe not JSON)."""
    def clean(part):
        return part if isinstance(part, int) and not isinstance(part, bool) else _printable(str(part))

    return {"loc": [clean(p) for p in item.get("loc", ())], "msg": _printable(str(item.get("msg", "invalid"))),
            "type": _printable(str(item.get("type", "value_error")))}


_LOC_NOISE = ("body", "one", "batch", "list")


def _media_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownIdError)
    async def unknown_id(request, error):
        return _error(404, str(error))

    @app.exception_handler(ItemExistsError)
    async def item_exists(request, error):
        return _error(409, str(error))

    @app.exception_handler(InvalidRequestError)
    async def invalid(request, error):
        return _error(422, str(error))

    @app.exception_handler(RecloopError)
    async def recloop_error(request, error):
        return _error(400, str(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error):
        response = _error(error.status_code, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation(request, error):
        """One readable line per problem (``body.k: Input should be a valid integer
        (got true)``), plus the problems one by one under ``errors``. Values are shown
        escaped (``NaN``, ``"\\ud800"``): a raw one could make the answer itself fail.
        A body sent as something other than JSON is a 415 that says so: FastAPI reads
        such a body as a string, and "not a valid dictionary" would hide the cause."""
        media_type = _media_type(request)
        if request.method in ("POST", "PUT", "PATCH") and not _is_json(media_type):
            return _error(415, f"send the body as JSON with content-type: application/json "
                               f"(got {media_type or 'no content-type'})")
        problems = []
        for item in error.errors():
            # "body" and the union tags of POST /events ("one", "batch", "list") are noise to a reader
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in _LOC_NOISE) or "body"
            text = str(item.get("msg", "invalid"))
            value = item.get("input")
            if "input" in item and item.get("type") not in ("missing",) and not isinstance(value, dict):
                text += f" (got {_echo(value)})"
            problems.append(f"{where}: {text}")
        return _error(422, "; ".join(dict.fromkeys(problems)), [_problem(item) for item in error.errors()])


class BodyLimitMiddleware:
    """413 for bodies over the limit: by ``Content-Length`` before reading; a body
    without one (chunked) is read up to the limit first, then handed on."""

    def __init__(self, app, get_limit):
        self.app, self.get_limit = app, get_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.get_limit()
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        if length is not None:
            if length > limit:
                return await self._reject(send, limit)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                return await self._reject(send, limit)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send, limit: int) -> None:
        body = json.dumps({"detail": f"request body larger than the limit of {limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# --- the app --------------------------------------------------------------------------------------
def create_app(settings: ServeSettings, service_factory=None) -> FastAPI:
    """The FastAPI app serving ``settings.artifact``.

    ``service_factory(settings) -> RecommendationService`` is called in the lifespan
    (default: the class itself), so importing or creating the app loads nothing.
    """
    factory = service_factory or RecommendationService

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.torch_threads > 0:  # the wait policy came with the environment (recloop.cli.main)
            configure_threads(settings.torch_threads, wait_policy=None)
        service = await asyncio.to_thread(factory, app.state.settings)
        app.state.service = service
        app.state.router = await asyncio.to_thread(OnlineRouter, app.state.settings.online, service, factory)
        log.info("serving %s (%s, %d items)", app.state.settings.artifact, service.state.model.name,
                 len(service.state.catalog))
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.router.close)
            await asyncio.to_thread(service.close)

    app = FastAPI(title="recloop", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Live recommendations: recommend, record feedback events, add items, similar items. "
                              "Ids are the dataset's external ids as strings.")
    app.state.settings = settings
    app.openapi = lambda: _openapi(app)
    app.state.metrics = metrics = ServeMetrics()
    for router in (recommendations, events, items, operations, users):
        app.include_router(router)
    _install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_offline_docs(app)
    app.add_middleware(BodyLimitMiddleware, get_limit=lambda: app.state.settings.limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


DOCS_ASSETS = "/docs-assets"


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` from Swagger UI files shipped in a Python package (``fastapi-offline``),
    so the page works with no internet access; FastAPI's default loads them from a CDN."""
    try:
        import fastapi_offline
    except ImportError:  # not installed: say so at /docs rather than show a blank page
        log.warning("fastapi-offline is not installed: /docs needs the Swagger UI assets (pip install fastapi-offline)")

        @app.get("/docs", include_in_schema=False)
        def docs_missing() -> HTMLResponse:
            return HTMLResponse("<p>The API page needs the <code>fastapi-offline</code> package "
                                "(<code>pip install 'recloop[serve]'</code>); the schema is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        return
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png", oauth2_redirect_url=None,
                                   # No badge from validator.swagger.io: the page makes no outside request.
                                   swagger_ui_parameters={"validatorUrl": None})


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the limits this server enforces (``app.state.settings.limits``)
    and the rule "``user_id`` or ``items``, not both", so that generated clients and API
    testers know what the server accepts."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _state_limits(schema, app.state.settings.limits)
        app.openapi_schema = schema
    return app.openapi_schema


def _state_limits(schema: dict, limits: Limits) -> None:
    models = schema["components"]["schemas"]

    def arrays(node: dict):  # the array schemas of a property, through anyOf (optional fields)
        return [node] if node.get("type") == "array" else [n for n in node.get("anyOf", ()) if n.get("type") == "array"]

    def objects(node: dict):
        return [node] if node.get("type") == "object" else [n for n in node.get("anyOf", ()) if n.get("type") == "object"]

    recommend = models["RecommendRequest"]
    props = recommend["properties"]
    props["k"]["maximum"] = limits.max_k
    for name in ("items", "exclude", "friends"):
        for node in arrays(props[name]):
            node["maxItems"] = limits.max_list
    for node in objects(props["filters"]):
        node["maxProperties"] = limits.max_list
        for values in arrays(node.get("additionalProperties", {})):
            values["maxItems"] = limits.max_list
    recommend["oneOf"] = [
        {"required": ["user_id"], "properties": {"user_id": {"type": "string"}, "items": {"type": "null"}}},
        {"required": ["items"], "properties": {"items": {"type": "array"}, "user_id": {"type": "null"}}},
    ]
    recommend["description"] = (recommend.get("description", "") + " Give `user_id` or `items`, not both.").strip()
    models["EventBatch"]["properties"]["events"]["maxItems"] = limits.max_batch
    new_item = models["NewItemRequest"]["properties"]
    new_item["text"]["maxLength"] = limits.max_text
    new_item["features"]["maxProperties"] = limits.max_list
    for values in arrays(new_item["features"].get("additionalProperties", {})):
        values["maxItems"] = limits.max_list
    for path, method, name in [("/items/{item_id}/similar", "get", "k"), ("/items", "get", "limit")]:
        for parameter in schema["paths"][path][method].get("parameters", ()):
            if parameter["name"] == name:
                parameter["schema"]["maximum"] = limits.max_k
    body = schema["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for node in [body, *body.get("oneOf", ()), *body.get("anyOf", ())]:
        if node.get("type") == "array":
            node["maxItems"] = limits.max_batch


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: settings come as JSON in ``RECLOOP_SERVE_SETTINGS``."""
    text = os.environ.get(ENV_VAR)
    if not text:
        raise RuntimeError(f"{ENV_VAR} is not set; start the server with `recloop serve ARTIFACT`")
    return create_app(ServeSettings.from_json(text))
