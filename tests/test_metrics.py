"""`sessiongraph serve --metrics-port`: after traffic of a known shape, /metrics (on its own
listener, not the API's port) reports what that traffic was -- operations by name, type and
outcome, their latency and SQL statements, the planner's answers, open subscriptions and
WebSockets, events written, the pool -- and under `--workers 2` the sum over both workers."""

import asyncio
import json
import re
import tempfile

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_URL, fresh_database
from tests.live_server import free_port, live_server

VIEWER = "query Viewer { viewer { userId } }"
SESSIONS = "query FirstSessions { sessions(first: 2, filter: {statuses: [OPEN]}) { nodes { id } } }"  # a DONE session takes no events
APPEND = """mutation Append($input: AppendEventsInput!) { appendEvents(input: $input) { events { seq } } }"""
UNKNOWN_HASH = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}


@pytest.fixture
def sqlite_url():
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite+aiosqlite:///{directory}/metrics.db"


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, for every sample of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict, metric: str, **labels) -> float:
    return scraped.get((metric, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict, metric: str, **labels) -> float:
    """The sum over every sample of `metric` whose labels include `labels`."""
    return sum(v for (n, ls), v in scraped.items() if n == metric and set(labels.items()) <= set(ls))


def demo_key(log: str) -> str:
    [key] = re.findall(r"^API key: (\S+)$", log, re.MULTILINE)
    return key


async def test_metrics_count_the_traffic_they_saw(sqlite_url):
    metrics_port = free_port()
    with live_server(sqlite_url, "--demo", "--metrics-port", str(metrics_port)) as server:
        key = demo_key(server.log())
        assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in server.log()
        port = int(server.url.split(":")[2].split("/")[0])
        headers = {"X-API-Key": key}
        async with httpx.AsyncClient(headers=headers, timeout=20) as client:
            for query in (VIEWER, VIEWER, SESSIONS):
                assert (await client.post(server.url, json={"query": query})).json().get("errors") is None
            [session] = (await client.post(server.url, json={"query": SESSIONS})).json()["data"]["sessions"]["nodes"][:1]
            events = [{"type": "NOTE", "message": "one"}, {"type": "NOTE", "message": "two"}, {"type": "NOTE", "message": "three"}]
            appended = await client.post(server.url, json={"query": APPEND, "variables": {"input": {"sessionId": session["id"], "events": events}}})
            assert appended.json().get("errors") is None, appended.json()
            refused = await client.post(server.url, json=UNKNOWN_HASH)
            assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
            # The API's port does not serve the metrics.
            assert (await client.get(server.url.replace("/graphql", "/metrics"))).status_code == 404

        socket = await websockets.connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"])
        try:
            await socket.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "subscription Updates { sessionUpdates { kind } }"}}))
            scraped = {}
            for _ in range(100):  # the subscription is counted once its stream has started
                scraped = samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
                if value(scraped, "sessiongraph_subscriptions_open"):
                    break
                await asyncio.sleep(0.05)
        finally:
            await socket.close()

    operations = "sessiongraph_operations_total"
    assert value(scraped, operations, name="Viewer", type="query", outcome="ok") == 2
    assert value(scraped, operations, name="FirstSessions", type="query", outcome="ok") == 2
    assert value(scraped, operations, name="Append", type="mutation", outcome="ok") == 1
    assert value(scraped, operations, name="anonymous", type="unknown", outcome="PERSISTED_QUERY_NOT_FOUND") == 1
    assert total(scraped, operations) == 6
    assert value(scraped, "sessiongraph_operation_seconds_count", name="Viewer", type="query") == 2
    assert value(scraped, "sessiongraph_operation_seconds_count", name="Append", type="mutation") == 1
    assert value(scraped, "sessiongraph_operation_sql_statements_count", type="query") == 4
    assert value(scraped, "sessiongraph_operation_sql_statements_sum", type="query") >= 2  # the sessions pages
    assert value(scraped, "sessiongraph_operation_sql_statements_sum", type="mutation") >= 1
    # Every query the planner covers it answers itself: no fallback in this traffic.
    assert value(scraped, "sessiongraph_planner_queries_total", answer="planned") == 4
    assert total(scraped, "sessiongraph_planner_queries_total") == 4
    assert value(scraped, "sessiongraph_subscriptions_open") == 1
    assert value(scraped, "sessiongraph_websocket_connections_open") == 1
    assert value(scraped, "sessiongraph_events_written_total") == 3
    assert value(scraped, "sessiongraph_db_pool_size") == 20
    assert value(scraped, "sessiongraph_db_connections_open") >= 1


@pytest.mark.skipif(not POSTGRES_URL, reason="several workers need PostgreSQL (SQLite is refused them) and SESSIONGRAPH_TEST_POSTGRES_URL is not set")
async def test_metrics_under_workers_add_up_both_workers():
    metrics_port = free_port()
    async with fresh_database("postgresql") as url:
        with live_server(url, "--demo", "--workers", "2", "--metrics-port", str(metrics_port), start_timeout=60) as server:
            key = demo_key(server.log())
            # A new connection per request: the kernel hands them to either worker.
            for _ in range(20):
                response = httpx.post(server.url, json={"query": VIEWER}, headers={"X-API-Key": key}, timeout=20)
                assert response.json().get("errors") is None
            scraped = samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
    assert value(scraped, "sessiongraph_operations_total", name="Viewer", type="query", outcome="ok") == 20
    assert value(scraped, "sessiongraph_operation_seconds_count", name="Viewer", type="query") == 20
    # Each worker keeps a pool of 20: the gauge is the sum over the live workers.
    assert value(scraped, "sessiongraph_db_pool_size") == 40
