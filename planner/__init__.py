"""Planned execution of known query documents.

graphql-core resolves a document field by field: for every field of every object it builds
an info object, calls a resolver, checks for awaitables and completes the value through
generic machinery. For a page of 2,000 events that is tens of thousands of calls. The
planner looks at a validated query once, keeps what it learned (the operation, the fields
each type selects, their coerced arguments), and then runs it level by level: the objects of
one level are completed together, plain attributes are read straight off the objects, and
the resolvers that do I/O are called for all objects of the level at once, through the same
DataLoaders, so the SQL is the same as graphql-core's.

Selections of sessions, turns and events (and their connections) that read only fields a
row holds are compiled (compiled.py): one function per selection turns rows straight into
the response's dicts, the pages of all parents of a level are fetched with one call through
the same DataLoaders, and those pages fetch only the columns the document reads.

Over HTTP, a query the planner answers runs without Strawberry's per-operation pipeline
(extension.execute_planned): the same parsing, limits, validation and cost report, called
directly; anything else goes through `schema.execute` as before.

The Strawberry schema stays the reference: values come from the same functions the types'
`from_row` uses, the same resolvers and the same statements, and anything the planner does not cover -- mutations,
subscriptions, introspection, directives other than @include/@skip -- is left to normal
execution, decided when the plan is made. So is a run that meets an error a resolver raises
on purpose or a value its type forbids: normal execution then gives the answer and the error
exactly as it would have. Any other failure of a run is a bug, logged and counted
(planner/errors.py), and the operation is still answered by normal execution.
"""

# The schema installs this package's extension and this package reads the schema's scalars:
# the schema first, whichever of the two is imported first.
import sessiongraph.schema  # noqa: F401  isort: skip
from sessiongraph.planner.plan import Plan, Planner

__all__ = ["Plan", "Planner"]
