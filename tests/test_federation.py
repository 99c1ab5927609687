"""sessiongraph as an Apollo Federation v2 subgraph (schema/federation.py): `_service { sdl }`
declares the keys, `_entities` resolves sessions, turns, events and users with the caller's
visibility, in a fixed number of statements, planned; `--no-federation` serves none of it;
the public SDL carries no federation directive."""

import pytest
from graphql import build_schema

from sessiongraph.planner.extension import PlannedExecution
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema import SDL_PATH, schema
from tests.conftest import count_statements, event_, ok, store, turn_
from tests.live_server import app_client, key  # noqa: F401  key: a fixture

ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) {
  __typename
  ... on Session { id sessionId title user { id } turns(first: 5) { nodes { taskId } } }
  ... on Turn { id taskId session { title } }
  ... on Event { id seq type }
  ... on User { id sessions(first: 10) { totalCount nodes { title } } }
} }"""


async def test_service_sdl_declares_the_keys_and_the_user_entity(engine, org):
    sdl = (await ok(engine, org.admin, "{ _service { sdl } }"))["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2.11"' in sdl
    assert 'type Session implements Node @key(fields: "id") @key(fields: "sessionId")' in sdl
    assert 'type Turn implements Node @key(fields: "id")' in sdl
    assert 'type Event implements Node @key(fields: "id")' in sdl
    assert 'type User @key(fields: "id")' in sdl
    assert "user: User!" in sdl


async def test_entities_resolve_what_the_caller_may_see_and_null_otherwise(engine, org, other_org):
    mine = await store(engine, org.alice, title="alice's", turns=[turn_("t1", 1, [event_("LLM_OUTPUT", 1, "hi")])])
    bobs = await store(engine, org.bob, title="bob's")
    foreign = await store(engine, other_org.alice, title="elsewhere")
    data = await ok(engine, org.alice, "{ session(id: \"%s\") { turns { nodes { id events { nodes { id } } } } } }" % mine)
    turn_id = data["session"]["turns"]["nodes"][0]["id"]
    event_id = data["session"]["turns"]["nodes"][0]["events"]["nodes"][0]["id"]
    representations = [
        {"__typename": "Session", "id": to_global_id("Session", mine)},
        {"__typename": "Session", "sessionId": str(mine)},
        {"__typename": "Session", "id": to_global_id("Session", bobs)},  # another user's: null
        {"__typename": "Session", "sessionId": str(foreign)},  # another organisation's: null
        {"__typename": "Session", "id": "not an id"},
        {"__typename": "Turn", "id": turn_id},
        {"__typename": "Turn", "id": to_global_id("Session", mine)},  # a session's id as a turn's
        {"__typename": "Event", "id": event_id},
        {"__typename": "User", "id": str(org.alice.user_id)},
        {"__typename": "User", "id": str(org.bob.user_id)},  # bob exists, alice sees none of his
    ]
    got = (await ok(engine, org.alice, ENTITIES, {"r": representations}))["_entities"]
    session = {
        "__typename": "Session", "id": to_global_id("Session", mine), "sessionId": str(mine), "title": "alice's",
        "user": {"id": str(org.alice.user_id)}, "turns": {"nodes": [{"taskId": "t1"}]},
    }
    assert got == [
        session,
        session,
        None,
        None,
        None,
        {"__typename": "Turn", "id": turn_id, "taskId": "t1", "session": {"title": "alice's"}},
        None,
        {"__typename": "Event", "id": event_id, "seq": 1, "type": "LLM_OUTPUT"},
        {"__typename": "User", "id": str(org.alice.user_id), "sessions": {"totalCount": 1, "nodes": [{"title": "alice's"}]}},
        {"__typename": "User", "id": str(org.bob.user_id), "sessions": {"totalCount": 0, "nodes": []}},
    ]
    # An ADMIN sees bob's sessions under bob.
    admin = (await ok(engine, org.admin, ENTITIES, {"r": representations[9:]}))["_entities"]
    assert admin[0]["sessions"] == {"totalCount": 1, "nodes": [{"title": "bob's"}]}


async def test_a_hundred_session_entities_cost_what_one_does_and_are_planned(engine, org):
    ids = [await store(engine, org.alice, minutes=i, title=f"s{i}", turns=[turn_("t", i)]) for i in range(100)]
    query = """query($r: [_Any!]!) { _entities(representations: $r) {
      ... on Session { title user { id } turns { nodes { taskId } } } } }"""

    async def run(n):
        representations = [{"__typename": "Session", "sessionId": str(i)} for i in ids[:n]]
        answered = PlannedExecution.answered
        with count_statements(engine) as counter:
            data = await ok(engine, org.alice, query, {"r": representations})
        assert PlannedExecution.answered == answered + 1, "the planner answered the entity fetch"
        assert [e["title"] for e in data["_entities"]] == [f"s{i}" for i in range(n)]
        assert all(e["user"] == {"id": str(org.alice.user_id)} for e in data["_entities"])
        return counter.count

    one, hundred = await run(1), await run(100)
    assert hundred == one == 2  # the sessions, then all their turns' pages


async def test_user_sessions_take_the_session_list_arguments(engine, org):
    for i in range(3):
        await store(engine, org.bob, minutes=i, title=f"b{i}", external_id=f"ext-{i}")
    query = """query($r: [_Any!]!) { _entities(representations: $r) { ... on User {
      sessions(first: 2, orderBy: {field: CREATED_AT, direction: ASC}, filter: {search: "b", userId: "%s"}) {
        nodes { title } pageInfo { hasNextPage } } } } }""" % org.alice.user_id
    data = await ok(engine, org.admin, query, {"r": [{"__typename": "User", "id": str(org.bob.user_id)}]})
    assert data["_entities"] == [{"sessions": {"nodes": [{"title": "b0"}, {"title": "b1"}], "pageInfo": {"hasNextPage": True}}}]


async def test_no_federation_serves_no_subgraph_fields(engine, org, key):
    async with app_client(engine, federation=False) as http:
        response = await http.post("/graphql", json={"query": "{ _service { sdl } }"}, headers={"X-API-Key": key})
        assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        response = await http.post("/graphql", json={"query": "{ viewer { userId } }"}, headers={"X-API-Key": key})
        assert response.json()["data"] == {"viewer": {"userId": str(org.admin.user_id)}}
    async with app_client(engine) as http:
        response = await http.post("/graphql", json={"query": "{ _service { sdl } }"}, headers={"X-API-Key": key})
        assert "@key" in response.json()["data"]["_service"]["sdl"]


def test_public_sdl_has_no_federation_machinery():
    sdl = schema.public_sdl()
    assert sdl == SDL_PATH.read_text().rstrip("\n") or sdl + "\n" == SDL_PATH.read_text()
    for name in ("@key", "@link", "_entities", "_service", "_Any"):
        assert name not in sdl
    built = build_schema(sdl)  # a tool can build it: no directive without its definition
    assert str(built.get_type("Session").fields["user"].type) == "User!"


@pytest.mark.parametrize("representation", [{"__typename": "User", "id": "not-a-uuid"}, {"__typename": "Session"}])
async def test_a_representation_naming_nothing_is_null(engine, org, representation):
    data = await ok(engine, org.alice, "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }", {"r": [representation]})
    assert data == {"_entities": [None]}
