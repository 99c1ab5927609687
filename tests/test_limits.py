"""The contract's limits: depth, estimated nodes (GitHub's way), selected fields and document
size, decided before validation and before anything runs; the cost every response reports;
each limit configurable."""


import pytest
from graphql import get_introspection_query

from sessiongraph.config import Settings
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.schema import schema
from sessiongraph.gate import limits
from sessiongraph.gate.limits import Limits
from tests.conftest import api_key, count_statements, execute, store, turn_
from tests.live_server import live_server


def nested(depth: int) -> str:
    """A valid document exactly `depth` levels deep: sessions > nodes > turns > nodes > session > turns > ..."""
    cycle = ["turns(first: 1)", "nodes", "session"]
    path = (["sessions(first: 1)", "nodes"] + cycle * depth)[: depth - 1]
    leaf = "totalCount" if path[-1].startswith(("sessions", "turns")) else "id"
    return "{ " + " { ".join(path) + " { " + leaf + " }" * len(path) + " }"


async def codes(engine, viewer, query, variables=None) -> list[str]:
    result = await execute(engine, viewer, query, variables)
    return [e.extensions["code"] for e in result.errors or ()]


async def run(query: str, limits: Limits | None = None, variables=None, introspection=True, operation_name=None):
    """Executes a document that needs no database against the schema under `limits`."""
    configured = schema.configured(limits or Limits(), introspection)
    return await configured.execute(query, variable_values=variables, operation_name=operation_name)


# --- depth ---------------------------------------------------------------------------------


def test_nested_builds_documents_of_the_asked_depth():
    assert nested(15).count("{") == 15
    assert nested(16).count("{") == 16


async def test_depth_15_runs_and_16_is_refused(engine, org):
    assert await codes(engine, org.admin, nested(15)) == []
    assert await codes(engine, org.admin, nested(16)) == ["QUERY_TOO_COMPLEX"]


async def test_introspection_fields_do_not_count_toward_depth():
    deep_type = "{ __schema { types { fields { type { " + "ofType { " * 14 + "name" + " }" * 14 + " } } } } }"
    result = await run(deep_type)
    assert result.errors is None
    assert result.extensions["cost"]["depth"] == 0


async def test_graphiql_introspection_query_passes_the_limits():
    result = await run(get_introspection_query(descriptions=True))
    assert result.errors is None


# --- estimated nodes ------------------------------------------------------------------------

THREE_LEVELS = "query($n: Int) { sessions(first: $n) { nodes { turns(first: $n) { nodes { events(first: $n) { nodes { seq } } } } } } }"


async def test_nodes_multiply_through_connections_as_github_counts(engine, org):
    result = await execute(engine, org.admin, THREE_LEVELS, {"n": 30})
    assert result.errors is None
    assert result.extensions["cost"]["requestedQueryCost"] == 30 + 30 * 30 + 30 * 30 * 30


async def test_the_same_document_costs_what_each_request_s_variables_ask_for(engine, org):
    # Costs are remembered per document and variable values: a repeated document must still
    # be measured by this request's page sizes, in either order.
    for n in (30, 2, 30, 40, 2):
        result = await execute(engine, org.admin, THREE_LEVELS, {"n": n})
        assert result.extensions["cost"]["requestedQueryCost"] == n + n * n + n * n * n
        assert (result.errors is None) == (n != 40)  # 40 + 1,600 + 64,000 is over the limit
    no_variable = await execute(engine, org.admin, THREE_LEVELS, {})
    assert no_variable.extensions["cost"]["requestedQueryCost"] == 20 + 20 * 10 + 20 * 10 * 20


async def test_over_http_a_repeated_document_is_measured_by_each_request_s_variables(client, engine, org):
    # The HTTP path keeps a document that passed its checks ready for the next request only
    # when its cost reads no variables; this one's does.
    key = await api_key(engine, org.admin)
    for n in (30, 2, 30, 40, 2):
        body = {"query": THREE_LEVELS, "variables": {"n": n}}
        answer = (await client.post("/graphql", json=body, headers={"X-API-Key": key})).json()
        assert answer["extensions"]["cost"]["requestedQueryCost"] == n + n * n + n * n * n
        assert [e["extensions"]["code"] for e in answer.get("errors", ())] == ([] if n != 40 else ["QUERY_TOO_COMPLEX"])
        assert ("data" in answer) == (n != 40)
    constant = {"query": "{ viewer { userId } sessions(first: 3) { totalCount } }"}
    first, again = [(await client.post("/graphql", json=constant, headers={"X-API-Key": key})).json() for _ in range(2)]
    assert first == again and first["extensions"]["cost"]["requestedQueryCost"] == 3


