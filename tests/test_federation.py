"""sessiongraph as an Apollo Federation v2 subgraph (schema/federation.py): `_service { sdl }`
declares the keys, `_entities` resolves sessions, turns, events and users with the caller's
visibility, in a fixed number of statements, planned (a hundred users' sessions too);
`--no-federation` serves none of it; the public SDL carries no federation directive; the
served one's @cost/@listSize make Hive Gateway's demand control count what the server does."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from graphql import build_schema, parse, value_from_ast_untyped

from sessiongraph.planner.extension import PlannedExecution
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema import SDL_PATH, schema
from sessiongraph.models.recording import ensure_user
from sessiongraph.resolvers.context import Viewer
from tests.conftest import T0, api_key, count_statements, event_, execute, ok, store, turn_
from tests.live_server import app_client, free_port, key, live_server, stop  # noqa: F401  key: a fixture

ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) {
  __typename
  ... on Session { id sessionId title user { id } turns(first: 5) { nodes { taskId } } }
  ... on Turn { id taskId session { title } }
  ... on Event { id seq type }
  ... on User { id sessions(first: 10) { totalCount nodes { title } } }
} }"""


async def test_service_sdl_declares_the_keys_and_the_user_entity(engine, org):
    sdl = (await ok(engine, org.admin, "{ _service { sdl } }"))["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2.9"' in sdl
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



USERS_SESSIONS = """query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id
  sessions(first: 2, orderBy: {field: CREATED_AT, direction: ASC}) {
    totalCount pageInfo { hasNextPage endCursor } nodes { title turns(first: 2) { nodes { taskId } } } } } } }"""


async def test_an_entity_fetch_costs_its_selection_once_per_representation(engine, org):
    """A gateway's fetch of N users' session pages is priced as N of them, and refused past
    the limit like any document that asks as much (it used to be priced as one user's)."""
    users = [{"__typename": "User", "id": str(uuid.uuid4())} for _ in range(8000)]

    async def cost(n: int):
        result = await execute(engine, org.admin, USERS_SESSIONS, {"r": users[:n]})
        return result.extensions["cost"]["requestedQueryCost"], [e.extensions["code"] for e in result.errors or ()]

    one, no_errors = await cost(1)
    assert no_errors == [] and one == 1 + 2 + 2 * 2  # the user, its 2 sessions, their 2 turns each
    assert await cost(100) == (100 * one, [])
    over, codes = await cost(8000)  # 56,000 nodes: over the 50,000 allowed
    assert over == 8000 * one and codes == ["QUERY_TOO_COMPLEX"]


@pytest.mark.usefixtures("both_executions")
async def test_a_hundred_users_sessions_cost_what_one_users_do(engine, org):
    """A gateway asking for N users' sessions: one statement for all their pages, one for
    their totals, one for the turns under them, whatever N."""
    users = [org.alice.user_id, org.bob.user_id]
    async with engine.begin() as connection:
        for _ in range(98):
            users.append(uuid.uuid4())
            await ensure_user(connection, users[-1], org.id, T0)
    for n, user in enumerate(users):
        owner = Viewer(user, org.id, "USER", "USER")
        for i in range(3 if n < 2 else 1):
            await store(engine, owner, minutes=n + i / 10, title=f"u{n}.{i}", turns=[turn_(f"t{n}.{i}", n)])

    async def run(count: int) -> int:
        representations = [{"__typename": "User", "id": str(u)} for u in users[:count]]
        with count_statements(engine) as counter:
            data = await ok(engine, org.admin, USERS_SESSIONS, {"r": representations})
        for n, got in enumerate(data["_entities"]):
            sessions = got["sessions"]
            assert got["id"] == str(users[n])
            assert sessions["totalCount"] == (3 if n < 2 else 1)
            assert [s["title"] for s in sessions["nodes"]] == [f"u{n}.{i}" for i in range(2 if n < 2 else 1)]
            assert [s["turns"]["nodes"] for s in sessions["nodes"]] == [[{"taskId": f"t{n}.{i}"}] for i in range(2 if n < 2 else 1)]
            assert sessions["pageInfo"]["hasNextPage"] is (n < 2)
        return counter.count, data

    (one, _), (hundred, data) = await run(1), await run(100)
    assert one == hundred == 3

    # The next page of each user goes on from that user's cursor.
    after = """query($r: [_Any!]!, $after: String) { _entities(representations: $r) { ... on User {
      sessions(after: $after, orderBy: {field: CREATED_AT, direction: ASC}) { nodes { title } } } } }"""
    cursor = data["_entities"][1]["sessions"]["pageInfo"]["endCursor"]
    rest = await ok(engine, org.admin, after, {"r": [{"__typename": "User", "id": str(users[1])}], "after": cursor})
    assert rest["_entities"] == [{"sessions": {"nodes": [{"title": "u1.2"}]}}]
    # A USER sees only its own sessions, whoever's User it asks about.
    mine = await ok(engine, org.alice, USERS_SESSIONS, {"r": [{"__typename": "User", "id": str(u)} for u in users[:3]]})
    assert [e["sessions"]["totalCount"] for e in mine["_entities"]] == [3, 0, 0]


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


# -- through a real gateway: Hive Gateway over sessiongraph and a users subgraph, composed by
# @theguild/federation-composition (tests/federation/; `npm ci` there, which .ci/run does).

FEDERATION_DIR = Path(__file__).parent / "federation"
needs_node = pytest.mark.skipif(
    os.environ.get("CI") != "true"
    and not (shutil.which("node") and (FEDERATION_DIR / "node_modules" / ".bin" / "hive-gateway").exists()),
    reason="node or tests/federation/node_modules is missing (npm ci in tests/federation); CI runs it",
)


def _started(command: list[str], url: str, log_path: Path, cwd: Path | None = None, timeout: float = 60.0) -> subprocess.Popen:
    """Starts a process whose output goes to `log_path`, once `url` answers a GraphQL request."""
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}: {log_path.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.post(url, json={"query": "{ __typename }"}, timeout=2).status_code < 500:
                return process
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[0]} did not answer within {timeout} s: {log_path.read_text()}")
        time.sleep(0.2)


