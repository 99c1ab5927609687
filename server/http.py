"""GraphQL over HTTP: POST and GET on /graphql, GraphiQL for browsers, the API key checked
before anything is executed, status codes and media types per the GraphQL over HTTP spec."""

import logging
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from sessiongraph.auth import authenticate, key_from_headers
from sessiongraph.resolvers.context import RequestContext

log = logging.getLogger("sessiongraph.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
# Errors of the request itself: nothing was executed, so there is no `data` entry.
REQUEST_ERROR_CODES = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}


class RequestError(Exception):
    def __init__(self, status: int, message: str, code: str = "BAD_REQUEST", headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def response_media_type(request: Request) -> str:
    """graphql-response+json when the client accepts it, else application/json."""
    accept = request.headers.get("accept", "")
    return GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in accept or "*/*" in accept else JSON


def wants_graphiql(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept and "query" not in request.query_params


async def read_params(request: Request, max_body: int) -> dict:
    if request.method == "GET":
        params = dict(request.query_params)
        for name in ("variables", "extensions"):
            if params.get(name):
                try:
                    params[name] = orjson.loads(params[name])
                except orjson.JSONDecodeError:
                    raise RequestError(400, f"`{name}` is not valid JSON.") from None
        return params
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON:
        raise RequestError(415, "POST bodies must be application/json.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise RequestError(413, f"The request body is larger than {max_body} bytes.")
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return params


def check_params(params: dict) -> None:
    query = params.get("query")
    if not isinstance(query, str) or not query:
        raise RequestError(400, "`query` must be a non-empty string.")
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        raise RequestError(400, "`operationName` must be a string.")
    for name in ("variables", "extensions"):
        if params.get(name) is not None and not isinstance(params[name], dict):
            raise RequestError(400, f"`{name}` must be an object.")


def error_body(message: str, code: str) -> dict:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


class GraphQLEndpoint:
    def __init__(self, schema, engine, settings) -> None:
        self.schema, self.engine, self.settings = schema, engine, settings

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        media_type = response_media_type(request)

        def respond(body: dict, status: int = 200, headers: dict | None = None) -> Response:
            headers = {"X-Request-Id": request_id, **(headers or {})}
            return Response(orjson.dumps(body), status, headers, media_type)

        if request.method not in ("GET", "POST"):
            return respond(error_body("Use GET or POST.", "BAD_REQUEST"), 405, {"Allow": "GET, POST"})
        if wants_graphiql(request):
            if not self.settings.graphiql:
                return respond(error_body("GraphiQL is off.", "NOT_FOUND"), 404)
            return HTMLResponse(get_graphql_ide_html(), headers={"X-Request-Id": request_id})
        viewer = await authenticate(self.engine, key_from_headers(request.headers))
        if viewer is None:
            return respond(error_body("A valid API key is required.", "UNAUTHENTICATED"), 401)
        try:
            params = await read_params(request, self.settings.max_body_bytes)
            check_params(params)
        except RequestError as e:
            return respond(error_body(str(e), e.code), e.status, e.headers)

        allowed = {OperationType.QUERY}
        if request.method == "POST":
            allowed |= {OperationType.MUTATION}
        context = RequestContext(self.engine, viewer)
        try:
            result = await self.schema.execute(
                params["query"],
                variable_values=params.get("variables"),
                context_value=context,
                operation_name=params.get("operationName"),
                allowed_operation_types=allowed,
                operation_extensions=params.get("extensions"),
            )
        except InvalidOperationTypeError:
            if request.method == "GET":
                return respond(error_body("Mutations are not allowed over GET.", "BAD_REQUEST"), 405, {"Allow": "POST"})
            return respond(error_body("Only queries and mutations are served over HTTP.", "BAD_REQUEST"), 400)
        except MissingQueryError:
            return respond(error_body("`query` must be a non-empty string.", "BAD_REQUEST"), 400)
        except CannotGetOperationTypeError as e:  # no operation by that name, or no name given for several
            return respond(error_body(e.as_http_error_reason(), "GRAPHQL_VALIDATION_FAILED"), 400)
        finally:
            await context.close()

        body: dict = {}
        status = 200
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
            request_error = result.data is None and all(
                (e.extensions or {}).get("code") in REQUEST_ERROR_CODES for e in result.errors
            )
            if request_error:
                status = 400 if media_type == GRAPHQL_RESPONSE else 200
        if result.data is not None or not result.errors:
            body["data"] = result.data
        if result.extensions:
            body["extensions"] = result.extensions
        return respond(body, status)
