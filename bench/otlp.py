"""OpenTelemetry ingest against appendEvents: spans a second stored by POST /v1/traces, and
the same events a second stored by the appendEvents mutation, in one run, on a live
`sessiongraph serve` (one worker) per database.

The spans are the default exporter's shape: batches of 512 spans (BatchSpanProcessor's
max_export_batch_size), in the order spans end (children first, the root last), 10 spans a
trace (an agent's root span, model calls with token counts and output messages, tool
calls), ten traces a conversation (gen_ai.conversation.id), so a batch spans a few sessions
and cuts some traces in two. The bodies are encoded before the clock starts; one client
sends one request at a time.

appendEvents carries the same events (the ingest's own mapping of each span), three ways:
- `appendEvents, 512 a call`: the batch as it is, into one session, no turns: the fewest calls;
- `appendEvents, a call a trace`: each trace's 10 events into its turn (started beforehand,
  not timed), as an agent recording its turns would append them;
- `startTurn + appendEvents + completeTurn`: all that the ingest does, by mutations.

The ingest and `appendEvents, 512 a call` take turns batch by batch, so that the load of a
shared machine weighs on both alike.

Run: python bench/otlp.py [--databases sqlite,postgresql] [--traces 512] [--no-per-trace]
Prints a Markdown section.
"""

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sessiongraph.gate.auth import create_key
from sessiongraph.ingest.otlp import read_span
from sessiongraph.models import create_engine
from sessiongraph.resolvers.context import Viewer

BATCH = 512
NS = 1_000_000_000
APPEND = "mutation($input: AppendEventsInput!) { appendEvents(input: $input) { events { seq } } }"
START = "mutation($input: StartTurnInput!) { startTurn(input: $input) { turn { id } } }"
COMPLETE = "mutation($input: CompleteTurnInput!) { completeTurn(input: $input) { turn { status } } }"
CREATE = "mutation($input: CreateSessionInput!) { createSession(input: $input) { session { id } } }"


