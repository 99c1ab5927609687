"""A database that stops answering: every request ends within its timeout (the key lookup
included) with a code, SERVICE_UNAVAILABLE (503, Retry-After) while the database cannot be
reached, /readyz turns 503 within a second or two, a WebSocket's connection_init is closed
with 4503, and the server recovers by itself. PostgreSQL is frozen or cut through a relay
(faults/link.py) so that the shared server is never stopped; SQLite's write lock is held by
another connection past the busy timeout."""

import asyncio
import contextlib
import sqlite3
import time
import uuid

import httpx
import pytest
import websockets
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from sessiongraph import cli
from sessiongraph.config import Settings
from sessiongraph.transport.app import create_app
from sessiongraph.faults.link import Link
from sessiongraph.live.broker import broker_for
from sessiongraph.models import Event, create_engine
from sessiongraph.models import database as database_module
from tests.conftest import BACKENDS, api_key, store
from tests.live_server import app_client
from tests.test_recording import APPEND
from tests.test_subscriptions import serving

TIMEOUT = 1.0  # the request timeout of these tests, seconds
# What a stopped request may take past it: the timer's tick (0.1 s here) and the answer,
# on a machine that may be busy. Before the fix these answers took as long as the freeze.
SLACK = 2.0
LIST = "{ sessions(first: 5) { nodes { id } } }"


# A relay in front of PostgreSQL (SQLite has no server to freeze), or SQLite's own write
# lock: each test runs on the database it is about, never skipped on the other.
ON_POSTGRESQL = pytest.mark.parametrize("database_url", [BACKENDS[1]], indirect=True)
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextlib.asynccontextmanager
async def linked_engine(database_url: str):
    """An engine that reaches the test database through a relay: (link, engine)."""
    url = make_url(database_url)
    async with Link(url.host or "127.0.0.1", url.port or 5432) as link:
        engine = create_engine(url.set(host="127.0.0.1", port=link.listen_port).render_as_string(hide_password=False))
        try:
            yield link, engine
        finally:
            link.restore()
            await broker_for(engine).close()
            await engine.dispose()


async def timed(request):
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


@ON_POSTGRESQL
@pytest.mark.parametrize("cache_seconds", [0, 60])
async def test_a_frozen_database_is_answered_within_the_request_timeout(database_url, engine, org, cache_seconds):
    """Without a cached key the lookup itself meets the frozen database; with one, the
    statements of the query do (and are not waited for once the request is stopped)."""
    key = await api_key(engine, org.admin)
    async with linked_engine(database_url) as (link, linked):
        async with app_client(linked, request_timeout=TIMEOUT, api_key_cache_seconds=cache_seconds) as client:
            headers = {"X-API-Key": key}
            assert (await client.post("/graphql", json={"query": LIST}, headers=headers)).status_code == 200
            link.freeze()
            loop = asyncio.get_running_loop()
            loop.call_later(15, link.restore)  # a test that fails does not hang
            response, seconds = await timed(client.post("/graphql", json={"query": LIST}, headers=headers))
            assert seconds < TIMEOUT + SLACK, f"answered after {seconds:.1f} s"
            assert response.status_code == 503, response.text
            assert code(response) == "TIMEOUT"
            link.restore()
            # It recovers by itself: the connections cut are replaced.
            response = await client.post("/graphql", json={"query": LIST}, headers=headers)
            assert response.status_code == 200, response.text
            assert "errors" not in response.json()


@ON_POSTGRESQL
async def test_readyz_turns_503_within_two_seconds_of_a_frozen_database(database_url):
    async with linked_engine(database_url) as (link, linked):
        async with app_client(linked) as client:  # the default request timeout: 30 s
            assert (await client.get("/readyz")).status_code == 200
            link.freeze()
            asyncio.get_running_loop().call_later(15, link.restore)
            response, seconds = await timed(client.get("/readyz"))
            assert response.status_code == 503 and seconds < 1 + SLACK, (response.status_code, seconds)
            link.restore()
            assert (await client.get("/readyz")).status_code == 200


