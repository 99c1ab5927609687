"""The planner in Strawberry's pipeline: parsing, the limits, validation and error handling
stay Strawberry's; only the execution of a covered query is the planner's."""

from collections.abc import AsyncIterator

from graphql import ExecutionResult, GraphQLError, specified_rules
from strawberry.extensions import SchemaExtension

from sessiongraph.planner.plan import Fallback, Planner
from sessiongraph.gate.limits import check_document, cost_extension, cost_reads_variables, parse_document

DEFAULT_RULES = tuple(specified_rules)  # what Strawberry validates with


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
        # Not again for an operation execute_planned already handed back (it would fall back
        # the same way, after running the same statements).
        declined = getattr(context.context, "planner_declined", False)
        if document is not None and not context.pre_execution_errors and context.result is None and not declined:
            planner = planner_for(context.schema)
            plan = planner.plan(context.query or None, document, context.operation_name)
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


async def execute_planned(schema, query: str, variables: dict | None, context, operation_name: str | None) -> ExecutionResult | None:
    """The result of a query the planner answers, without Strawberry's per-operation pipeline:
    the same parsing, limits, validation (all cached per document) and cost report as
    `DocumentGuard`, then the plan. None wherever the answer would be anything but planned
    data -- a refused or invalid document, no single query operation, a fallback -- and the
    caller runs `schema.execute`, which gives that answer as it always does."""
    if not getattr(schema, "planner", False) or not isinstance(query, str) or not query:
        return None
    planner = planner_for(schema)
    # A document whose cost reads no variables passes or fails its checks whatever they are:
    # once it has passed, it is one lookup away from its plan and its cost report.
    ready = planner.ready.get((query, operation_name))
    if ready is not None:
        plan, extensions = ready
    else:
        try:
            document_bytes = len(query.encode())
            document = parse_document(schema.limits, query, document_bytes)
        except GraphQLError:
            return None
        cost, errors = check_document(schema, query, document, variables, DEFAULT_RULES)
        if errors:
            return None
        plan = planner.plan(query, document, operation_name)
        if plan is None:
            return None
        extensions = cost_extension(schema.limits, cost, document_bytes)
        if not cost_reads_variables(schema._schema, query):
            planner.keep_ready((query, operation_name), (plan, extensions))
    try:
        data = await planner.execute(plan, context, variables)
    except Fallback:
        PlannedExecution.fell_back += 1
        context.planner_declined = True
        await context.release()  # normal execution starts from fresh loaders, as it would have
        return None
    PlannedExecution.answered += 1
    return ExecutionResult(data=data, extensions=extensions)
