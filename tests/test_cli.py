"""The `sessiongraph` console script, run as a user runs it: a subprocess with
`--database-url`, on a new SQLite file and (where configured) a new PostgreSQL database."""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
import pytest
from graphql import build_schema
from sqlalchemy import inspect, text

from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from sessiongraph.ingest.demo import ALICE, DEMO_ORG
from sessiongraph.models import create_engine
from sessiongraph.models.database import scratch_postgres_database
from sessiongraph.models.search import queued
from tests.conftest import BACKENDS, POSTGRES_URL
from tests.live_server import live_server

VIEWER = "{ viewer { userId orgId role identityType } }"
DEMO_SESSIONS = 10  # six chats, three terminal sessions, a red-team run


@contextlib.asynccontextmanager
async def blank_database(backend: str):
    """A database with nothing in it, not even the schema; dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite+aiosqlite:///{directory}/cli.db"
        return
    async with scratch_postgres_database(POSTGRES_URL, "sessiongraph_cli") as url:
        yield url


@pytest.fixture(params=BACKENDS)
async def url(request):
    async with blank_database(request.param) as database_url:
        yield database_url


def sessiongraph(url: str, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """Runs the console script as a user would; `ok` asserts it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "sessiongraph.cli", "--database-url", url, *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@contextlib.asynccontextmanager
async def http(url: str):
    """An HTTP client on the app serving `url`, as `serve` builds it."""
    engine = create_engine(url)
    app = create_app(Settings(database_url=url), engine=engine)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client
    finally:
        await engine.dispose()


async def test_migrate_creates_the_tables(url):
    sessiongraph(url, "migrate")
    sessiongraph(url, "migrate")  # again: already at the newest version, nothing to do
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    assert {"users", "api_keys", "sessions", "turns", "events"} <= tables
    assert version


async def test_apikey_create_prints_a_key_that_authenticates_until_revoked(url):
    org, user = uuid.uuid4(), uuid.uuid4()
    created = sessiongraph(url, "apikey", "create", "--org", str(org), "--user", str(user), "--role", "admin", "--name", "ci")
    lines = created.stdout.strip().splitlines()
    key = lines[-1]
    key_id = next(word for word in lines[0].replace(":", " ").split() if _is_uuid(word))
    assert key and " " not in key and key_id not in key

    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        async with http(url) as client:
            response = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["viewer"] == {
            "userId": str(user), "orgId": str(org), "role": "ADMIN", "identityType": "USER",
        }

    sessiongraph(url, "apikey", "revoke", key_id)
    async with http(url) as client:
        response = await client.post("/graphql", json={"query": VIEWER}, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    again = sessiongraph(url, "apikey", "revoke", key_id, ok=False)
    assert again.returncode != 0 and key_id in again.stderr


async def test_apikey_create_machine_user_key(url):
    org, user = uuid.uuid4(), uuid.uuid4()
    key = sessiongraph(url, "apikey", "create", "--org", str(org), "--user", str(user), "--machine").stdout.strip().splitlines()[-1]
    async with http(url) as client:
        viewer = (await client.post("/graphql", json={"query": VIEWER}, headers={"X-API-Key": key})).json()["data"]["viewer"]
    assert (viewer["role"], viewer["identityType"]) == ("USER", "MACHINE")


async def test_apikey_create_refuses_a_user_of_another_organisation(url):
    user = uuid.uuid4()
    sessiongraph(url, "apikey", "create", "--org", str(uuid.uuid4()), "--user", str(user))
    refused = sessiongraph(url, "apikey", "create", "--org", str(uuid.uuid4()), "--user", str(user), ok=False)
    assert refused.returncode != 0
    assert "another organisation" in refused.stderr and refused.stdout == ""


def _is_uuid(word: str) -> bool:
    try:
        uuid.UUID(word)
    except ValueError:
        return False
    return True


def demo_key(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("API key: ")]
    return line.removeprefix("API key: ").strip()


async def test_demo_prints_a_key_that_sees_the_demo_sessions(url):
    key = demo_key(sessiongraph(url, "demo").stdout)
    query = "{ viewer { userId orgId role } sessions(first: 100) { totalCount nodes { title turnCount } } }"
    async with http(url) as client:
        data = (await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})).json()["data"]
    assert data["viewer"] == {"userId": str(ALICE), "orgId": str(DEMO_ORG), "role": "ADMIN"}
    assert data["sessions"]["totalCount"] == DEMO_SESSIONS
    titles = {s["title"] for s in data["sessions"]["nodes"]}
    assert {"Trip planning", "prod-db shell", "Nightly red-team run"} <= titles

    # What `make serve` runs on every start: the data set stays as it is, a new key is printed.
    second = demo_key(sessiongraph(url, "demo", "--if-empty").stdout)
    assert second != key
    async with http(url) as client:
        data = (await client.post("/graphql", json={"query": query}, headers={"X-API-Key": second})).json()["data"]
    assert data["sessions"]["totalCount"] == DEMO_SESSIONS