@ON_POSTGRESQL
@pytest.mark.parametrize("cache_seconds", [0, 60])
async def test_an_unreachable_database_is_service_unavailable_then_recovers(database_url, engine, org, cache_seconds):
    key = await api_key(engine, org.admin)
    session_id = str(await store(engine, org.admin))
    append = {"query": APPEND, "variables": {"input": {"sessionId": session_id, "events": [{"type": "log", "message": "m", "dedupKey": "k1"}]}}}
    async with linked_engine(database_url) as (link, linked):
        async with app_client(linked, api_key_cache_seconds=cache_seconds) as client:
            headers = {"X-API-Key": key}
            assert (await client.post("/graphql", json={"query": LIST}, headers=headers)).status_code == 200
            link.cut()
            for body in ({"query": LIST}, append):
                response = await client.post("/graphql", json=body, headers=headers)
                assert response.status_code == 503, response.text
                assert code(response) == "SERVICE_UNAVAILABLE"
                assert response.headers["retry-after"] == "1"
            async with engine.connect() as connection:  # the shared engine, not through the relay
                assert await connection.scalar(select(func.count()).select_from(Event)) == 0
            link.restore()
            response = await client.post("/graphql", json=append, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["data"]["appendEvents"]["events"][0]["seq"] == 1


@ON_POSTGRESQL
async def test_a_download_link_while_the_database_is_unreachable_is_503(database_url, engine, org):
    from tests.test_downloads import link, path_of

    key = await api_key(engine, org.admin)
    session_id = await store(engine, org.admin)
    async with linked_engine(database_url) as (relay, linked):
        async with app_client(linked) as client:
            url = (await link(client, key, session_id))["url"]
            relay.cut()
            response = await client.get(path_of(url))
            assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
            relay.restore()
            assert (await client.get(path_of(url))).status_code == 200


@ON_POSTGRESQL
async def test_connection_init_while_the_database_is_unreachable_closes_with_4503(database_url, engine, org):
    key = await api_key(engine, org.admin)
    async with linked_engine(database_url) as (link, linked):
        async with serving(linked, api_key_cache_seconds=0) as url:
            link.cut()
            async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:
                await socket.send('{"type": "connection_init", "payload": {"apiKey": "%s"}}' % key)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503
            assert "SERVICE_UNAVAILABLE" in closed.value.rcvd.reason
            link.restore()
            async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:
                await socket.send('{"type": "connection_init", "payload": {"apiKey": "%s"}}' % key)
                assert "connection_ack" in await asyncio.wait_for(socket.recv(), 10)


@ON_SQLITE
async def test_a_sqlite_write_lock_held_past_the_busy_timeout_is_service_unavailable(database_url, engine, org, monkeypatch):
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    key = await api_key(engine, org.admin)
    session_id = str(await store(engine, org.admin))
    append = {"query": APPEND, "variables": {"input": {"sessionId": session_id, "events": [{"type": "log", "message": "m"}]}}}
    impatient = create_engine(database_url)  # its connections wait 200 ms for the lock
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        async with app_client(impatient, api_key_cache_seconds=60) as client:
            headers = {"X-API-Key": key}
            assert (await client.post("/graphql", json={"query": LIST}, headers=headers)).status_code == 200
            holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
            response = await client.post("/graphql", json=append, headers=headers)
            assert response.status_code == 503, response.text
            assert code(response) == "SERVICE_UNAVAILABLE"
            assert response.headers["retry-after"] == "1"
            holder.execute("ROLLBACK")
            response = await client.post("/graphql", json=append, headers=headers)
            assert response.json()["data"]["appendEvents"]["events"][0]["seq"] == 1
    finally:
        holder.close()
        await impatient.dispose()


@ON_SQLITE
async def test_a_sqlite_write_lock_held_elsewhere_is_answered_within_a_short_request_timeout(database_url, engine, org):
    """The server's own engine waits for another process's lock at most half the request
    timeout, so the write gives up (SERVICE_UNAVAILABLE) before the request is stopped: a
    statement waiting in SQLite's thread could not be cut short."""
    key = await api_key(engine, org.admin)
    session_id = str(await store(engine, org.admin))
    append = {"query": APPEND, "variables": {"input": {"sessionId": session_id, "events": [{"type": "log", "message": "m"}]}}}
    app = create_app(Settings(database_url=database_url, request_timeout=TIMEOUT, api_key_cache_seconds=60))
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            headers = {"X-API-Key": key}
            assert (await client.post("/graphql", json={"query": LIST}, headers=headers)).status_code == 200
            holder.execute("BEGIN IMMEDIATE")
            response, seconds = await timed(client.post("/graphql", json=append, headers=headers))
            holder.execute("ROLLBACK")
            assert seconds < TIMEOUT + SLACK, f"answered after {seconds:.1f} s"
            assert response.status_code == 503 and code(response) == "SERVICE_UNAVAILABLE", response.text
    finally:
        holder.close()
        await app.state.engine.dispose()


def test_serve_with_several_workers_on_sqlite_is_refused(tmp_path, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path}/{uuid.uuid4().hex}.db"
    assert cli.main(["--database-url", url, "serve", "--workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "--workers 2 on SQLite" in error and "PostgreSQL" in error
    assert list(tmp_path.iterdir()) == []  # refused before anything was migrated