async def test_variable_defaults_count_per_operation_through_shared_fragments():
    document = (
        "query Small($n: Int = 2) { ...Page } query Large($n: Int = 90) { ...Page } "
        "fragment Page on Query { sessions(first: $n) { nodes { turns(first: $n) { totalCount } } } }"
    )
    result = await run(document, Limits(max_nodes=2 + 2 * 2 + 90 + 90 * 90 - 1), operation_name="Small")
    assert result.extensions["cost"]["requestedQueryCost"] == 2 + 2 * 2 + 90 + 90 * 90
    assert result.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"


async def test_connections_without_first_count_their_default_page_size(engine, org):
    query = "{ sessions { nodes { turns { nodes { events { nodes { seq } } } } } } }"
    result = await execute(engine, org.admin, query)
    assert result.extensions["cost"]["requestedQueryCost"] == 20 + 20 * 10 + 20 * 10 * 20


async def test_over_50000_nodes_is_refused_and_nothing_runs(engine, org):
    await store(engine, org.admin, turns=[turn_("t1", 1)])
    with count_statements(engine) as counter:
        result = await execute(engine, org.admin, THREE_LEVELS, {"n": 40})  # 40 + 1,600 + 64,000
    assert [e.extensions["code"] for e in result.errors] == ["QUERY_TOO_COMPLEX"]
    assert result.data is None
    assert result.extensions["cost"]["requestedQueryCost"] == 40 + 1600 + 64000
    assert counter.count == 0


async def test_nodes_by_ids_count_the_list_length():
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    tight = Limits(max_nodes=5)
    assert (await run(query, tight, {"ids": ["x"] * 6})).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    inline = await run('{ nodes(ids: ["a", "b", "c"]) { __typename } }', Limits(max_nodes=2))
    assert inline.extensions["cost"]["requestedQueryCost"] == 3
    assert inline.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"


async def test_first_past_the_page_maximum_stays_a_bad_user_input(engine, org):
    assert await codes(engine, org.admin, "{ sessions(first: 100000) { nodes { id } } }") == ["BAD_USER_INPUT"]


# --- selected fields ---------------------------------------------------------------------


def aliases(count: int, field: str = "__typename") -> str:
    return "{ " + " ".join(f"a{i}: {field}" for i in range(count)) + " }"


async def test_1000_fields_run_and_1001_are_refused():
    assert (await run(aliases(1000))).errors is None
    refused = await run(aliases(1001))
    assert [e.extensions["code"] for e in refused.errors] == ["QUERY_TOO_COMPLEX"]
    assert refused.data is None


async def test_fragments_count_each_time_they_are_spread():
    fragment = "fragment Many on Query { " + " ".join(f"f{i}: __typename" for i in range(400)) + " }"
    inline = "... on Query { " + " ".join(f"g{i}: __typename" for i in range(300)) + " }"
    once = await run("{ ...Many " + inline + " } " + fragment)
    assert once.errors is None and once.extensions["cost"]["fields"] == 700
    twice = await run("{ ...Many x: viewer { __typename } ...Many " + inline + " } " + fragment)
    assert twice.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"


@pytest.fixture
def no_validation(monkeypatch):
    """Fails the test if a document gets as far as validation, the costly step a refused
    document must never reach. (How fast a refusal is, is measured in bench/, not here.)"""

    def refuse(*args, **kwargs):
        raise AssertionError("validation ran")

    monkeypatch.setattr(limits, "validate_cached", refuse)


async def test_5000_alias_document_is_refused_before_validation_and_before_any_sql(engine, org, no_validation):
    document = "{" + " ".join(f"a{i}:viewer{{role}}" for i in range(5000)) + "}"
    assert len(document.encode()) < 100_000  # refused by its tokens or fields, not its size
    with count_statements(engine) as counter:
        result = await execute(engine, org.admin, document)
    assert [e.extensions["code"] for e in result.errors] == ["QUERY_TOO_COMPLEX"]
    assert counter.count == 0


async def test_the_walk_alone_refuses_5000_aliases_before_validation(no_validation):
    """With the parser's token cap out of the way, the field count refuses the same document."""
    document = "{" + " ".join(f"a{i}:viewer{{role}}" for i in range(5000)) + "}"
    result = await run(document, Limits(max_tokens=1_000_000))
    assert result.errors[0].message == "The document selects 10000 fields, aliases included; the limit is 1000."


async def test_a_document_of_too_many_tokens_is_refused_while_parsing():
    document = aliases(20)  # 62 tokens
    refused = await run(document, Limits(max_tokens=61))
    assert refused.errors[0].message == "The document has more than 61 tokens."
    assert refused.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert (await run(document, Limits(max_tokens=62))).errors is None


