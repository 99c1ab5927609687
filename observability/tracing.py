"""OpenTelemetry tracing: a span per operation (opened by observability/watch.py) with the SQL
statements it ran as child spans, continuing the caller's W3C `traceparent`; exported by OTLP
over HTTP. On only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) is set: else
nothing of OpenTelemetry is imported and no span, not even a no-op one, is made."""

import os
import weakref

TRACER_NAME = "sessiongraph"


def wanted() -> bool:
    """Whether the environment asks for traces, as OpenTelemetry's variables say it."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(exporter or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def start():
    """The tracer operations are traced with. Installs a TracerProvider exporting by OTLP
    (`console` in OTEL_TRACES_EXPORTER prints them instead) unless one is installed already
    (an embedder's, a test's)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # OTEL_SERVICE_NAME, when set, wins over this default (the SDK reads it).
        provider = TracerProvider(resource=Resource.create({"service.name": "sessiongraph"}))
        if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # its endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return trace.get_tracer(TRACER_NAME)


def caller_context(carrier: dict):
    """The trace context a caller sent (`traceparent`, `tracestate` in `carrier`, a mapping of
    lower-case header names), for the spans opened while it is attached."""
    global _propagator
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()
    return _propagator.extract(carrier)


_propagator = None


_traced_engines: "weakref.WeakSet" = weakref.WeakSet()


class StatementSpans:
    """A span for every SQL statement, a child of the span current when it is sent (the
    operation's): SQLAlchemy's cursor events on the engine, public API."""

    def __init__(self, tracer, dialect: str) -> None:
        self.tracer, self.dialect = tracer, dialect
        self.open: dict[int, object] = {}  # by the id of the statement's execution context

    def before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = self.tracer.start_span(
            verb, attributes={"db.system.name": self.dialect, "db.query.text": statement, "db.operation.name": verb}
        )
        if context is None:  # sent without SQLAlchemy's execution (no after event comes): a mark
            span.end()
        else:
            self.open[id(context)] = span

    def after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        span = self.open.pop(id(context), None)
        if span is not None:
            span.end()

    def failed(self, exception_context) -> None:
        span = self.open.pop(id(exception_context.execution_context), None)
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, type(exception_context.original_exception).__name__))
            span.end()

    def listen(self, engine) -> None:
        """Once per engine (an engine may serve several apps: the tests')."""
        from sqlalchemy import event

        target = engine.sync_engine
        if target in _traced_engines:
            return
        _traced_engines.add(target)
        event.listen(target, "before_cursor_execute", self.before)
        event.listen(target, "after_cursor_execute", self.after)
        event.listen(target, "handle_error", self.failed)
