"""One gate for every GraphQL operation, whichever transport brought it (transport/http.py,
transport/websocket.py): the caller's API key, the size of what came, its decoding, the
request's parameters, persisted and trusted documents, then execution under the document
limits and cost (DocumentGuard, inside the schema), the request timeout (queries and
mutations; a subscription lives as long as its client wants), with error codes and masking
(the schema's `process_errors`) and a fresh context -- connection, DataLoaders -- per
operation. What the gate refuses is a `Refused` carrying the contract's code: HTTP answers it
with its status, the WebSocket with an `error` message."""

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import orjson
from graphql import GraphQLError, get_operation_ast
from graphql.language import OperationType as DocumentOperationType
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from sessiongraph.gate.auth import authenticate
from sessiongraph.gate.deadlines import Deadlines, track_connections
from sessiongraph.gate.limits import parse_document
from sessiongraph.gate.persisted import PersistedDocuments, PersistedQueryError
from sessiongraph.planner.extension import execute_planned
from sessiongraph.models.availability import is_unavailable
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.resolvers.errors import ServiceUnavailable
from sessiongraph.schema.errors import UNAVAILABLE_MESSAGE, current_request_id

log = logging.getLogger("sessiongraph.gate")

# New request ids: 32 hex digits, a random half per process and a count, unique without a
# call into the kernel's random source per request.
_ID_PREFIX = os.urandom(8).hex()
_request_numbers = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_request_numbers):016x}"


class Refused(Exception):
    """An operation refused before it ran. `status`: the HTTP status it is answered with;
    None for a GraphQL request error, whose status follows the response's media type (400
    for graphql-response+json, 200 for json)."""

    def __init__(self, code: str, message: str, status: int | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.status, self.headers = code, status, headers

    @property
    def errors(self) -> list[dict]:
        return [{"message": str(self), "extensions": {"code": self.code}}]


# What a SERVICE_UNAVAILABLE answer asks the client to wait, in seconds.
RETRY_HEADERS = {"Retry-After": "1"}


def unavailable() -> Refused:
    return Refused(ServiceUnavailable.code, UNAVAILABLE_MESSAGE, 503, RETRY_HEADERS)


def has_unavailable(result) -> bool:
    """Whether an executed operation met a database that could not answer (the error codes
    are given by the schema's `process_errors`)."""
    return bool(result.errors) and any((e.extensions or {}).get("code") == ServiceUnavailable.code for e in result.errors)


def error_body(message: str, code: str) -> dict:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def is_request_error(result) -> bool:
    """Nothing was executed (parse, validation, limits, variable coercion): no `data` entry.
    Every error raised while executing carries the path of its field."""
    return result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)


def check_params(params: dict) -> None:
    """A request's parameters (an HTTP body or query string, a subscribe message's payload)."""
    query = params.get("query")
    persisted = isinstance(params.get("extensions"), dict) and "persistedQuery" in params["extensions"]
    if not (isinstance(query, str) and query) and not (persisted and query is None):
        raise Refused("BAD_REQUEST", "`query` must be a non-empty string.", 400)
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        raise Refused("BAD_REQUEST", "`operationName` must be a string.", 400)
    for name in ("variables", "extensions"):
        if params.get(name) is not None and not isinstance(params[name], dict):
            raise Refused("BAD_REQUEST", f"`{name}` must be an object.", 400)


def decode(raw: bytes | str, what: str):
    """JSON as orjson reads it: strictly, so what the database could not store (a lone
    surrogate, invalid UTF-8) or JSON does not have (NaN) is refused here, on every transport."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused("BAD_REQUEST", f"{what} is not valid JSON.", 400) from None


def utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of `text`, encoded only when its length leaves it in doubt (a character
    takes one to four bytes)."""
    if len(text) > limit or len(text) * 4 <= limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


