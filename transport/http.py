"""GraphQL over HTTP: POST and GET on /graphql, GraphiQL for browsers, status codes and media
types per the GraphQL over HTTP spec, and a request id on every response and on every log line
about the request. What an operation must pass -- the API key, size, decoding, persisted
documents, limits, the time limit -- is the gate's (gate/operation.py), the same for the
WebSocket."""

import logging
import re
from functools import lru_cache

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from strawberry.types.graphql import OperationType

from sessiongraph.explorer import Explorer
from sessiongraph.gate.auth import key_from_headers
from sessiongraph.gate.operation import Gate, Refused, decode, error_body, has_unavailable, is_request_error, new_request_id, RETRY_HEADERS
from sessiongraph.schema.errors import INTERNAL_MESSAGE, current_request_id

log = logging.getLogger("sessiongraph.transport.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
# A client's X-Request-Id is kept when it is this plain (it goes into log lines); else a new one.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# What each method may run: mutations only over POST.
ALLOWED = {"GET": frozenset({OperationType.QUERY}), "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}


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


async def read_body(receive, gate: Gate) -> bytes:
    """The whole body, refused (413) as soon as it is larger than the gate's limit."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        body = body + chunk if body else chunk
        gate.check_size(len(body))
        if not message.get("more_body", False):
            return body


async def read_params(request: Request | None, receive, headers: dict, gate: Gate) -> dict:
    """The request's parameters: `request` for a GET (its query string), else the body."""
    if request is not None:
        params = dict(request.query_params)
        for name in ("variables", "extensions"):
            if params.get(name):
                params[name] = decode(params[name], f"`{name}`")
        return params
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON:
        raise Refused("BAD_REQUEST", "POST bodies must be application/json.", 415)
    declared = headers.get("content-length", "")
    if declared.isdigit():
        gate.check_size(int(declared))
    params = decode(await read_body(receive, gate), "The request body")
    if not isinstance(params, dict):
        raise Refused("BAD_REQUEST", "The request body must be a JSON object.", 400)
    return params


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


class GraphQLEndpoint:
    def __init__(self, gate: Gate) -> None:
        self.gate, self.settings = gate, gate.settings
        self.explorer = Explorer("/graphql", gate.settings.demo_key)

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
        # The key lookup and the operation, under one deadline (the gate's).
        try:
            return await self.gate.bounded(lambda: self.answer(request, receive, headers, method, media_type))
        except Refused as e:
            return self.respond(error_body(str(e), e.code), media_type, e.status or 200, e.headers)

    async def answer(self, request: Request | None, receive, headers: dict, method: str, media_type: str) -> JSONResponse:
        gate = self.gate
        viewer = await gate.caller(key_from_headers(headers))
        if viewer is None:
            return self.respond(error_body("A valid API key is required.", "UNAUTHENTICATED"), media_type, 401)
        request_error_status = 400 if media_type == GRAPHQL_RESPONSE else 200
        try:
            params = await read_params(request, receive, headers, gate)
            query = gate.document(params)
            result = await gate.execute(
                viewer, query, params.get("variables"), params.get("operationName"), ALLOWED[method], params.get("extensions")
            )
        except Refused as e:
            return self.respond(error_body(str(e), e.code), media_type, e.status or request_error_status, e.headers)

        body: dict = {}
        status, headers = 200, None
        if has_unavailable(result):  # what ran is in the body; the status says: try again
            status, headers = 503, RETRY_HEADERS
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        if is_request_error(result):
            status = request_error_status
        else:
            body["data"] = result.data
        if result.extensions:
            body["extensions"] = result.extensions
        return self.respond(body, media_type, status, headers)
