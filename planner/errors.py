"""How a plan's run ends when the planner does not give the answer itself.

Decided cases raise `Fallback`, and graphql-core then executes the operation and reports what
it finds: a value the type forbids (a null in a non-null field, an Int beyond 32 bits), an
error a resolver raises on purpose (`expected`). Anything else is a bug of the planner: it
is logged with the request's id and counted (`PlannerBug.count`, which the test suite holds
at 0), then the operation is handed to graphql-core all the same, so that the caller still
gets the answer it would have had."""

import logging

from graphql import GraphQLError

from sessiongraph.models.availability import is_unavailable
from sessiongraph.resolvers.rules import RuleBroken
from sessiongraph.schema.errors import current_request_id

log = logging.getLogger("sessiongraph.planner")


class Fallback(Exception):
    """The planner cannot give this answer; normal execution will."""


def expected(error: Exception) -> bool:
    """Whether `error` is one graphql-core reports to the caller by design: a resolver's coded
    error (a bad cursor, a missing session: resolvers/errors.py), an input rule broken, a
    value graphql-core itself refuses (an argument it cannot coerce), a database that cannot
    answer now (models/availability.py: graphql-core then answers SERVICE_UNAVAILABLE)."""
    return isinstance(error, (Fallback, GraphQLError, RuleBroken)) or is_unavailable(error)


class PlannerBug:
    """The unexpected failures of plans in this process."""

    count = 0

    @classmethod
    def report(cls, error: Exception) -> None:
        cls.count += 1
        log.error(
            "request %s: the planner failed; graphql-core answers instead", current_request_id.get(), exc_info=error
        )
