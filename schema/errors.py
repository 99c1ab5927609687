"""Every error leaves with a code from the contract's table; unexpected ones are logged with
their traceback and leave with nothing of the internals."""

import logging
from contextvars import ContextVar

from graphql import GraphQLError, GraphQLSyntaxError

from sessiongraph.models.availability import is_unavailable
from sessiongraph.resolvers.errors import CodedError, ServiceUnavailable
from sessiongraph.resolvers.rules import RuleBroken

log = logging.getLogger("sessiongraph.errors")

INTERNAL_MESSAGE = "Internal server error."
UNAVAILABLE_MESSAGE = "The database is not answering now; try again shortly."
# Set by the transport (HTTP, WebSocket) for each request, so the log lines name it.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)

# Every code an error can leave with: the contract's table, then the transport's own
# (documented in the README's section on errors).
CODES = {
    "UNAUTHENTICATED",
    "BAD_USER_INPUT",
    "FORBIDDEN",
    "NOT_FOUND",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "QUERY_TOO_COMPLEX",
    "INTERNAL_SERVER_ERROR",
    "BAD_REQUEST",  # the HTTP request itself is malformed: not JSON, no query, a wrong media type
    "PERSISTED_QUERY_NOT_FOUND",  # APQ: the server does not know this hash; send the document
    "DOCUMENT_NOT_TRUSTED",  # trusted-documents-only mode: the document is not in the manifest
    "TIMEOUT",  # the request ran past the server's time limit and was stopped
    # Subscriptions' own (see their descriptions in the schema and websocket.py).
    "TOO_FAR_BEHIND",
    "TOO_MANY_SUBSCRIPTIONS",
    "LIVE_FEED_LOST",
    "SERVICE_UNAVAILABLE",
    "SHUTTING_DOWN",
}


def assign_code(error: GraphQLError, executed: bool) -> None:
    """Give `error` its contract code, in place. `executed`: it arose while executing."""
    code = (error.extensions or {}).get("code")
    if isinstance(error, GraphQLSyntaxError):
        code = "GRAPHQL_PARSE_FAILED"
    elif code is not None and (error.original_error is None or isinstance(error.original_error, CodedError)):
        return
    elif isinstance(error.original_error, RuleBroken):  # an input rule, named in the message
        code = "BAD_USER_INPUT"
    elif is_unavailable(error.original_error):  # retryable: no traceback, nothing internal
        log.warning("request %s: the database is unavailable: %s", current_request_id.get(), error.original_error)
        error.message = UNAVAILABLE_MESSAGE
        code = ServiceUnavailable.code
    elif error.path is None and (error.original_error is None or error.nodes):
        # Before execution: the document did not validate; during it, before any field
        # ran: a variable's value could not be coerced. Both point at the document (a
        # scalar's parser that raised is their original error); an unexpected failure
        # outside any field does not.
        code = "BAD_USER_INPUT" if executed else "GRAPHQL_VALIDATION_FAILED"
    else:
        log.error(
            "request %s: unexpected error at %s", current_request_id.get(), error.path, exc_info=error.original_error or error
        )
        error.message = INTERNAL_MESSAGE
        code = "INTERNAL_SERVER_ERROR"
    error.extensions = {**(error.extensions or {}), "code": code}