@pytest.fixture
async def gateway(engine, org, database_url, tmp_path):
    """Hive Gateway on a loopback port over sessiongraph (`serve`, the test's database) and
    the users subgraph; yields (gateway url, sessiongraph url, ADMIN key)."""
    assert shutil.which("node"), "node is missing: CI must install it"
    key = await api_key(engine, org.admin)
    names = {str(org.admin.user_id): "Ada Admin", str(org.alice.user_id): "Alice", str(org.bob.user_id): "Bob"}
    users_port, gateway_port = free_port(), free_port()
    users_url = f"http://127.0.0.1:{users_port}/graphql"
    processes = []
    try:
        with live_server(str(engine.url)) as sessiongraph:
            processes.append(_started(
                [sys.executable, str(FEDERATION_DIR / "users_subgraph.py"), str(users_port), json.dumps(names)],
                users_url, tmp_path / "users.log",
            ))
            subgraphs = []
            for name, url, headers in (("sessiongraph", sessiongraph.url, {"X-API-Key": key}), ("users", users_url, {})):
                sdl = httpx.post(url, json={"query": "{ _service { sdl } }"}, headers=headers, timeout=10).json()
                (tmp_path / f"{name}.graphql").write_text(sdl["data"]["_service"]["sdl"])
                subgraphs.append(f"{name}={url}={tmp_path / f'{name}.graphql'}")
            supergraph = tmp_path / "supergraph.graphql"
            composed = subprocess.run(
                ["node", "compose.mjs", str(supergraph), *subgraphs], cwd=FEDERATION_DIR, capture_output=True, text=True, timeout=60
            )
            assert composed.returncode == 0, composed.stderr
            gateway_url = f"http://127.0.0.1:{gateway_port}/graphql"
            processes.append(_started(
                [str(FEDERATION_DIR / "node_modules" / ".bin" / "hive-gateway"), "supergraph", str(supergraph),
                 "--host", "127.0.0.1", "--port", str(gateway_port)],
                gateway_url, tmp_path / "gateway.log", cwd=FEDERATION_DIR, timeout=90,
            ))
            yield gateway_url, sessiongraph.url, key
    finally:
        for process in reversed(processes):
            stop(process)


