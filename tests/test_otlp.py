"""OpenTelemetry ingest (POST /v1/traces): spans made by the OpenTelemetry SDK and sent by its
OTLP/HTTP exporter to a live server become the sessions, turns and events the contract
promises; retries and any order or split of a trace's spans give the same session; refusals
are counted in partial_success; errors are answered with OTLP/HTTP's status codes."""

import asyncio
import base64
import gzip
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from sessiongraph.ingest.otlp import ingest
from sessiongraph.resolvers import rules
from tests.conftest import T0, api_key, count_statements, execute, ok
from tests.live_server import app_client, live_server
from tests.test_recording import machine
from tests.test_subscriptions import EVENTS, subscribe, take

ROOT = Path(__file__).resolve().parent.parent
NS = 1_000_000_000
START = int(T0.timestamp()) * NS

SESSION = """
query($id: ID!) {
  session(id: $id) {
    externalId userId status kind createdAt updatedAt lastActivityAt turnCount tokensUsed
    turns(first: 100) { edges { node {
      taskId userQuery finalOutput status createdAt completedAt tokensUsed executionTimeMs agentsInvolved
    } } }
    events(first: 100) { totalCount edges { node { seq type agentId message timestamp payload turn { taskId } } } }
  }
}"""


# -- making spans with the SDK


class Spans:
    """Spans recorded by the OpenTelemetry SDK (kept in memory until sent), with the times
    and attributes a test gives: seconds after T0."""

    def __init__(self, **resource) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "test-agent", **resource}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("tests.test_otlp")

    def span(self, name: str, start: float, end: float, parent=None, error: str | None = None, kind=SpanKind.INTERNAL, **attributes):
        context = None if parent is None else trace.set_span_in_context(parent)
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=START + int(start * NS))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=START + int(end * NS))
        return span

    def open(self, name: str, start: float, parent=None, **attributes):
        """A span whose children come before it ends (`close` ends it)."""
        context = None if parent is None else trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=context, attributes=attributes, start_time=START + int(start * NS))

    @staticmethod
    def close(span, end: float, error: str | None = None, **attributes):
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=START + int(end * NS))
        return span

    def finished(self) -> list:
        """The ended spans, in the order they ended (the order an exporter sends them)."""
        return list(self.memory.get_finished_spans())


def trace_id(span) -> str:
    return format(span.context.trace_id, "032x")


def span_id(span) -> str:
    return format(span.context.span_id, "016x")


def messages(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in pairs])