def make_spans(traces: int, spans_a_trace: int, traces_a_conversation: int) -> list:
    """ReadableSpans in the order they ended."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    t0 = time.time_ns() - traces * 60 * NS
    for t in range(traces):
        conversation = {"gen_ai.conversation.id": f"bench-{t // traces_a_conversation}"}
        start = t0 + t * 60 * NS
        root = tracer.start_span("invoke_agent planner", start_time=start, attributes={
            **conversation, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
            "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Plan trip %d"}]}]' % t,
        })
        context = trace.set_span_in_context(root)
        for i in range(spans_a_trace - 1):
            tool = i % 3 == 2
            child = tracer.start_span(
                "execute_tool search" if tool else "chat gpt-4o", context=context, kind=SpanKind.CLIENT,
                start_time=start + (i + 1) * NS,
                attributes={**conversation, "gen_ai.agent.name": "planner", **(
                    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "gen_ai.tool.call.result": f"result {i}"}
                    if tool else
                    {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
                     "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "step %d of trip %d"}]}]' % (i, t)}
                )},
            )
            child.end(end_time=start + (i + 1) * NS + NS // 2)
        root.set_attribute("gen_ai.output.messages", '[{"role": "assistant", "parts": [{"type": "text", "content": "Trip %d planned"}]}]' % t)
        root.end(end_time=start + spans_a_trace * NS)
    return list(memory.get_finished_spans())


def event_inputs(request, viewer: Viewer) -> list[tuple]:
    """(trace id, is root, the span read, appendEvents' EventInput) for each span of an encoded request, as the ingest maps it."""
    found = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                facts = read_span(span, {}, viewer)
                e = facts.event
                found.append((facts.trace_id, facts.is_root, facts, {
                    "type": e.type, "agentId": e.agent_id, "message": e.content.decode(), "timestamp": e.timestamp.isoformat(),
                    "payload": e.payload, "dedupKey": e.dedup_key,
                }))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(database_url: str):
    port = free_port()
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiongraph.cli", "--database-url", database_url, "serve", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {open(log.name).read()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.unlink(log.name)


async def fresh_database(kind: str, postgres_url: str, directory: str) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{directory}/bench-otlp.db"
    import asyncpg

    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, name = plain.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres_url


async def keys(database_url: str, count: int) -> list[tuple[Viewer, str]]:
    engine = create_engine(database_url)
    org = uuid.uuid4()
    made = []
    try:
        for _ in range(count):
            viewer = Viewer(uuid.uuid4(), org, "USER", "USER")
            made.append((viewer, (await create_key(engine, org, viewer.user_id))[1]))
    finally:
        await engine.dispose()
    return made


def graphql(http: httpx.Client, key: str, query: str, variables: dict) -> dict:
    response = http.post("/graphql", json={"query": query, "variables": variables}, headers={"X-API-Key": key})
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


def rate(spans: int, seconds: float) -> str:
    return f"{spans / seconds:,.0f}"


def run(kind: str, args) -> list[tuple[str, int, float]]:
    directory = tempfile.mkdtemp()
    url = asyncio.run(fresh_database(kind, args.postgres_url, directory))
    spans = make_spans(args.traces, args.spans_a_trace, args.traces_a_conversation)
    requests = [encode_spans(spans[i:i + BATCH]) for i in range(0, len(spans), BATCH)]
    bodies = [r.SerializeToString() for r in requests]
    total = len(spans)
    results = []
    with serve(url) as base, httpx.Client(base_url=base, timeout=120) as http:
        (ingester, ingest_key), (batcher, batch_key), (per_trace, trace_key), (full, full_key) = asyncio.run(keys(url, 4))
        events = [found for r in requests for found in event_inputs(r, batcher)]

        # appendEvents, 512 a call, one session, no turns; and the ingest, the encoded
        # batches as the exporter posts them. One batch each in turn, so that whatever else
        # the machine does weighs on both alike.
        session = graphql(http, batch_key, CREATE, {"input": {"externalId": "bench"}})["createSession"]["session"]["id"]
        appending = ingesting = 0.0
        for n, body in enumerate(bodies):
            started = time.perf_counter()
            graphql(http, batch_key, APPEND, {"input": {"sessionId": session, "events": [e[3] for e in events[n * BATCH:(n + 1) * BATCH]]}})
            appending += time.perf_counter() - started
            started = time.perf_counter()
            response = http.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf", "X-API-Key": ingest_key})
            ingesting += time.perf_counter() - started
            assert response.status_code == 200, response.content
            assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success"), response.content
        results.append(("appendEvents, 512 a call", total, appending))
        results.append(("POST /v1/traces (OTLP protobuf, 512 spans a request)", total, ingesting))

        # What the ingest stored: a turn a trace (the sessions page by page).
        turns, after = 0, None
        while True:
            page = graphql(http, ingest_key, "query($after: String) { sessions(first: 100, after: $after) { "
                           "pageInfo { hasNextPage endCursor } nodes { turnCount } } }", {"after": after})["sessions"]
            turns += sum(node["turnCount"] for node in page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert turns == args.traces, (turns, args.traces)
        if not args.per_trace:
            return results

        # appendEvents, a call a trace, into its turn (sessions and turns made beforehand).
        by_trace: dict[str, list] = {}
        for e in events:
            by_trace.setdefault(e[0], []).append(e)
        turn_ids = {}
        for n, trace_id in enumerate(by_trace):
            conversation = f"bench-{n // args.traces_a_conversation}"
            if n % args.traces_a_conversation == 0:
                graphql(http, trace_key, CREATE, {"input": {"externalId": conversation}})
            turn_ids[trace_id] = graphql(http, trace_key, START, {"input": {"sessionId": conversation, "taskId": trace_id}})["startTurn"]["turn"]["id"]
        started = time.perf_counter()
        for n, (trace_id, found) in enumerate(by_trace.items()):
            graphql(http, trace_key, APPEND, {"input": {
                "sessionId": f"bench-{n // args.traces_a_conversation}", "turnId": turn_ids[trace_id], "events": [e[3] for e in found],
            }})
        results.append(("appendEvents, a call a trace (into its turn)", total, time.perf_counter() - started))

        # All the ingest does, by mutations: startTurn, appendEvents, completeTurn a trace.
        for n in range(0, len(by_trace), args.traces_a_conversation):
            graphql(http, full_key, CREATE, {"input": {"externalId": f"bench-{n // args.traces_a_conversation}"}})
        started = time.perf_counter()
        for n, (trace_id, found) in enumerate(by_trace.items()):
            conversation = f"bench-{n // args.traces_a_conversation}"
            root = next(e[2] for e in found if e[1])
            turn = graphql(http, full_key, START, {"input": {"sessionId": conversation, "taskId": trace_id, "userQuery": root.user_query}})
            turn_id = turn["startTurn"]["turn"]["id"]
            graphql(http, full_key, APPEND, {"input": {"sessionId": conversation, "turnId": turn_id, "events": [e[3] for e in found]}})
            graphql(http, full_key, COMPLETE, {"input": {
                "turnId": turn_id, "status": "COMPLETED", "result": root.result,
                "tokensUsed": sum(e[2].tokens for e in found),
            }})
        results.append(("startTurn + appendEvents + completeTurn a trace", total, time.perf_counter() - started))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_otlp")
    parser.add_argument("--traces", type=int, default=512, help="traces in all (10 spans each by default)")
    parser.add_argument("--spans-a-trace", type=int, default=10)
    parser.add_argument("--traces-a-conversation", type=int, default=10)
    parser.add_argument("--no-per-trace", dest="per_trace", action="store_false",
                        help="only the 512-a-call comparison (the per-trace mutations take a minute or two)")
    args = parser.parse_args()
    print("## OpenTelemetry ingest against appendEvents\n")
    print(f"{args.traces} traces of {args.spans_a_trace} spans, {args.traces_a_conversation} traces a conversation, "
          f"{BATCH} spans a request; one client, one request at a time, one server worker.\n")
    print("| database | how | spans | seconds | spans/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    ratios = []
    for kind in args.databases.split(","):
        results = run(kind.strip(), args)
        for how, spans, seconds in results:
            print(f"| {kind} | {how} | {spans} | {seconds:.2f} | {rate(spans, seconds)} |", flush=True)
        ratios.append(f"{kind} {results[0][2] / results[1][2]:.2f}x")
    print(f"\nIngest against appendEvents at 512 a call (spans/s over events/s): {', '.join(ratios)}.")


if __name__ == "__main__":
    main()