@needs_node
async def test_queries_crossing_both_subgraphs_through_hive_gateway(engine, org, gateway):
    gateway_url, sessiongraph_url, key = gateway
    first = await store(engine, org.alice, minutes=1, title="Trip", turns=[turn_("t1", 1), turn_("t2", 2)])
    await store(engine, org.alice, minutes=2, title="Budget", turns=[turn_("t3", 3)])
    await store(engine, org.bob, minutes=3, title="Bob's")

    def post(query: str, url: str = gateway_url, **headers) -> dict:
        response = httpx.post(url, json={"query": query}, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    # A user (from the users subgraph) with their sessions and turns (from sessiongraph).
    users = post("""{ users { id name sessions(first: 5, orderBy: {field: CREATED_AT, direction: ASC}) {
        totalCount nodes { title turns(first: 5) { nodes { taskId } } } } } }""", **{"X-API-Key": key})
    assert users.get("errors") is None, users
    by_name = {u["name"]: u for u in users["data"]["users"]}
    assert by_name["Alice"] == {
        "id": str(org.alice.user_id), "name": "Alice",
        "sessions": {"totalCount": 2, "nodes": [
            {"title": "Trip", "turns": {"nodes": [{"taskId": "t1"}, {"taskId": "t2"}]}},
            {"title": "Budget", "turns": {"nodes": [{"taskId": "t3"}]}},
        ]},
    }
    assert by_name["Bob"]["sessions"] == {"totalCount": 1, "nodes": [{"title": "Bob's", "turns": {"nodes": []}}]}
    assert by_name["Ada Admin"]["sessions"] == {"totalCount": 0, "nodes": []}

    # A session (sessiongraph) with its owner's name (the users subgraph), the key as a bearer token.
    session = post('{ session(id: "%s") { title user { id name } } }' % first, Authorization=f"Bearer {key}")
    assert session.get("errors") is None, session
    assert session["data"] == {"session": {"title": "Trip", "user": {"id": str(org.alice.user_id), "name": "Alice"}}}

    # Without a key sessiongraph refuses the request, through the gateway too.
    refused = post("{ sessions { totalCount } }")
    assert refused.get("data") in (None, {"sessions": None}) and refused["errors"]

    # The nested page answers the same through the gateway as directly.
    nested = "{ sessions(first: 5) { nodes { turns(first: 3) { nodes { events(first: 4) { nodes { seq } } } } } } }"
    direct = post(nested, sessiongraph_url, **{"X-API-Key": key})
    through = post(nested, **{"X-API-Key": key})
    assert through["data"] == direct["data"]
    assert direct["extensions"]["cost"]["requestedQueryCost"] == 5 + 5 * 3 + 5 * 3 * 4
    assert [len(s["turns"]["nodes"]) for s in through["data"]["sessions"]["nodes"]] == [0, 1, 2]



# -- demand control: the gateway's cost from the subgraph's @cost and @listSize ---------------

def _served_directives(sdl: str) -> dict:
    """{(type, field): {directive name: {argument: value}}} of the served SDL's fields."""
    found = {}
    for definition in parse(sdl).definitions:
        for field in getattr(definition, "fields", None) or ():
            for directive in field.directives or ():
                arguments = {a.name.value: value_from_ast_untyped(a.value) for a in directive.arguments}
                found.setdefault((definition.name.value, field.name.value), {})[directive.name.value] = arguments
    return found


async def test_each_connection_is_sized_by_its_page_arguments_and_the_page_it_returns(engine, org):
    session = await store(engine, org.alice, title="long", turns=[turn_(f"t{i}", i) for i in range(1, 13)])
    for i in range(22):
        await store(engine, org.alice, minutes=i + 1, title=f"s{i}")
    sdl = (await ok(engine, org.alice, "{ _service { sdl } }"))["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key", "@cost", "@listSize"])' in sdl
    directives = _served_directives(sdl)
    sized = {field: d["listSize"] for field, d in directives.items() if "listSize" in d}
    assert set(sized) == {
        ("Query", "sessions"), ("User", "sessions"), ("Session", "turns"), ("Session", "events"),
        ("Turn", "events"), ("Chat", "turns"), ("Query", "searchEvents"),
    }
    for field, listed in sized.items():
        # searchEvents pages forward only: no `last`
        assert listed["slicingArguments"] == (["first"] if field == ("Query", "searchEvents") else ["first", "last"])
        assert sorted(listed["sizedFields"]) == ["edges", "nodes"]
        assert listed["requireOneSlicingArgument"] is False
    # The size assumed without first/last is the page the server returns then.
    data = await ok(engine, org.alice, '{ sessions { nodes { id } } session(id: "%s") { turns { nodes { id } } } }' % session)
    assert len(data["sessions"]["nodes"]) == sized["Query", "sessions"]["assumedSize"] == 20
    assert len(data["session"]["turns"]["nodes"]) == sized["Session", "turns"]["assumedSize"] == 10
    # What weighs: each node of a page, as the server counts them; no object type.
    weighed = {field for field, d in directives.items() if "cost" in d}
    assert weighed == {(f"{t}{part}", name) for t in ("Session", "Turn", "Event", "EventSearch") for part, name in (("Connection", "nodes"), ("Edge", "node"))}
    assert all(directives[field]["cost"] == {"weight": 1} for field in weighed)
    assert sdl.count("@cost(weight: 0)") == len(re.findall(r"^type (?!Query|Mutation|Subscription|_)", sdl, re.M))