async def test_fragment_cycles_and_fan_out_are_measured_once_per_fragment(monkeypatch):
    cycle = "{ ...A } fragment A on Query { viewer { role } ...B } fragment B on Query { ...A }"
    result = await run(cycle)
    assert [e.extensions["code"] for e in result.errors] == ["GRAPHQL_VALIDATION_FAILED"]
    # Each fragment spreads the next one three times: 3^60 fields if expanded naively; the
    # walk measures each fragment once, so its work grows with the document, not the fan-out.
    walked = []
    measure_fragment = limits._Walk.fragment
    monkeypatch.setattr(limits._Walk, "fragment", lambda self, name: walked.append(name) or measure_fragment(self, name))
    fan = "{ ...F0 } " + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} ...F{i + 1} }}" for i in range(60))
    fan += " fragment F60 on Query { __typename }"
    result = await run(fan)
    assert result.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert result.extensions["cost"]["fields"] > 10**15
    assert len(walked) <= 3 * 61 and len(set(walked)) == 61


# --- document size ------------------------------------------------------------------------


async def test_document_over_100_kb_is_refused_before_parsing(monkeypatch):
    padding = "#" + "x" * 100_000 + "\n"
    parsed = []
    monkeypatch.setattr(limits, "parse_cached", lambda *a, **k: parsed.append(a) or limits.parse(*a))
    result = await run(padding + "{ __typename }")
    assert [e.extensions["code"] for e in result.errors] == ["QUERY_TOO_COMPLEX"]
    assert result.extensions["cost"]["documentBytes"] == len(padding) + len("{ __typename }")
    assert parsed == []
    assert (await run("#" + "x" * 90_000 + "\n{ __typename }")).errors is None


# --- cost on every response ------------------------------------------------------------


async def test_every_response_reports_its_cost_and_the_limits(client, engine, org):
    key = await api_key(engine, org.admin)
    for body in ({"query": "{ sessions(first: 5) { nodes { id } } }"}, {"query": "{ nope }"}, {"query": "{"}):
        response = await client.post("/graphql", json=body, headers={"X-API-Key": key})
        cost = response.json()["extensions"]["cost"]
        assert cost["maximumAvailable"] == 50_000
        assert cost["maximumDepth"] == 15 and cost["maximumFields"] == 1000
        assert cost["maximumDocumentBytes"] == 100_000
        assert cost["documentBytes"] == len(body["query"])
    query = "{ sessions(first: 5) { nodes { id } } }"
    cost = (await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})).json()["extensions"]["cost"]
    assert (cost["requestedQueryCost"], cost["depth"], cost["fields"]) == (5, 3, 3)


# --- configuration -------------------------------------------------------------------------


async def test_each_limit_is_configurable():
    assert (await run(nested(4), Limits(max_depth=3))).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert (await run(aliases(3), Limits(max_fields=2))).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert (await run("{ sessions(first: 3) { totalCount } }", Limits(max_nodes=2))).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert (await run("{ __typename }", Limits(max_document_bytes=10))).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SESSIONGRAPH_MAX_DEPTH", "7")
    monkeypatch.setenv("SESSIONGRAPH_MAX_NODES", "900")
    monkeypatch.setenv("SESSIONGRAPH_MAX_FIELDS", "80")
    monkeypatch.setenv("SESSIONGRAPH_MAX_DOCUMENT_BYTES", "5000")
    monkeypatch.setenv("SESSIONGRAPH_MAX_TOKENS", "600")
    assert Settings.from_env("sqlite+aiosqlite:///x.db").limits == Limits(7, 900, 80, 5000, 600)
    monkeypatch.setenv("SESSIONGRAPH_MAX_DEPTH", "deep")
    with pytest.raises(ValueError, match="SESSIONGRAPH_MAX_DEPTH"):
        Settings.from_env("sqlite+aiosqlite:///x.db")


async def test_serve_flags_set_the_limits_of_a_live_server(engine, org, database_url):
    import httpx

    key = await api_key(engine, org.admin)
    with live_server(database_url, "--max-fields", "2", "--max-depth", "2") as server:
        two = httpx.post(server.url, json={"query": "{ a: __typename b: __typename }"}, headers={"X-API-Key": key})
        three = httpx.post(server.url, json={"query": "{ a: __typename b: __typename c: __typename }"}, headers={"X-API-Key": key})
        deep = httpx.post(server.url, json={"query": "{ viewer { role } }"}, headers={"X-API-Key": key})
        deeper = httpx.post(server.url, json={"query": "{ sessions { nodes { id } } }"}, headers={"X-API-Key": key})
    assert two.json()["data"] == {"a": "Query", "b": "Query"}
    assert three.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert deep.json()["data"]["viewer"]["role"] == "ADMIN"
    assert deeper.json()["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert deeper.json()["extensions"]["cost"]["maximumDepth"] == 2


async def test_the_same_limits_apply_to_every_transport_through_the_schema(engine, org):
    """The check is a schema extension: whatever executes the schema (HTTP, WebSocket) is limited."""
    context = RequestContext(engine, org.admin)
    try:
        result = await schema.execute(aliases(1001), context_value=context)
    finally:
        await context.close()
    assert result.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
