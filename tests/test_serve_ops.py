"""What an operator sees of `sessiongraph serve`: a quiet start-up (the address and the key
first, one line for the migrations), JSON log lines with the request id, and a graceful
shutdown at SIGTERM (requests in flight finish, WebSockets close with 1001, exit 0)."""

import asyncio
import contextlib
import json
import re
import signal
import tempfile
import time

import httpx
import pytest
import websockets

from tests.live_server import live_server

VIEWER = '{"query": "{ viewer { role } }"}'


@pytest.fixture
def sqlite_url():
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite+aiosqlite:///{directory}/ops.db"


def demo_key(log: str) -> str:
    [key] = re.findall(r"^API key: (\S+)$", log, re.MULTILINE)
    return key


def test_start_up_says_the_address_and_the_key_first_and_migrations_in_one_line(sqlite_url):
    with live_server(sqlite_url, "--demo") as server:
        lines = server.log().splitlines()
    port = server.url.split(":")[2].split("/")[0]
    assert lines[0].startswith(f"GraphiQL: http://127.0.0.1:{port}/graphql")
    assert lines[1].startswith("API key: sg_")
    assert re.fullmatch(r"database: sqlite\+aiosqlite:///.*ops\.db, schema migrated to \S+ \(\d+ steps?\)", lines[2])
    assert not [line for line in lines if "alembic" in line or "Running upgrade" in line or "Uvicorn running" in line]


def test_a_server_not_started_for_the_demo_prints_no_key(sqlite_url):
    with live_server(sqlite_url) as server:
        lines = server.log().splitlines()
    assert lines[0].startswith("GraphiQL: http://127.0.0.1:")
    assert not [line for line in lines if "API key" in line]
    assert re.fullmatch(r"database: .*, schema migrated to \S+ \(\d+ steps?\)", lines[1])


def test_json_logs_carry_the_request_id(sqlite_url):
    with live_server(sqlite_url, "--demo", "--log-format", "json", "--access-log") as server:
        key = next(json.loads(line)["message"] for line in server.log().splitlines() if "API key" in line).split()[-1]
        response = httpx.post(server.url, content=VIEWER, headers={"X-API-Key": key, "Content-Type": "application/json", "X-Request-Id": "ops-test-1"})
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while "ops-test-1" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        entries = [json.loads(line) for line in server.log().splitlines()]  # every line is JSON
    assert entries[0]["message"].startswith("GraphiQL: http://127.0.0.1:")
    [access] = [entry for entry in entries if entry.get("request_id") == "ops-test-1"]
    assert access["logger"] == "uvicorn.access" and "POST /graphql" in access["message"] and "200" in access["message"]
    assert {"time", "level", "logger", "message"} <= set(access)


async def slow_request(port: int, key: str, pause: float) -> tuple[float, int]:
    """A POST whose body arrives in two halves `pause` seconds apart: in flight on the server
    all that time. Returns when it started and its status (0: no answer)."""
    body = VIEWER.encode()
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(pause)
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 20)
        return started, int(status_line.split()[1]) if status_line else 0
    except OSError:
        return started, 0
    finally:
        writer.close()


async def steady_load(url: str, key: str, stop: asyncio.Event, results: list) -> None:
    """Requests one after another on one connection until `stop`; each as (start, status)."""
    async with httpx.AsyncClient(headers={"X-API-Key": key, "Content-Type": "application/json"}, timeout=20) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = (await client.post(url, content=VIEWER)).status_code
            except httpx.TransportError:
                status = 0
            results.append((started, status))
            if status == 0:
                await asyncio.sleep(0.05)


async def test_sigterm_finishes_requests_in_flight_closes_websockets_with_1001_and_exits_0(sqlite_url):
    with live_server(sqlite_url, "--demo", "--shutdown-grace", "15") as server:
        key = demo_key(server.log())
        port = int(server.url.split(":")[2].split("/")[0])
        socket = await websockets.connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"])
        await socket.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "subscription { sessionUpdates { kind } }"}}))

        stop, load = asyncio.Event(), []
        loaders = [asyncio.create_task(steady_load(server.url, key, stop, load)) for _ in range(4)]
        slow = [asyncio.create_task(slow_request(port, key, 2.0)) for _ in range(3)]
        await asyncio.sleep(1.0)
        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == 1001
        slow_results = await asyncio.gather(*slow)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*loaders)
        returncode = await asyncio.to_thread(server.process.wait, 20)
        log = server.log()

    assert returncode == 0, log
    assert all(started < sent_at and status == 200 for started, status in slow_results), slow_results
    before = [status for started, status in load if started < sent_at]
    assert len(before) >= 8 and before.count(200) == len(before), [s for s in before if s != 200]
    assert any(started > sent_at and status == 0 for started, status in load)  # it did stop accepting
    assert "SIGTERM: no new connections" in log and "closing 1 WebSocket connection(s) with 1001" in log