# Documents whose cost Hive Gateway's demand control, reading the supergraph's directives,
# puts where the server's `extensions.cost.requestedQueryCost` does.
AGREEING = [
    ("{ sessions(first: 5) { nodes { turns(first: 3) { nodes { events(first: 4) { nodes { seq } } } } } } }", {}),
    ("{ sessions(last: 2) { edges { cursor node { title turns(first: 7) { edges { node { taskId } } } } } } }", {}),
    ('query($id: ID!) { session(id: $id) { title user { id } turns(first: 4) { nodes { events(last: 5) { nodes { seq } } } } } }', None),
    ("query($n: Int) { sessions(first: $n) { ...S } } fragment S on SessionConnection { nodes { events(first: 2) { nodes { seq } } } }", {"n": 3}),
    ("{ viewer { userId } }", {}),
]


@needs_node
async def test_the_gateways_demand_control_counts_what_the_server_counts(engine, org, gateway):
    gateway_url, sessiongraph_url, key = gateway
    session = await store(engine, org.alice, title="Trip", turns=[turn_("t1", 1)])

    def costs(query: str, variables: dict) -> tuple:
        direct = httpx.post(sessiongraph_url, json={"query": query, "variables": variables}, headers={"X-API-Key": key}, timeout=30).json()
        through = httpx.post(gateway_url, json={"query": query, "variables": variables}, headers={"X-API-Key": key}, timeout=30).json()
        assert through.get("errors") is None and through["data"] == direct["data"], (direct, through)
        return direct["extensions"]["cost"]["requestedQueryCost"], through["extensions"]["cost"]["estimated"]

    for query, variables in AGREEING:
        server, gateway_estimate = costs(query, {"id": str(session)} if variables is None else variables)
        assert gateway_estimate == server, query
    assert costs(AGREEING[0][0], {})[0] == 5 + 5 * 3 + 5 * 3 * 4  # not agreeing on nothing

    # Where they part, by what the spec and Hive say: without first/last Hive takes a page as 1
    # (it reads assumedSize only on a field without slicing arguments)...
    server, estimate = costs("{ sessions { nodes { turns { nodes { taskId } } } } }", {})
    assert (server, estimate) == (20 + 20 * 10, 1 + 1)
    # ...a page nobody lists (totalCount, pageInfo) weighs nothing, the server counts its page...
    assert costs("{ sessions(first: 5) { totalCount } }", {}) == (5, 0)
    # ...nodes and edges together are two lists to the spec, one page to the server...
    assert costs("{ sessions(first: 5) { nodes { title } edges { node { title } } } }", {}) == (5, 10)
    # ...and `node` returns an interface, which @cost cannot weigh: the spec's default, 1.
    assert costs('{ node(id: "%s") { id } }' % to_global_id("Session", session), {}) == (0, 1)

    # Over the server's node limit: the gateway refuses before sessiongraph is asked.
    huge = "{ sessions(first: 100) { nodes { turns(first: 100) { nodes { events(first: 100) { nodes { seq } } } } } } }"
    through = httpx.post(gateway_url, json={"query": huge}, headers={"X-API-Key": key}, timeout=30).json()
    assert through["errors"][0]["extensions"]["code"] == "COST_ESTIMATED_TOO_EXPENSIVE"
    assert through["errors"][0]["extensions"]["cost"]["estimated"] == 100 + 100**2 + 100**3
    direct = httpx.post(sessiongraph_url, json={"query": huge}, headers={"X-API-Key": key}, timeout=30).json()
    assert direct["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