def genai_conversation(spans: Spans, conversation: str) -> dict:
    """Two turns of a multi-agent conversation under the GenAI conventions: an orchestrator
    calling a model, a tool and a researcher agent (which calls a model); the second turn
    fails. What each turn should become."""
    c = {"gen_ai.conversation.id": conversation}
    root = spans.open(
        "invoke_agent orchestrator", 0, **c, **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orchestrator",
        "gen_ai.input.messages": messages(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Find flights to Oslo"))},
    )
    spans.span("chat gpt-4o", 1, 2, root, kind=SpanKind.CLIENT, **c, **{
        "gen_ai.operation.name": "chat", "gen_ai.agent.name": "orchestrator", "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20, "gen_ai.output.messages": messages(("assistant", "I will search."))})
    spans.span("execute_tool search_flights", 2, 3, root, **c, **{
        "gen_ai.operation.name": "execute_tool", "gen_ai.agent.name": "orchestrator", "gen_ai.tool.name": "search_flights",
        "gen_ai.tool.call.result": "3 flights"})
    researcher = spans.open("invoke_agent researcher", 3, root, **c, **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "researcher"})
    spans.span("chat gpt-4o-mini", 4, 5, researcher, **c, **{
        "gen_ai.operation.name": "chat", "gen_ai.agent.id": "researcher", "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 30, "gen_ai.output.messages": messages(("assistant", "SK 4601 is cheapest."))})
    spans.close(researcher, 8, **{"gen_ai.output.messages": messages(("assistant", "SK 4601 is cheapest."))})
    spans.span("chat gpt-4o", 8, 9, root, **c, **{
        "gen_ai.operation.name": "chat", "gen_ai.agent.name": "orchestrator", "gen_ai.usage.input_tokens": 200,
        "gen_ai.usage.output_tokens": 40, "gen_ai.output.messages": messages(("assistant", "Take SK 4601."), ("assistant", "It leaves at 9."))})
    spans.close(root, 10, **{"gen_ai.output.messages": messages(("assistant", "Take SK 4601."), ("assistant", "It leaves at 9."))})

    second = spans.open("invoke_agent orchestrator", 20, **c, **{
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orchestrator", "gen_ai.input.messages": messages(("user", "Book it"))})
    spans.span("chat gpt-4o", 21, 22, second, **c, **{
        "gen_ai.operation.name": "chat", "gen_ai.agent.name": "orchestrator", "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5, "gen_ai.output.messages": messages(("assistant", "Paying now."))})
    spans.close(second, 25, error="payment declined")
    return {
        trace_id(root): {"userQuery": "Find flights to Oslo", "finalOutput": "Take SK 4601.\nIt leaves at 9.", "status": "COMPLETED",
                         "tokensUsed": 440, "agentsInvolved": ["orchestrator", "researcher"], "executionTimeMs": 10_000},
        # No output on the failed root: the turn's final output is its first model output.
        trace_id(second): {"userQuery": "Book it", "finalOutput": "Paying now.", "status": "FAILED", "tokensUsed": 15,
                           "agentsInvolved": ["orchestrator"], "executionTimeMs": 5_000},
    }


# -- sending them


@pytest.fixture(scope="module")
def server(database_url):
    with live_server(database_url) as running:
        yield running.url.removesuffix("/graphql")


def exporter(server: str, key: str, compression=Compression.Gzip) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{server}/v1/traces", headers={"X-API-Key": key}, compression=compression)


def export(server: str, key: str, spans: list, compression=Compression.Gzip) -> None:
    """Sends spans with OpenTelemetry's OTLP/HTTP exporter (protobuf), which must succeed."""
    sender = exporter(server, key, compression)
    try:
        assert sender.export(spans) is SpanExportResult.SUCCESS
    finally:
        sender.shutdown()


def otlp_json(spans: list) -> bytes:
    """The request as OTLP/JSON: the exporter's encoding, in protobuf's JSON mapping with
    the ids in hex as OTLP/JSON has them (instead of base64)."""
    document = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(document).encode()


def post(url: str, key: str | None, body: bytes, content_type="application/x-protobuf", **headers) -> httpx.Response:
    headers = {"Content-Type": content_type, **headers}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(url, content=body, headers=headers, timeout=30)


def partial_success(response: httpx.Response) -> tuple[int, str]:
    assert response.status_code == 200, response.content
    if response.headers["content-type"].startswith("application/json"):
        parsed = json_format.Parse(response.content, ExportTraceServiceResponse())
    else:
        parsed = ExportTraceServiceResponse.FromString(response.content)
    return parsed.partial_success.rejected_spans, parsed.partial_success.error_message


async def session_of(engine, viewer, external_id: str) -> dict | None:
    return (await ok(engine, viewer, SESSION, {"id": external_id}))["session"]


def turns_of(session: dict) -> dict:
    return {edge["node"]["taskId"]: edge["node"] for edge in session["turns"]["edges"]}


def events_of(session: dict) -> list[dict]:
    return [edge["node"] for edge in session["events"]["edges"]]


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


# -- what the spans become


async def test_genai_conversation_of_several_agents_with_tools(engine, org, server):
    spans = Spans()
    expected = genai_conversation(spans, "trip-42")
    export(server, await api_key(engine, org.alice), spans.finished())

    session = await session_of(engine, org.alice, "trip-42")
    assert (session["kind"], session["status"], session["userId"]) == ("AGENT", "OPEN", str(org.alice.user_id))
    assert (session["turnCount"], session["tokensUsed"]) == (2, 455)
    assert session["createdAt"] == iso(0)
    turns = turns_of(session)
    assert {task: {k: t[k] for k in expected[task]} for task, t in turns.items()} == expected
    first, second = (turns[task] for task in expected)
    assert (first["createdAt"], first["completedAt"], second["createdAt"], second["completedAt"]) == (iso(0), iso(10), iso(20), iso(25))

    events = events_of(session)
    assert [(e["seq"], e["type"], e["agentId"], e["message"], e["timestamp"]) for e in events] == [
        (1, "AGENT", "orchestrator", "Take SK 4601.\nIt leaves at 9.", iso(0)),
        (2, "LLM_OUTPUT", "orchestrator", "I will search.", iso(1)),
        (3, "TOOL_INVOKED", "orchestrator", "3 flights", iso(2)),
        (4, "AGENT", "researcher", "SK 4601 is cheapest.", iso(3)),
        (5, "LLM_OUTPUT", "researcher", "SK 4601 is cheapest.", iso(4)),
        (6, "LLM_OUTPUT", "orchestrator", "Take SK 4601.\nIt leaves at 9.", iso(8)),
        (7, "AGENT", "orchestrator", "invoke_agent orchestrator", iso(20)),  # no output: its name
        (8, "LLM_OUTPUT", "orchestrator", "Paying now.", iso(21)),
    ]
    assert [e["turn"]["taskId"] for e in events] == [*[list(expected)[0]] * 6, *[list(expected)[1]] * 2]
    tool = events[2]["payload"]
    assert tool["name"] == "execute_tool search_flights" and tool["kind"] == "INTERNAL"
    assert (tool["traceId"], tool["parentSpanId"]) == (list(expected)[0], events[0]["payload"]["spanId"])
    assert tool["durationMs"] == 1000 and tool["status"] == {"code": "UNSET", "message": None}
    assert tool["attributes"]["gen_ai.tool.name"] == "search_flights"
    assert events[6]["payload"]["status"] == {"code": "ERROR", "message": "payment declined"}
    assert events[1]["payload"]["kind"] == "CLIENT"


async def test_openinference_spans_as_json_and_a_session_named_on_the_resource(engine, org, server):
    key = await api_key(engine, org.alice)
    spans = Spans()
    chain = spans.open("agent.run", 0, **{"openinference.span.kind": "CHAIN", "session.id": "oi-1", "input.value": "What is 2+2?"})
    spans.span("llm", 1, 2, chain, **{"openinference.span.kind": "LLM", "session.id": "oi-1", "llm.token_count.total": 42,
                                      "output.value": "4"})
    spans.span("calculator", 2, 3, chain, **{"openinference.span.kind": "TOOL", "session.id": "oi-1", "output.value": "4"})
    spans.close(chain, 4, **{"output.value": "2 + 2 = 4"})
    langfuse = Spans(**{"langfuse.session.id": "lf-7"})  # on the resource: every span of this provider
    langfuse.span("generation", 0, 1, **{"llm.token_count.total": 7, "input.value": "ping", "output.value": "pong"})

    url = f"{server}/v1/traces"
    response = post(url, key, otlp_json(spans.finished() + langfuse.finished()), "application/json")
    assert response.headers["content-type"] == "application/json"
    assert partial_success(response) == (0, "")

    session = await session_of(engine, org.alice, "oi-1")
    [turn] = turns_of(session).values()
    assert (turn["userQuery"], turn["finalOutput"], turn["status"], turn["tokensUsed"]) == ("What is 2+2?", "2 + 2 = 4", "COMPLETED", 42)
    assert [(e["type"], e["message"]) for e in events_of(session)] == [("SPAN", "2 + 2 = 4"), ("SPAN", "4"), ("SPAN", "4")]
    assert events_of(session)[1]["payload"]["attributes"]["openinference.span.kind"] == "LLM"
    other = await session_of(engine, org.alice, "lf-7")
    assert (other["turnCount"], other["tokensUsed"], turns_of(other)[trace_id(langfuse.finished()[0])]["finalOutput"]) == (1, 7, "pong")


async def test_a_trace_without_a_session_attribute_is_its_own_session(engine, org, server):
    spans = Spans()
    root = spans.open("handle request", 0)
    spans.span("step", 1, 2, root)
    spans.close(root, 3)
    export(server, await api_key(engine, org.alice), spans.finished(), Compression.NoCompression)
    session = await session_of(engine, org.alice, trace_id(root))
    assert (session["externalId"], session["turnCount"], session["events"]["totalCount"]) == (trace_id(root), 1, 2)


async def test_a_retried_export_stores_nothing_twice(engine, org, server):
    key = await api_key(engine, org.alice)
    spans = Spans()
    genai_conversation(spans, "retry")
    export(server, key, spans.finished())
    before = await session_of(engine, org.alice, "retry")
    export(server, key, spans.finished())
    export(server, key, spans.finished()[2:5], Compression.Deflate)
    assert await session_of(engine, org.alice, "retry") == before
    assert (before["tokensUsed"], before["events"]["totalCount"]) == (455, 8)


async def test_spans_in_reverse_order_over_five_requests_give_the_session_of_one_request_in_order(engine, org, server):
    spans = Spans()
    c = {"gen_ai.conversation.id": "order"}
    root = spans.open("invoke_agent a", 0, **c, **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a",
                                                   "gen_ai.input.messages": messages(("user", "go"))})
    for i in range(9):
        spans.span(f"chat {i}", 1 + i, 1.5 + i, root, **c, **{
            "gen_ai.operation.name": "chat", "gen_ai.agent.name": f"agent-{i % 3}", "gen_ai.usage.input_tokens": i,
            "gen_ai.usage.output_tokens": 10 * i, "gen_ai.output.messages": messages(("assistant", f"answer {i}"))})
    spans.close(root, 12, **{"gen_ai.output.messages": messages(("assistant", "done"))})
    in_order = sorted(spans.finished(), key=lambda s: s.start_time)
    assert len(in_order) == 10 and span_id(in_order[0]) == span_id(root)

    export(server, await api_key(engine, org.alice), in_order)
    reverse = in_order[::-1]  # the root last, as an exporter sends them
    bob, admin = await api_key(engine, org.bob), await api_key(engine, org.admin)
    for part in range(5):
        export(server, bob, reverse[part * 2:part * 2 + 2])
        export(server, admin, in_order[part * 2:part * 2 + 2])  # the root first, alone in its request

    def same(session: dict) -> dict:
        """All of the session but its owner and the order its events arrived in (seq)."""
        events = sorted(events_of(session), key=lambda e: e["timestamp"])
        return {**session, "userId": None, "events": [{**e, "seq": None} for e in events]}

    one, five = await session_of(engine, org.alice, "order"), await session_of(engine, org.bob, "order")
    assert same(one) == same(five)
    assert same(await session_of(engine, org.admin, "order")) == same(one)
    [turn] = turns_of(one).values()
    assert (turn["status"], turn["tokensUsed"], turn["userQuery"], turn["finalOutput"]) == ("COMPLETED", 396, "go", "done")
    assert (turn["createdAt"], turn["completedAt"], one["createdAt"]) == (iso(0), iso(12), iso(0))
    assert turn["agentsInvolved"] == ["a", "agent-0", "agent-1", "agent-2"]


async def test_a_live_subscriber_sees_ingested_events(engine, org):
    key = await api_key(engine, org.alice)
    spans = Spans()
    c = {"gen_ai.conversation.id": "live", "gen_ai.operation.name": "chat"}
    spans.span("first", 0, 1, **c)
    async with app_client(engine) as http:
        async def send(batch) -> None:
            response = await http.post("/v1/traces", content=encode_spans(batch).SerializeToString(),
                                       headers={"Content-Type": "application/x-protobuf", "X-API-Key": key})
            assert response.status_code == 200 and not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")

        await send(spans.finished())
        session = await session_of(engine, org.alice, "live")
        stream = await subscribe(engine, org.alice, EVENTS, {"id": session["externalId"]})
        root = spans.open("second", 5, **c)
        spans.span("child", 6, 7, root, **c, **{"gen_ai.output.messages": messages(("assistant", "hello"))})
        spans.close(root, 8)
        await send(spans.finished()[1:])
        got = await take(stream, 2)
        await stream.aclose()
    assert [(d["sessionEvents"]["seq"], d["sessionEvents"]["type"], d["sessionEvents"]["message"]) for d in got] == [
        (2, "LLM_OUTPUT", "second"), (3, "LLM_OUTPUT", "hello")
    ]


async def test_a_span_without_the_session_attribute_goes_to_its_traces_session(engine, org, server):
    """Instrumentations often set gen_ai.conversation.id on the model calls only: the agent's
    root span, without it, still completes the turn in the conversation's session, whether
    it comes with its children or in a later request."""
    key = await api_key(engine, org.alice)
    spans = Spans()
    together = spans.open("agent", 0)
    spans.span("chat", 1, 2, together, **{"gen_ai.conversation.id": "c-1", "gen_ai.operation.name": "chat"})
    spans.close(together, 3, **{"output.value": "first"})
    later = spans.open("agent", 10)
    spans.span("chat", 11, 12, later, **{"gen_ai.conversation.id": "c-1", "gen_ai.operation.name": "chat"})
    spans.close(later, 13, **{"output.value": "second"})
    finished = spans.finished()  # as they ended: a chat, its root, the other chat, its root
    assert [s.name for s in finished] == ["chat", "agent", "chat", "agent"]
    export(server, key, finished[:2])  # the first trace in one request
    export(server, key, finished[2:3])  # the second over two
    export(server, key, finished[3:])
    session = await session_of(engine, org.alice, "c-1")
    assert [(t["status"], t["finalOutput"]) for t in turns_of(session).values()] == [("COMPLETED", "first"), ("COMPLETED", "second")]
    assert session["events"]["totalCount"] == 4
    for root in (together, later):
        assert await session_of(engine, org.alice, trace_id(root)) is None  # no session of its own


async def test_concurrent_exports_into_one_new_conversation_make_one_session(engine, org):
    key = await api_key(engine, org.alice)
    spans = Spans()
    for t in range(8):
        root = spans.open(f"turn {t}", 10 * t, **{"session.id": "busy"})
        spans.span("chat", 10 * t + 1, 10 * t + 2, root, **{"session.id": "busy", "llm.token_count.total": t})
        spans.close(root, 10 * t + 3)
    finished = spans.finished()
    async with app_client(engine) as http:
        async def send(batch) -> ExportTraceServiceResponse:
            response = await http.post("/v1/traces", content=encode_spans(batch).SerializeToString(),
                                       headers={"Content-Type": "application/x-protobuf", "X-API-Key": key})
            assert response.status_code == 200
            return ExportTraceServiceResponse.FromString(response.content)

        answers = await asyncio.gather(*(send(finished[i:i + 2]) for i in range(0, len(finished), 2)))
    assert not any(answer.HasField("partial_success") for answer in answers)
    session = await session_of(engine, org.alice, "busy")
    assert (session["turnCount"], session["tokensUsed"], session["events"]["totalCount"]) == (8, sum(range(8)), 16)
    assert sorted(e["seq"] for e in events_of(session)) == list(range(1, 17))


async def test_a_batch_costs_the_same_statements_whatever_its_number_of_traces(engine, org):
    """New traces' turns and events are written together (a few statements a session), not
    trace by trace. The live notices aside: on PostgreSQL the broker sends one pg_notify for
    each turn started or completed, as for the mutations."""
    costs = []
    for count in (2, 40):
        spans = Spans()
        for t in range(count):
            root = spans.open(f"turn {t}", t, **{"session.id": f"size-{count}"})
            spans.span("chat", t + 0.1, t + 0.2, root, **{"session.id": f"size-{count}", "gen_ai.operation.name": "chat"})
            spans.close(root, t + 0.5)
        with count_statements(engine) as counter:
            outcome = await ingest(engine, org.alice, encode_spans(spans.finished()))
        assert (outcome.accepted, outcome.rejected) == (2 * count, {})
        costs.append(len([s for s in counter.statements if "pg_notify" not in s]))
        assert (await session_of(engine, org.alice, f"size-{count}"))["turnCount"] == count
    assert costs[0] == costs[1]


# -- who may write what


async def test_a_machine_key_writes_for_users_of_its_organisation_only(engine, org, other_org, server):
    robot = machine(org)
    key = await api_key(engine, robot, machine=True)
    newcomer = uuid.uuid4()
    spans = Spans()
    for i, user in enumerate([org.alice.user_id, other_org.alice.user_id, newcomer, "not-a-uuid"]):
        spans.span(f"span {i}", i, i + 1, **{"user.id": str(user), "session.id": f"for-{i}"})
    response = post(f"{server}/v1/traces", key, encode_spans(spans.finished()).SerializeToString())
    rejected, message = partial_success(response)
    assert rejected == 2
    assert f"1 span: No user {other_org.alice.user_id} in this organisation." in message
    assert "1 span: user.id 'not-a-uuid' is not a user id (a UUID)." in message
    assert (await session_of(engine, org.alice, "for-0"))["turnCount"] == 1
    assert await session_of(engine, other_org.alice, "for-1") is None
    assert await session_of(engine, org.admin, "for-1") is None
    newcomer_viewer = type(org.alice)(newcomer, org.id, "USER", "USER")
    assert (await session_of(engine, newcomer_viewer, "for-2"))["userId"] == str(newcomer)


async def test_a_user_key_cannot_name_another_user_and_a_refused_span_leaves_its_batch_stored(engine, org, server):
    key = await api_key(engine, org.alice)
    spans = Spans()
    root = spans.open("root", 0, **{"session.id": "mixed"})
    spans.span("for bob", 1, 2, root, **{"session.id": "mixed", "user.id": str(org.bob.user_id)})
    spans.span("bad agent", 2, 3, root, **{"session.id": "mixed", "gen_ai.agent.name": "x" * 300})
    spans.span("bad tokens", 3, 4, root, **{"session.id": "mixed", "gen_ai.usage.input_tokens": -5})
    spans.span("fine", 4, 5, root, **{"session.id": "mixed", "gen_ai.usage.input_tokens": 3})
    spans.close(root, 6)
    response = post(f"{server}/v1/traces", key, gzip.compress(encode_spans(spans.finished()).SerializeToString()),
                    **{"Content-Encoding": "gzip"})
    rejected, message = partial_success(response)
    assert rejected == 3
    assert "A USER key records only for its own user." in message
    assert "The agent id is longer than 255 characters." in message
    assert "token count" in message
    session = await session_of(engine, org.alice, "mixed")
    assert [e["message"] for e in events_of(session)] == ["root", "fine"]
    assert (session["tokensUsed"], turns_of(session)[trace_id(root)]["status"]) == (3, "COMPLETED")
    assert await session_of(engine, org.bob, "mixed") is None


async def test_a_nul_character_is_refused_with_its_reason_as_appendEvents_refuses_it(engine, org):
    """PostgreSQL stores a NUL in neither jsonb nor text: the shared rule refuses it on both
    databases, for the ingest (that span, counted) and for appendEvents (BAD_USER_INPUT)."""
    spans = Spans()
    # The root's messages are JSON text: a NUL escaped in it passes the payload's rule and
    # is a NUL in the user query it gives.
    root = spans.open("root", 0, **{"session.id": "nul", "gen_ai.input.messages": messages(("user", "ask\x00"))})
    spans.span("attribute", 1, 2, root, **{"session.id": "nul", "note": "a\x00b"})
    spans.span("fine", 2, 3, root, **{"session.id": "nul"})
    spans.close(root, 4)
    outcome = await ingest(engine, org.alice, encode_spans(spans.finished()))
    assert outcome.rejected == {
        "The payload holds the character U+0000 (NUL) in a string or key; text may not hold it.": 1,
        "The user query holds the character U+0000 (NUL); text may not hold it.": 1,
    }
    session = await session_of(engine, org.alice, "nul")
    assert [e["message"] for e in events_of(session)] == ["fine"]
    result = await execute(engine, org.alice, """mutation($e: [EventInput!]!) {
      appendEvents(input: {sessionId: "nul", events: $e}) { events { seq } } }""", {"e": [{"type": "X", "payload": {"a": "x\x00"}}]})
    assert [e.extensions["code"] for e in result.errors] == ["BAD_USER_INPUT"]
    assert "U+0000 (NUL)" in result.errors[0].message



async def test_spans_taking_a_sessions_tokens_past_the_largest_int_are_refused_and_the_rest_stored(engine, org):
    """A session's tokens are at most 2^31-1 (rules.TOKENS_OVER): the spans that would take one
    past it are counted as refused, whatever of theirs the writer had written is undone, and
    another session's spans in the same request are stored."""
    first = Spans()
    root = first.open("root", 0, **{"session.id": "big"})
    first.span("call", 1, 2, root, **{"session.id": "big", "gen_ai.usage.input_tokens": 2_000_000_000})
    first.close(root, 3)
    assert (await ingest(engine, org.alice, encode_spans(first.finished()))).rejected == {}
    more = Spans()
    root = more.open("root", 10, **{"session.id": "big"})
    more.span("call", 11, 12, root, **{"session.id": "big", "gen_ai.usage.input_tokens": 200_000_000})
    more.close(root, 13)
    other = more.open("other root", 10, **{"session.id": "small"})
    more.span("call", 11, 12, other, **{"session.id": "small", "gen_ai.usage.input_tokens": 7})
    more.close(other, 13)
    outcome = await ingest(engine, org.alice, encode_spans(more.finished()))
    assert outcome.rejected == {rules.TOKENS_OVER: 2}
    big, small = await session_of(engine, org.alice, "big"), await session_of(engine, org.alice, "small")
    assert (big["tokensUsed"], big["turnCount"], len(events_of(big))) == (2_000_000_000, 1, 2)
    assert (small["tokensUsed"], [e["message"] for e in events_of(small)]) == (7, ["other root", "call"])


# -- HTTP errors


async def test_bad_key_malformed_oversized_and_unsupported_bodies(engine, org):
    key = await api_key(engine, org.alice)
    spans = Spans()
    spans.span("s", 0, 1, **{"session.id": "errors"})
    good = encode_spans(spans.finished()).SerializeToString()
    async with app_client(engine, max_body_bytes=4096) as http:
        async def send(body: bytes, content_type="application/x-protobuf", key=key, **headers):
            if key is not None:
                headers["X-API-Key"] = key
            return await http.post("/v1/traces", content=body, headers={"Content-Type": content_type, **headers})

        def status(response, json=False) -> str:
            if json:
                return json_format.Parse(response.content, status_pb2.Status()).message
            return status_pb2.Status.FromString(response.content).message

        for bad_key in (None, "sg_not-a-key"):
            response = await send(good, key=bad_key)
            assert response.status_code == 401 and status(response) == "A valid API key is required."
        response = await send(b"\xff\xff\xff not protobuf")
        assert response.status_code == 400 and "not an OTLP ExportTraceServiceRequest" in status(response)
        for body in (b"{", b"[1]", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
                     b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}'):
            response = await send(body, "application/json")
            assert response.status_code == 400, body
            assert response.headers["content-type"] == "application/json"
            assert "not an OTLP ExportTraceServiceRequest" in status(response, json=True)
        response = await send(b"\x00" * 5000)
        assert response.status_code == 413 and "larger than 4096 bytes" in status(response)
        response = await send(gzip.compress(b"\x00" * 100_000), **{"Content-Encoding": "gzip"})  # small sent, large inflated
        assert response.status_code == 413 and "decompressed body" in status(response)
        response = await send(b"not gzip", **{"Content-Encoding": "gzip"})
        assert response.status_code == 400
        response = await send(good, **{"Content-Encoding": "br"})
        assert response.status_code == 415
        response = await send(good, "text/plain")
        assert response.status_code == 415
        assert (await http.get("/v1/traces", headers={"X-API-Key": key})).status_code == 405
        assert await session_of(engine, org.alice, "errors") is None  # nothing stored by any of them
        response = await send(good)
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
        assert (await session_of(engine, org.alice, "errors"))["turnCount"] == 1


# -- the README's example

README_QUERY = """
{
  session(id: "weather-1") {
    turnCount tokensUsed
    turns { nodes { taskId userQuery finalOutput status tokensUsed executionTimeMs agentsInvolved } }
    events(first: 20) { nodes { seq type agentId message timestamp } }
  }
}"""


async def test_the_example_agent_records_its_conversation(engine, org, server):
    key = await api_key(engine, org.alice)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": server, "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={key}"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "otel_agent.py"), "weather-1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    session = await session_of(engine, org.alice, "weather-1")
    turns = list(turns_of(session).values())
    assert [(t["userQuery"], t["finalOutput"], t["status"]) for t in turns] == [
        ("What is the weather in Paris?", "The weather in Paris: 18°C, light rain.", "COMPLETED"),
        ("And in Rome?", "The weather in Rome: 24°C, sunny.", "COMPLETED"),
    ]
    assert all(t["tokensUsed"] > 0 for t in turns) and session["tokensUsed"] == sum(t["tokensUsed"] for t in turns)
    assert [e["type"] for e in events_of(session)][:4] == ["AGENT", "LLM_OUTPUT", "TOOL_INVOKED", "LLM_OUTPUT"]
    shown = (await ok(engine, org.alice, README_QUERY))["session"]  # the query the README shows
    assert [t["finalOutput"] for t in shown["turns"]["nodes"]] == [t["finalOutput"] for t in turns]
    assert [e["message"] for e in shown["events"]["nodes"]] == [e["message"] for e in events_of(session)]
