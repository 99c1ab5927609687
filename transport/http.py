"""GraphQL over HTTP: POST and GET on /graphql, GraphiQL for browsers, the API key checked
before anything is executed, status codes and media types per the GraphQL over HTTP spec,
persisted documents, a time limit per request, and a request id on every response and on
every log line about the request."""

import asyncio
import itertools
import logging
import os
import re
from functools import lru_cache

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from sessiongraph.explorer import Explorer
from sessiongraph.gate.auth import authenticate, key_from_headers
from sessiongraph.gate.persisted import PersistedDocuments, PersistedQueryError
from sessiongraph.planner.extension import execute_planned
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.schema.errors import INTERNAL_MESSAGE, current_request_id

log = logging.getLogger("sessiongraph.transport.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
# A client's X-Request-Id is kept when it is this plain (it goes into log lines); else a new one.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# New request ids: 32 hex digits, a random half per process and a count, unique without a
# call into the kernel's random source per request.
_ID_PREFIX = os.urandom(8).hex()
_request_numbers = itertools.count()
# What each method may run: mutations only over POST.
ALLOWED = {"GET": frozenset({OperationType.QUERY}), "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_request_numbers):016x}"


class RequestError(Exception):
    """A request refused before execution. `graphql_error`: a GraphQL request error, whose
    status follows the media type (400 for graphql-response+json, 200 for json); else an
    HTTP-level error with its own status."""

    def __init__(self, status: int, message: str, code: str = "BAD_REQUEST", headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def _media_ranges(accept: str) -> dict[str, float]:
    ranges = {}
    for part in accept.split(","):
        media_type, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type:
            ranges[media_type.lower()] = max(quality, ranges.get(media_type.lower(), 0.0))
    return ranges


def response_media_type(headers: dict) -> str | None:
    return _media_type_for(headers.get("accept", ""))


@lru_cache(maxsize=256)
def _media_type_for(accept: str) -> str | None:
    """graphql-response+json when the client asks for it (and prefers it at least as much as
    json), application/json for json, */* or no Accept at all; None when it accepts neither.
    Clients send a handful of distinct Accept headers: each is read once."""
    accept = accept.strip()
    if not accept:
        return JSON
    ranges = _media_ranges(accept)
    wanted = ranges.get(GRAPHQL_RESPONSE, 0.0)
    plain = max(ranges.get(JSON, 0.0), ranges.get("application/*", 0.0), ranges.get("*/*", 0.0))
    if wanted > 0 and wanted >= plain:
        return GRAPHQL_RESPONSE
    return JSON if plain > 0 else None


def wants_graphiql(request: Request, headers: dict) -> bool:
    accept = headers.get("accept", "")
    return "text/html" in accept and "query" not in request.query_params


def header_values(scope) -> dict[str, str]:
    """The request's headers by lower-case name, read once (the first of repeated ones, as
    Starlette's `Headers.get` gives)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in reversed(scope["headers"])}


async def read_body(receive, max_body: int) -> bytes:
    """The whole body, refused (413) as soon as it is larger than `max_body`."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        body = body + chunk if body else chunk
        if len(body) > max_body:
            raise RequestError(413, f"The request body is larger than {max_body} bytes.")
        if not message.get("more_body", False):
            return body


async def read_params(request: Request | None, receive, headers: dict, max_body: int) -> dict:
    """The request's parameters: `request` for a GET (its query string), else the body."""
    if request is not None:
        params = dict(request.query_params)
        for name in ("variables", "extensions"):
            if params.get(name):
                try:
                    params[name] = orjson.loads(params[name])
                except orjson.JSONDecodeError:
                    raise RequestError(400, f"`{name}` is not valid JSON.") from None
        return params
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON:
        raise RequestError(415, "POST bodies must be application/json.")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise RequestError(413, f"The request body is larger than {max_body} bytes.")
    body = await read_body(receive, max_body)
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return params


def check_params(params: dict) -> None:
    query = params.get("query")
    persisted = isinstance(params.get("extensions"), dict) and "persistedQuery" in params["extensions"]
    if not (isinstance(query, str) and query) and not (persisted and query is None):
        raise RequestError(400, "`query` must be a non-empty string.")
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        raise RequestError(400, "`operationName` must be a string.")
    for name in ("variables", "extensions"):
        if params.get(name) is not None and not isinstance(params[name], dict):
            raise RequestError(400, f"`{name}` must be an object.")


def error_body(message: str, code: str) -> dict:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def is_request_error(result) -> bool:
    """Nothing was executed (parse, validation, limits, variable coercion): no `data` entry.
    Every error raised while executing carries the path of its field."""
    return result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)


class JSONResponse:
    """A JSON body sent as two ASGI messages, with the headers Starlette's Response would send
    (in its order): the caller's, content-length, content-type; then the request id."""

    __slots__ = ("body", "status", "headers", "media_type")

    def __init__(self, body: bytes, status: int, headers: dict | None, media_type: str) -> None:
        self.body, self.status, self.headers, self.media_type = body, status, headers, media_type

    async def send(self, send, request_id: str) -> None:
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()] if self.headers else []
        headers += ((b"content-length", b"%d" % len(self.body)), (b"content-type", _MEDIA_TYPES[self.media_type]))
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


_MEDIA_TYPES = {GRAPHQL_RESPONSE: GRAPHQL_RESPONSE.encode(), JSON: JSON.encode()}


class Deadlines:
    """The time limit of the requests running, kept by one timer that looks at them every
    `tick` seconds instead of a timer per request (`asyncio.timeout` costs about 5 us a
    request under uvloop: a tenth of a small query). A request is stopped between `seconds`
    and `seconds + tick` after it started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(1.0, max(0.01, seconds / 10))
        self._running: dict[asyncio.Task, float] = {}  # all deadlines `seconds` on: in their order
        self._stopped: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = None  # the timer's

    def start(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        self._running[task] = loop.time() + self.seconds
        if self._timer is None or self._loop is not loop:  # none yet, or on a loop now gone
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def end(self, task: asyncio.Task) -> bool:
        """Whether the task was stopped (cancelled) for running past its time."""
        self._running.pop(task, None)
        if task in self._stopped:
            self._stopped.discard(task)
            return True
        return False

    def _sweep(self, loop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        late = []
        for task, deadline in self._running.items():
            if deadline > now:
                break
            late.append(task)
        for task in late:
            del self._running[task]
            self._stopped.add(task)
            task.cancel()
        self._timer = loop.call_later(self.tick, self._sweep, loop) if self._running else None


class GraphQLEndpoint:
    def __init__(self, schema, engine, settings, persisted: PersistedDocuments) -> None:
        self.schema, self.engine, self.settings, self.persisted = schema, engine, settings, persisted
        self.deadlines = Deadlines(settings.request_timeout)
        self.explorer = Explorer("/graphql", settings.demo_key)

    async def __call__(self, scope, receive, send) -> None:
        headers = header_values(scope)
        supplied = headers.get("x-request-id")
        request_id = supplied if supplied and REQUEST_ID.fullmatch(supplied) else new_request_id()
        token = current_request_id.set(request_id)
        try:
            try:
                response = await self.handle(scope, receive, headers)
            except Exception:  # the last resort: the client learns nothing of it, the log everything
                log.exception("request %s failed", request_id)
                response = self.respond(error_body(INTERNAL_MESSAGE, "INTERNAL_SERVER_ERROR"), JSON, 500)
            # Sent with the request id still set: the access log line (written as the response
            # starts) carries it too.
            if isinstance(response, JSONResponse):
                await response.send(send, request_id)
            else:
                response.headers["X-Request-Id"] = request_id
                await response(scope, receive, send)
        finally:
            current_request_id.reset(token)

    @staticmethod
    def respond(body: dict, media_type: str, status: int = 200, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(orjson.dumps(body), status, headers, media_type)

    async def handle(self, scope, receive, headers: dict) -> Response | JSONResponse:
        method = scope["method"]
        if method not in ("GET", "POST"):
            return self.respond(error_body("Use GET or POST.", "BAD_REQUEST"), JSON, 405, {"Allow": "GET, POST"})
        request = Request(scope, receive) if method == "GET" else None
        if request is not None and self.settings.graphiql and wants_graphiql(request, headers):
            return HTMLResponse(self.explorer.page)
        media_type = response_media_type(headers)
        if media_type is None:
            message = f"This server answers with {GRAPHQL_RESPONSE} or {JSON}."
            return self.respond(error_body(message, "BAD_REQUEST"), JSON, 406)
        viewer = await authenticate(self.engine, key_from_headers(headers), self.settings.api_key_cache_seconds)
        if viewer is None:
            return self.respond(error_body("A valid API key is required.", "UNAUTHENTICATED"), media_type, 401)
        try:
            params = await read_params(request, receive, headers, self.settings.max_body_bytes)
            check_params(params)
        except RequestError as e:
            return self.respond(error_body(str(e), e.code), media_type, e.status, e.headers)
        request_error_status = 400 if media_type == GRAPHQL_RESPONSE else 200
        try:
            query = self.persisted.document(params.get("query"), params.get("extensions"))
        except PersistedQueryError as e:
            return self.respond(error_body(str(e), e.code), media_type, request_error_status if e.request_error else 400)

        context = RequestContext(self.engine, viewer)
        task = asyncio.current_task()
        self.deadlines.start(task)
        late = False
        try:
            try:
                result = await execute_planned(
                    self.schema, query, params.get("variables"), context, params.get("operationName")
                ) or await self.schema.execute(
                    query,
                    variable_values=params.get("variables"),
                    context_value=context,
                    operation_name=params.get("operationName"),
                    allowed_operation_types=ALLOWED[method],
                    operation_extensions=params.get("extensions"),
                )
            finally:
                late = self.deadlines.end(task)
        except InvalidOperationTypeError:
            if method == "GET":
                body = error_body("Mutations are not allowed over GET; use POST.", "BAD_REQUEST")
                return self.respond(body, media_type, 405, {"Allow": "POST"})
            body = error_body("Only queries and mutations are served over HTTP.", "BAD_REQUEST")
            return self.respond(body, media_type, 400)
        except MissingQueryError:
            return self.respond(error_body("`query` must be a non-empty string.", "BAD_REQUEST"), media_type, 400)
        except CannotGetOperationTypeError as e:  # no operation by that name, or no name given for several
            body = error_body(e.as_http_error_reason(), "GRAPHQL_VALIDATION_FAILED")
            return self.respond(body, media_type, request_error_status)
        except asyncio.CancelledError:
            if not late:  # the client went away, the server stops: not a timeout
                raise
            task.uncancel()
            log.warning("request %s ran past %ss and was stopped", current_request_id.get(), self.settings.request_timeout)
            message = f"The request ran longer than {self.settings.request_timeout:g} s and was stopped."
            return self.respond(error_body(message, "TIMEOUT"), media_type, 503)
        finally:
            await context.close()

        body: dict = {}
        status = 200
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        if is_request_error(result):
            status = request_error_status
        else:
            body["data"] = result.data
        if result.extensions:
            body["extensions"] = result.extensions
        return self.respond(body, media_type, status)
