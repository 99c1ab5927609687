"""A live API key is trusted for `api_key_cache_seconds` before it is looked up again: a
revocation made elsewhere (another process runs `sessiongraph apikey revoke`) takes effect
within that time; one made by this process at once."""

import asyncio
from datetime import UTC, datetime

from sqlalchemy import update

from sessiongraph.gate.auth import create_key, revoke_key
from sessiongraph.models import ApiKey
from tests.conftest import count_statements
from tests.live_server import app_client

VIEWER = "{ viewer { userId } }"


async def revoke_elsewhere(engine, key_id) -> None:
    """What `sessiongraph apikey revoke` does from another process: the row changes, this
    process's cache is not told."""
    async with engine.begin() as connection:
        await connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))


async def status(client, key: str) -> int:
    return (await client.post("/graphql", json={"query": VIEWER}, headers={"X-API-Key": key})).status_code


async def test_a_key_revoked_elsewhere_stops_working_once_the_cache_time_is_over(engine, org):
    key_id, key = await create_key(engine, org.id, org.alice.user_id)
    async with app_client(engine, api_key_cache_seconds=2) as client:
        assert await status(client, key) == 200
        await revoke_elsewhere(engine, key_id)
        assert await status(client, key) == 200  # trusted from the cache: the stated delay
        await asyncio.sleep(2.1)
        assert await status(client, key) == 401


async def test_with_no_cache_time_a_key_revoked_elsewhere_is_refused_at_once(engine, org):
    key_id, key = await create_key(engine, org.id, org.alice.user_id)
    async with app_client(engine, api_key_cache_seconds=0) as client:
        assert await status(client, key) == 200
        await revoke_elsewhere(engine, key_id)
        assert await status(client, key) == 401


async def test_a_key_revoked_by_this_process_is_refused_at_once_despite_the_cache(engine, org):
    key_id, key = await create_key(engine, org.id, org.alice.user_id)
    async with app_client(engine, api_key_cache_seconds=60) as client:
        assert await status(client, key) == 200
        assert await revoke_key(engine, key_id)
        assert await status(client, key) == 401


async def test_a_cached_key_costs_no_statement(engine, org):
    _, key = await create_key(engine, org.id, org.alice.user_id)
    async with app_client(engine, api_key_cache_seconds=60) as client:
        assert await status(client, key) == 200
        with count_statements(engine) as statements:
            assert await status(client, key) == 200
    assert statements.count == 0
