"""Every error leaves with a code from the contract's table; unexpected ones are logged with
their traceback and leave with nothing of the internals."""

import logging

from graphql import GraphQLError, GraphQLSyntaxError

from sessiongraph.resolvers.errors import CodedError

log = logging.getLogger("sessiongraph.errors")

INTERNAL_MESSAGE = "Internal server error."


def assign_code(error: GraphQLError, executed: bool) -> None:
    """Give `error` its contract code, in place. `executed`: it arose while executing."""
    code = (error.extensions or {}).get("code")
    if isinstance(error, GraphQLSyntaxError):
        code = "GRAPHQL_PARSE_FAILED"
    elif code is not None and (error.original_error is None or isinstance(error.original_error, CodedError)):
        return
    elif error.path is None and (error.original_error is None or error.nodes):
        # Before execution: the document did not validate; during it, before any field
        # ran: a variable's value could not be coerced. Both point at the document (a
        # scalar's parser that raised is their original error); an unexpected failure
        # outside any field does not.
        code = "BAD_USER_INPUT" if executed else "GRAPHQL_VALIDATION_FAILED"
    else:
        log.error("unexpected error at %s", error.path, exc_info=error.original_error or error)
        error.message = INTERNAL_MESSAGE
        code = "INTERNAL_SERVER_ERROR"
    error.extensions = {**(error.extensions or {}), "code": code}
