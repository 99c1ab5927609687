"""OpenTelemetry spans (tracing on, as OTEL_EXPORTER_OTLP_ENDPOINT turns it on): one per
operation, named by its type and name, with its cost and request id, continuing the caller's
W3C traceparent, and the SQL statements it ran as its children. Off (the default), nothing."""

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sessiongraph.config import Settings
from sessiongraph.models import create_engine
from sessiongraph.observability.tracing import wanted
from sessiongraph.transport.app import create_app
from tests.conftest import api_key, event_, store, turn_

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PAGE = "query Page { sessions(first: 2) { nodes { title turns { nodes { events { nodes { seq } } } } } } }"


@pytest.fixture(scope="module")
def spans():
    """Every span ended, kept in memory (the provider a server installs is the SDK's too)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
async def traced_client(engine, spans):
    """A client of an app with tracing on, over an engine of its own (the SQL listener stays
    with the engine)."""
    own = create_engine(str(engine.url.render_as_string(hide_password=False)))
    app = create_app(Settings(database_url=str(own.url), tracing=True), engine=own)
    spans.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client
    await own.dispose()


async def test_an_operation_span_continues_the_callers_trace_with_its_sql_under_it(engine, org, traced_client, spans):
    await store(engine, org.admin, title="traced", turns=[turn_("t1", 1, events=[event_("NOTE", 2, "hi")])])
    key = await api_key(engine, org.admin)
    headers = {"X-API-Key": key, "X-Request-Id": "trace-test-1", "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
    response = await traced_client.post("/graphql", json={"query": PAGE}, headers=headers)
    assert response.json()["data"]["sessions"]["nodes"][0]["title"] == "traced"
    cost = response.json()["extensions"]["cost"]["requestedQueryCost"]

    [operation] = [s for s in spans.get_finished_spans() if s.name == "query Page"]
    assert operation.kind is trace.SpanKind.SERVER
    assert dict(operation.attributes).items() >= {
        "graphql.operation.type": "query",
        "graphql.operation.name": "Page",
        "sessiongraph.cost": cost,
        "sessiongraph.request_id": "trace-test-1",
        "sessiongraph.outcome": "ok",
    }.items()
    assert format(operation.context.trace_id, "032x") == TRACE_ID
    assert format(operation.parent.span_id, "016x") == CALLER_SPAN
    statements = [s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == operation.context.span_id]
    # The API key's lookup comes before the operation; the page is one statement per level.
    assert len(statements) == operation.attributes["sessiongraph.sql_statements"] >= 3
    assert all(s.name == "SELECT" and s.attributes["db.query.text"].lstrip().upper().startswith("SELECT") for s in statements)
    assert all(s.context.trace_id == operation.context.trace_id for s in statements)


async def test_a_refused_operation_span_says_its_code(engine, org, traced_client, spans):
    key = await api_key(engine, org.admin)
    response = await traced_client.post("/graphql", json={"query": "query Bad { sessions(first: -1) { nodes { id } } }"}, headers={"X-API-Key": key})
    code = response.json()["errors"][0]["extensions"]["code"]
    [operation] = [s for s in spans.get_finished_spans() if s.name == "query Bad"]
    assert operation.attributes["sessiongraph.outcome"] == code
    assert operation.status.status_code is trace.StatusCode.ERROR
    assert operation.parent is None  # no traceparent: a trace of its own


async def test_tracing_off_makes_no_span(engine, org, spans, monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    assert not wanted() and not Settings.from_env().tracing
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert wanted() and Settings.from_env().tracing
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not wanted()

    app = create_app(Settings(database_url=str(engine.url)), engine=engine)
    spans.clear()
    key = await api_key(engine, org.admin)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        headers = {"X-API-Key": key, "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
        assert (await client.post("/graphql", json={"query": PAGE}, headers=headers)).status_code == 200
    assert spans.get_finished_spans() == ()
