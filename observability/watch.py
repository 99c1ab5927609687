"""What the gate (gate/operation.py) records of each operation when metrics or tracing are on:
its name, type and outcome, how long it took, the SQL statements it ran, who answered it (the
planner or graphql-core), its span. With both off the gate has no Watch and records nothing."""

import asyncio
import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass

from graphql import GraphQLError, get_operation_ast, parse

from sessiongraph.gate.limits import parse_document


@dataclass
class OperationRecord:
    """One operation's figures, gathered while it runs (the SQL listener finds it through
    `current`: the statements of the tasks an operation starts are its own too)."""

    statements: int = 0
    planner: str = "unplanned"
    outcome: str = "ok"
    first: bool = True

    def saw(self, result, request_error: bool) -> None:
        """A subscription's result: the first one tells whether it was refused."""
        if self.first and request_error:
            self.outcome = outcome_of(result)
        self.first = False


current: ContextVar[OperationRecord | None] = ContextVar("sessiongraph_operation", default=None)


def outcome_of(result) -> str:
    """ok, or the contract code of the result's first error."""
    if not result.errors:
        return "ok"
    return (result.errors[0].extensions or {}).get("code") or "INTERNAL_SERVER_ERROR"


def _count_statement(*_args) -> None:
    record = current.get()
    if record is not None:
        record.statements += 1


def operation_names(documents) -> set[str]:
    """The names of the operations the trusted documents declare."""
    names = set()
    for document in documents:
        with contextlib.suppress(GraphQLError):
            names.update(d.name.value for d in parse(document).definitions if getattr(d, "name", None) and hasattr(d, "operation"))
    return names


class Watch:
    """Metrics (observability/metrics.py) and spans (observability/tracing.py) of every
    operation the gate runs: one per app, for those that are on."""

    def __init__(self, engine, *, metrics: bool, tracing: bool, pool_size: int, trusted_documents=()) -> None:
        from sqlalchemy import event

        self.metrics, self.tracer = None, None
        if not event.contains(engine.sync_engine, "before_cursor_execute", _count_statement):
            event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
        if metrics:
            from sessiongraph.observability import metrics as prometheus

            self.metrics = prometheus
            self.names = prometheus.OperationNames(operation_names(trusted_documents))
            prometheus.watch_pool(engine, pool_size)
        if tracing:
            from opentelemetry import context as otel_context
            from opentelemetry.trace import SpanKind, Status, StatusCode

            from sessiongraph.observability import tracing as otel

            self.otel = otel, otel_context, SpanKind.SERVER, Status, StatusCode.ERROR
            self.tracer = otel.start()
            otel.StatementSpans(self.tracer, engine.dialect.name).listen(engine)

    def describe(self, schema, query: str, operation_name: str | None) -> tuple[str, str | None]:
        """The operation's type and name (from its parsed document, cached per text)."""
        try:
            document = parse_document(schema.limits, query, len(query.encode()))
        except GraphQLError:
            return "unknown", operation_name
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return "unknown", operation_name
        return operation.operation.value, operation.name.value if operation.name else None

    async def operation(self, run, schema, request_id: str | None, query: str, operation_name: str | None):
        """`run()`'s result, timed, counted and traced as the operation `query` names."""
        kind, name = self.describe(schema, query, operation_name)
        record = OperationRecord()
        token = current.set(record)
        started = time.perf_counter()
        result = None
        try:
            with self._span(kind, name, request_id) as span:
                try:
                    result = await run()
                    record.outcome = outcome_of(result)
                    return result
                except asyncio.CancelledError:  # the client went away, the server stops
                    record.outcome = "CANCELLED"
                    raise
                except Exception as error:  # a refusal carries its code
                    record.outcome = getattr(error, "code", None) or "INTERNAL_SERVER_ERROR"
                    raise
                finally:
                    if span is not None:
                        self._describe(span, record, result)
        finally:
            current.reset(token)
            if self.metrics is not None:
                label = self.names.label(name)
                self.metrics.OPERATIONS.labels(label, kind, record.outcome).inc()
                self.metrics.LATENCY.labels(label, kind).observe(time.perf_counter() - started)
                self.metrics.STATEMENTS.labels(kind).observe(record.statements)
                if kind == "query":
                    self.metrics.PLANNER.labels(record.planner).inc()

    def planner_answer(self, planned: bool, context) -> None:
        """Who answers the operation running now: the planner, or graphql-core after the
        planner handed over (`planner_declined`), or graphql-core alone."""
        record = current.get()
        if record is not None:
            record.planner = "planned" if planned else "fallback" if getattr(context, "planner_declined", False) else "unplanned"

    def refused(self, code: str, operation_name=None) -> None:
        """An operation refused before its document was known (a malformed request, an
        unknown or untrusted document, no valid API key)."""
        if self.metrics is not None:
            label = self.names.label(operation_name) if isinstance(operation_name, str) else "anonymous"
            self.metrics.OPERATIONS.labels(label, "unknown", code).inc()

    async def authenticated(self, caller):
        """The awaited caller, counting a refused key."""
        viewer = await caller
        if viewer is None:
            self.refused("UNAUTHENTICATED")
        return viewer

    @contextlib.contextmanager
    def subscription(self, schema, query: str, operation_name: str | None):
        """Open for as long as a subscription streams; counted when it ends."""
        record = OperationRecord()
        if self.metrics is None:
            yield record
            return
        name = self.names.label(self.describe(schema, query, operation_name)[1])
        self.metrics.SUBSCRIPTIONS.inc()
        try:
            yield record
        finally:
            self.metrics.SUBSCRIPTIONS.dec()
            self.metrics.OPERATIONS.labels(name, "subscription", record.outcome).inc()

    @contextlib.contextmanager
    def connection(self):
        """Open for as long as a WebSocket connection is."""
        if self.metrics is None:
            yield
            return
        self.metrics.WEBSOCKETS.inc()
        try:
            yield
        finally:
            self.metrics.WEBSOCKETS.dec()

    def continuing(self, carrier: dict):
        """While open, spans continue the trace the caller's `traceparent` (in `carrier`, by
        lower-case name) names; nothing when tracing is off or the caller sent none."""
        if self.tracer is None or not isinstance(carrier.get("traceparent"), str):
            return contextlib.nullcontext()
        otel, otel_context = self.otel[:2]
        return _attached(otel_context, otel.caller_context(carrier))

    def _span(self, kind: str, name: str | None, request_id: str | None):
        if self.tracer is None:
            return contextlib.nullcontext()
        attributes = {"graphql.operation.type": kind}
        if name:
            attributes["graphql.operation.name"] = name
        if request_id:
            attributes["sessiongraph.request_id"] = request_id
        return self.tracer.start_as_current_span(
            f"{kind} {name}" if name else kind, kind=self.otel[2], attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        )

    def _describe(self, span, record: OperationRecord, result) -> None:
        cost = ((result.extensions or {}).get("cost") or {}).get("requestedQueryCost") if result is not None else None
        if cost is not None:
            span.set_attribute("sessiongraph.cost", cost)
        span.set_attribute("sessiongraph.outcome", record.outcome)
        span.set_attribute("sessiongraph.sql_statements", record.statements)
        if record.outcome != "ok":
            status, error = self.otel[3:]
            span.set_status(status(error, record.outcome))


@contextlib.contextmanager
def _attached(context, caller):
    token = context.attach(caller)
    try:
        yield
    finally:
        context.detach(token)
