"""HTTP basics of the contract: the API key (X-API-Key or Authorization: Bearer) checked
first, GET and POST on /graphql, GraphiQL for browsers, /healthz, /readyz, media types."""

import httpx
import pytest

from sessiongraph.transport.app import create_app
from sessiongraph.gate.auth import create_key, revoke_key
from sessiongraph.config import Settings
from sessiongraph.models import create_engine
from tests.conftest import api_key, store

VIEWER = "{ viewer { userId role } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    assert body.get("data") is None


def key_headers(key: str, scheme: str) -> dict:
    return {"X-API-Key": key} if scheme == "x-api-key" else {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
async def test_a_live_key_is_accepted_in_either_header(engine, org, client, scheme):
    key = await api_key(engine, org.alice)
    response = await client.post("/graphql", json={"query": VIEWER}, headers=key_headers(key, scheme))
    assert response.status_code == 200
    assert response.json()["data"]["viewer"] == {"userId": str(org.alice.user_id), "role": "USER"}


async def test_no_key_is_401_unauthenticated(client):
    assert_unauthenticated(await client.post("/graphql", json={"query": VIEWER}))
    assert_unauthenticated(await client.get("/graphql", params={"query": VIEWER}))


@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
async def test_an_unknown_key_is_401_unauthenticated(engine, org, client, scheme):
    key = await api_key(engine, org.alice)
    wrong = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    assert_unauthenticated(await client.post("/graphql", json={"query": VIEWER}, headers=key_headers(wrong, scheme)))


@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
async def test_a_revoked_key_is_401_unauthenticated(engine, org, client, scheme):
    key_id, key = await create_key(engine, org.id, org.bob.user_id)
    headers = key_headers(key, scheme)
    assert (await client.post("/graphql", json={"query": VIEWER}, headers=headers)).status_code == 200
    assert await revoke_key(engine, key_id)
    assert_unauthenticated(await client.post("/graphql", json={"query": VIEWER}, headers=headers))


async def test_a_bad_key_executes_nothing_even_a_broken_document(client):
    """The key is checked before the document is even parsed."""
    assert_unauthenticated(await client.post("/graphql", json={"query": "{ not graphql"}, headers={"X-API-Key": "sg_nope"}))


async def test_get_serves_queries(engine, org, client):
    await store(engine, org.alice, title="Over GET")
    key = await api_key(engine, org.alice)
    response = await client.get(
        "/graphql",
        params={"query": "query List($n: Int) { sessions(first: $n) { nodes { title } } }", "variables": '{"n": 5}'},
        headers={"X-API-Key": key},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"sessions": {"nodes": [{"title": "Over GET"}]}}


async def test_a_browser_gets_graphiql(client):
    response = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_healthz_and_readyz_answer_while_the_database_answers(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////nonexistent-directory/sessiongraph.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/unreachable",
    ],
)
async def test_readyz_is_503_while_the_database_does_not_answer(url):
    engine = create_engine(url)
    app = create_app(Settings(database_url=url), engine=engine)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200  # the process still runs
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        ("application/json", "application/json"),
    ],
)
async def test_response_media_type_follows_accept(engine, org, client, accept, media_type):
    key = await api_key(engine, org.alice)
    response = await client.post("/graphql", json={"query": VIEWER}, headers={"X-API-Key": key, "Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.json()["data"]["viewer"]["role"] == "USER"
