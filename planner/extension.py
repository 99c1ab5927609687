"""The planner in Strawberry's pipeline: parsing, the limits, validation and error handling
stay Strawberry's; only the execution of a covered query is the planner's."""

from collections.abc import AsyncIterator

from graphql import ExecutionResult
from strawberry.extensions import SchemaExtension

from sessiongraph.planner.plan import Fallback, Planner


class PlannedExecution(SchemaExtension):
    """Sets the operation's result before graphql-core would execute it; where the planner
    falls back, it leaves none and graphql-core executes as usual."""

    # Operations the planner answered itself, and those it left to graphql-core, in this
    # process: for the tests and the benchmark.
    answered = 0
    fell_back = 0

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors and context.result is None:
            planner = planner_for(context.schema)
            plan = planner.plan(context.query or id(document), document, context.operation_name)
            if plan is not None:
                try:
                    data = await planner.execute(plan, context.context, context.variables)
                except Fallback:
                    PlannedExecution.fell_back += 1
                    # graphql-core starts from what it would have had: no cached rows, which
                    # would change the order its fields finish in, and so of its errors.
                    await context.context.release()
                else:
                    PlannedExecution.answered += 1
                    context.result = ExecutionResult(data=data)
        yield


def planner_for(schema) -> Planner:
    planner = getattr(schema, "_planner", None)
    if planner is None:
        planner = schema._planner = Planner(schema)
    return planner