def test_export_schema_prints_the_sdl():
    sdl = sessiongraph("sqlite+aiosqlite:///unused.db", "export-schema").stdout
    schema = build_schema(sdl)
    assert {"viewer", "session", "sessions", "node", "nodes"} <= set(schema.query_type.fields)
    assert not os.path.exists("unused.db")  # printing the schema touches no database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_serve_answers_health_readiness_and_graphql(backend):
    async with blank_database(backend) as url:
        key = demo_key(sessiongraph(url, "demo").stdout)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "sessiongraph.cli", "--database-url", url, "serve", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                deadline = time.monotonic() + 30
                while True:
                    assert server.poll() is None, f"serve exited with {server.returncode}"
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, "serve did not answer /healthz within 30 s"
                    await asyncio.sleep(0.2)
                assert (await client.get("/readyz")).status_code == 200
                response = await client.get("/graphql", params={"query": "{ sessions { totalCount } }"}, headers={"X-API-Key": key})
                assert response.status_code == 200
                assert response.json()["data"] == {"sessions": {"totalCount": DEMO_SESSIONS}}
                assert (await client.post("/graphql", json={"query": VIEWER})).status_code == 401
        finally:
            server.terminate()
            try:
                output, _ = server.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                output, _ = server.communicate()
        assert f"GraphiQL: http://127.0.0.1:{port}/graphql" in output


async def _queued(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await queued(connection)
    finally:
        await engine.dispose()


def _import_lines(sessions: int) -> str:
    return "".join(
        json.dumps({"org_id": str(DEMO_ORG), "user_id": str(ALICE), "title": f"imported {n}", "created_at": "2025-10-28T06:00:00Z", "events": [
            {"type": "LLM_OUTPUT", "message": f"Kyoto itinerary {n}.{k}", "timestamp": "2025-10-28T06:00:00Z"} for k in range(5)
        ]}) + "\n"
        for n in range(sessions)
    )


async def test_index_brings_the_search_index_up_to_date_after_an_import(url):
    imported = sessiongraph(url, "import", "-", stdin=_import_lines(40)).stdout
    assert "200 events wait for the search index" in imported
    assert await _queued(url) == 200  # the import leaves the index to an indexer
    assert "indexed 200 events" in sessiongraph(url, "index").stdout
    assert await _queued(url) == 0
    assert "indexed 0 events" in sessiongraph(url, "index").stdout


async def test_a_running_server_indexes_what_another_process_imported(url):
    sessiongraph(url, "migrate")
    with live_server(url) as server:
        sessiongraph(url, "import", "-", stdin=_import_lines(40))
        deadline = time.monotonic() + 30
        while await _queued(url):
            assert time.monotonic() < deadline, f"still queued after 30 s: {server.log()}"
            await asyncio.sleep(0.2)