class Gate:
    """The steps every operation passes; one per app, shared by HTTP and the WebSocket."""

    def __init__(self, schema, engine, settings, persisted: PersistedDocuments, watch=None) -> None:
        self.schema, self.engine, self.settings, self.persisted = schema, engine, settings, persisted
        self.watch = watch  # observability/watch.py when metrics or tracing are on, else None
        self.max_bytes = settings.max_body_bytes
        self.deadlines = Deadlines(settings.request_timeout)
        track_connections(engine)

    def caller(self, key: str | None):
        """(awaitable) The caller a live API key belongs to; None for none, an unknown or a
        revoked one. Run it `bounded`: the lookup is a statement like any other."""
        caller = authenticate(self.engine, key, self.settings.api_key_cache_seconds)
        return caller if self.watch is None else self.watch.authenticated(caller)

    async def bounded(self, work: Callable[[], Awaitable]):
        """The result of `work()`, under the request timeout and answered with a code: past
        the timeout it is stopped (its database connections cut, gate/deadlines.py) and
        refused TIMEOUT; a database that cannot answer is refused SERVICE_UNAVAILABLE. Within
        a bounded call (HTTP bounds the key lookup and the operation together), the outer
        deadline holds."""
        task = asyncio.current_task()
        if self.deadlines.running(task):
            return await work()
        self.deadlines.start(task)
        late = False
        try:
            try:
                result = await work()
            finally:
                late = self.deadlines.end(task)
        except (Exception, asyncio.CancelledError) as error:
            # Stopped: whatever it ended with (the cancellation, or the error of a connection
            # cut under it) is a timeout. Else a cancellation is the client gone or the
            # server stopping, and passes.
            if not late and not isinstance(error, Refused) and not isinstance(error, asyncio.CancelledError) and is_unavailable(error):
                log.warning("request %s: the database is unavailable: %s", current_request_id.get(), error)
                raise unavailable() from None
            if not late:
                raise
        if not late:
            return result
        if task.cancelling():
            task.uncancel()
        seconds = self.settings.request_timeout
        log.warning("request %s ran past %ss and was stopped", current_request_id.get(), seconds)
        raise Refused("TIMEOUT", f"The request ran longer than {seconds:g} s and was stopped.", 503)

    def check_size(self, size: int, what: str = "The request body") -> None:
        if size > self.max_bytes:
            raise Refused("BAD_REQUEST", f"{what} is larger than {self.max_bytes} bytes.", 413)

    def document(self, params: dict) -> str:
        """The document a request runs: its `query`, or the persisted one it names; refused
        when the parameters are malformed, the hash unknown or the document not trusted."""
        try:
            check_params(params)
            try:
                return self.persisted.document(params.get("query"), params.get("extensions"))
            except PersistedQueryError as e:
                raise Refused(e.code, str(e), None if e.request_error else 400) from None
        except Refused as refused:
            if self.watch is not None:
                self.watch.refused(refused.code, params.get("operationName"))
            raise

    def is_subscription(self, query: str, operation_name: str | None) -> bool:
        """Whether the operation `query` runs is a subscription. A document that does not
        parse, or names no single operation, is not: executing it reports why."""
        try:
            document = parse_document(self.schema.limits, query, len(query.encode()))
        except GraphQLError:
            return False
        operation = get_operation_ast(document, operation_name)
        return operation is not None and operation.operation is DocumentOperationType.SUBSCRIPTION

    async def execute(
        self,
        viewer: Viewer,
        query: str,
        variables: dict | None,
        operation_name: str | None,
        allowed: frozenset,
        extensions: dict | None = None,
    ):
        """The result of a query or mutation, planned where the planner covers it, stopped
        past the request timeout; timed, counted and traced when the app watches."""
        if self.watch is None:
            return await self.run(viewer, query, variables, operation_name, allowed, extensions)
        return await self.watch.operation(
            lambda: self.run(viewer, query, variables, operation_name, allowed, extensions),
            self.schema, current_request_id.get(), query, operation_name,
        )

    async def run(self, viewer: Viewer, query: str, variables: dict | None, operation_name: str | None, allowed: frozenset, extensions: dict | None):
        context = RequestContext(self.engine, viewer)
        try:
            return await self.bounded(lambda: self._run(context, query, variables, operation_name, allowed, extensions))
        finally:
            # After a timeout its statement, if one still runs, failed as its connection was cut.
            await context.close()

    async def _run(self, context: RequestContext, query: str, variables: dict | None, operation_name: str | None, allowed: frozenset, extensions: dict | None):
        try:
            result = await execute_planned(self.schema, query, variables, context, operation_name)
            if self.watch is not None:
                self.watch.planner_answer(result is not None, context)
            return result or await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
                operation_extensions=extensions,
            )
        except InvalidOperationTypeError:
            if OperationType.MUTATION not in allowed:
                raise Refused("BAD_REQUEST", "Mutations are not allowed over GET; use POST.", 405, {"Allow": "POST"}) from None
            raise Refused("BAD_REQUEST", "Only queries and mutations are served over HTTP.", 400) from None
        except MissingQueryError:
            raise Refused("BAD_REQUEST", "`query` must be a non-empty string.", 400) from None
        except CannotGetOperationTypeError as e:  # no operation by that name, or no name given for several
            raise Refused("GRAPHQL_VALIDATION_FAILED", e.as_http_error_reason()) from None

    async def subscribe(self, viewer: Viewer, query: str, variables: dict | None, operation_name: str | None) -> AsyncIterator:
        """A subscription's results, with a context of its own for as long as it runs."""
        context = RequestContext(self.engine, viewer)
        watching = self.watch.subscription(self.schema, query, operation_name) if self.watch is not None else contextlib.nullcontext()
        try:
            with watching as record:
                results = await self.schema.subscribe(
                    query, variable_values=variables, context_value=context, operation_name=operation_name
                )
                async with aclosing(results):
                    async for result in results:
                        if record is not None:
                            record.saw(result, is_request_error(result))
                        yield result
        finally:
            await context.close()
