"""A server process keeps `db_pool_size` database connections open: that many requests in
flight at once reuse them, instead of each one past SQLAlchemy's default of five opening a
connection (on PostgreSQL a new backend process) and closing it after its request."""

import asyncio

import httpx
from sqlalchemy import event

from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from tests.conftest import api_key, store

IN_FLIGHT = 12
LIST = "{ sessions(first: 5) { totalCount nodes { title turns { nodes { taskId } } } } }"


async def connections_opened(engine, org, rounds: int, **settings) -> int:
    """Connections the app's own engine opens while serving `rounds` of IN_FLIGHT requests
    at once."""
    for n in range(5):
        await store(engine, org.alice, minutes=n, title=f"s{n}")
    key = await api_key(engine, org.alice)
    app = create_app(Settings(database_url=str(engine.url), **settings))
    opened = []
    event.listen(app.state.engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for _ in range(rounds):
                responses = await asyncio.gather(
                    *(client.post("/graphql", json={"query": LIST}, headers={"X-API-Key": key}) for _ in range(IN_FLIGHT))
                )
                assert all(r.status_code == 200 and r.json()["data"]["sessions"]["totalCount"] == 5 for r in responses)
    finally:
        await app.state.engine.dispose()
    return len(opened)


async def test_requests_in_flight_reuse_the_pools_connections(engine, org):
    assert await connections_opened(engine, org, rounds=4) <= IN_FLIGHT


async def test_past_the_pool_each_request_opens_a_connection_of_its_own(engine, org):
    # What the default prevents: with a pool of 2, the connections past it are opened anew
    # in every round.
    assert await connections_opened(engine, org, rounds=4, db_pool_size=2) > IN_FLIGHT


def test_the_pool_size_comes_from_the_environment(monkeypatch):
    assert Settings.from_env("sqlite+aiosqlite:///x.db").db_pool_size == 20
    monkeypatch.setenv("SESSIONGRAPH_DB_POOL_SIZE", "40")
    assert Settings.from_env("sqlite+aiosqlite:///x.db").db_pool_size == 40
