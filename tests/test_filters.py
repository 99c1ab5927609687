"""The session list's filters (SessionFilter, kinds.graphql): each alone and combined with the
others, under every order and both paging directions, answer what a Python evaluation of the
same rules over the stored sessions answers, with the right totalCount, on both databases;
a filtered page costs a fixed number of statements; USER and ADMIN see what they saw before.
`metadata` containment follows PostgreSQL's jsonb `@>` on both databases: the edge cases
below, and a property test comparing PostgreSQL itself with the rules SQLite runs."""

import random
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, select, text, update

from sessiongraph.models import Session
from sessiongraph.models.containment import contains, parse
from sessiongraph.models.database import json_dumps
from sessiongraph.models.search_text import fold
from sessiongraph.resolvers.rules import search_terms
from tests.conftest import T0, count_statements, error_codes, execute, ok, store

PAGE = """query($filter: SessionFilter, $order: SessionOrder, $first: Int, $after: String, $last: Int, $before: String) {
  sessions(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { sessionId }
  }
}"""

ORDERS = [(f, d) for f in ("CREATED_AT", "UPDATED_AT", "LAST_ACTIVITY_AT", "TOKENS_USED") for d in ("DESC", "ASC")]
ORDER_COLUMN = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at", "LAST_ACTIVITY_AT": "last_activity_at", "TOKENS_USED": "tokens_used"}

RESOURCES = [("pgdemo", "database"), ("mysql-prod", "database"), ("bastion", "application"), ("custom-api", "custom")]
ENDPOINTS = ["openai/gpt", "local/llama", "azure/gpt"]
METADATA_VALUES = {
    "team": ["banking", "retail"],
    "env": ["prod", "dev"],
    "n": [1, 1.0, 2, "1", True, None],
    "tags": [["a"], ["a", "b"], ["b", "a", "a"], []],
    "nested": [{"x": 1}, {"x": 1, "y": [1, 2]}, {"x": None}, {"x": "1"}],
}


def random_metadata(rng: random.Random) -> dict:
    return {key: rng.choice(values) for key, values in METADATA_VALUES.items() if rng.random() < 0.6}


def random_columns(rng: random.Random, n: int) -> dict:
    """The columns of a generated session beyond what `store` writes."""
    kind = rng.choice(["AGENT", "TERMINAL", "TERMINAL", "RED_TEAM"])
    status = rng.choice(["READY", "OPEN", "DONE"])
    columns = {
        "kind": kind,
        "status": status,
        "ended_at": T0 + timedelta(hours=1, minutes=rng.randrange(60)) if status == "DONE" else None,
        "batch_id": rng.choice([None, "batch-1", "batch-2"]),
        "correlation_id": rng.choice([None, "run-1", "run-2"]),
        "identity_type": rng.choice(["USER", "MACHINE"]),
        "tokens_used": rng.choice([0, 10, 10, 500]),
        "updated_at": T0 + timedelta(minutes=rng.randrange(100)),
        "last_activity_at": T0 + timedelta(minutes=rng.randrange(100)),
        "guardrail_count": 0,
    }
    if kind == "TERMINAL":
        name, type_ = rng.choice(RESOURCES)
        columns.update(
            verb=rng.choice(["EXEC", "CONNECT"]), resource_name=name, resource_type=type_,
            review_status=rng.choice([None, "PENDING", "APPROVED", "REJECTED", "REVOKED"]),
            guardrail_count=rng.choice([0, 0, 1, 2]),
        )  # fmt: skip
    if kind == "RED_TEAM":
        columns.update(runner_id=f"runner-{n % 3}", endpoints=rng.sample(ENDPOINTS, rng.randrange(1, 3)))
    return columns


async def set_columns(engine, session_id: uuid.UUID, columns: dict) -> None:
    async with engine.begin() as connection:
        await connection.execute(update(Session.__table__).where(Session.id == session_id).values(columns))


async def stored_sessions(engine) -> list[dict]:
    """Every stored session's row, as a dict of its columns."""
    async with engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(select(Session.__table__))]


@pytest.fixture
async def data(engine, org, other_org):
    """60 generated sessions of alice, bob, the admin and another organisation's user, two
    of them deleted; returns the stored rows."""
    rng = random.Random(15)
    owners = [org.alice, org.alice, org.bob, org.admin, other_org.alice]
    for n in range(60):
        owner = rng.choice(owners)
        session_id = await store(
            engine, owner, n, title=f"session {n}" + (" special" if n % 7 == 0 else ""),
            external_id=f"ext-{n}", metadata=random_metadata(rng),
        )  # fmt: skip
        columns = random_columns(rng, n)
        if n in (5, 17):
            columns["deleted_at"] = T0 + timedelta(days=1)
        await set_columns(engine, session_id, columns)
    return await stored_sessions(engine)


# --- the rules, in Python ------------------------------------------------------------


def _iso(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


RULES = {
    "search": lambda s, v: v.lower() in (s["title"] or "").lower() or v.lower() in (s["external_id"] or "").lower(),
    "createdAfter": lambda s, v: s["created_at"] > _iso(v),
    "createdBefore": lambda s, v: s["created_at"] < _iso(v),
    "externalIds": lambda s, v: s["external_id"] in v,
    "userId": lambda s, v: str(s["user_id"]) == v,
    "kinds": lambda s, v: s["kind"] in v,
    "statuses": lambda s, v: s["status"] in v,
    "batchId": lambda s, v: s["batch_id"] == v,
    "correlationId": lambda s, v: s["correlation_id"] == v,
    "identityType": lambda s, v: s["identity_type"] == v,
    "endedAfter": lambda s, v: s["ended_at"] is not None and s["ended_at"] > _iso(v),
    "endedBefore": lambda s, v: s["ended_at"] is not None and s["ended_at"] < _iso(v),
    "resourceNames": lambda s, v: s["kind"] == "TERMINAL" and s["resource_name"] in v,
    "resourceTypes": lambda s, v: s["kind"] == "TERMINAL" and s["resource_type"] in v,
    "verbs": lambda s, v: s["kind"] == "TERMINAL" and s["verb"] in v,
    "reviewStatuses": lambda s, v: s["review_status"] in v,
    "blockedByGuardrail": lambda s, v: (s["guardrail_count"] > 0) == v,
    "runnerIds": lambda s, v: s["kind"] == "RED_TEAM" and s["runner_id"] in v,
    "endpoint": lambda s, v: s["kind"] == "RED_TEAM" and v in (s["endpoints"] or []),
    "metadata": lambda s, v: contains(parse(json_dumps(s["metadata"])), parse(json_dumps(v))),
    # These sessions have no turns or events: their titles alone.
    "text": lambda s, v: all(term in fold(s["title"] or "") for term in search_terms(v)),
}


def expected(rows: list[dict], viewer, filter: dict, order: tuple[str, str] = ("CREATED_AT", "DESC")) -> list[str]:
    """The session ids `viewer` lists with `filter`, in `order`, by the rules above."""
    found = [
        s for s in rows
        if s["org_id"] == viewer.org_id and s["deleted_at"] is None
        and (viewer.role == "ADMIN" or s["user_id"] == viewer.user_id)
        and all(value is None or RULES[name](s, value) for name, value in filter.items())
    ]  # fmt: skip
    column = ORDER_COLUMN[order[0]]
    found.sort(key=lambda s: (s[column], s["id"]), reverse=order[1] == "DESC")
    return [str(s["id"]) for s in found]


# Example values of each filter, in the contract's order (new ones) after the old ones.
EXAMPLES = {
    "search": ["special"],
    "createdAfter": [(T0 + timedelta(minutes=30)).isoformat()],
    "createdBefore": [(T0 + timedelta(minutes=30)).isoformat()],
    "externalIds": [["ext-1", "ext-2", "ext-40"]],
    "kinds": [["TERMINAL"], ["AGENT", "RED_TEAM"], []],
    "statuses": [["DONE"], ["READY", "OPEN"]],
    "batchId": ["batch-1"],
    "correlationId": ["run-2"],
    "identityType": ["MACHINE", "USER"],
    "endedAfter": [(T0 + timedelta(hours=1, minutes=30)).isoformat()],
    "endedBefore": [(T0 + timedelta(hours=1, minutes=30)).isoformat()],
    "resourceNames": [["pgdemo"], ["pgdemo", "bastion"]],
    "resourceTypes": [["database"]],
    "verbs": [["EXEC"], ["CONNECT"]],
    "reviewStatuses": [["APPROVED"], ["PENDING", "REJECTED"]],
    "blockedByGuardrail": [True, False],
    "runnerIds": [["runner-1"]],
    "endpoint": ["openai/gpt", "local/llama"],
    "metadata": [{}, {"team": "banking"}, {"n": 1}, {"tags": ["a"]}, {"tags": ["b", "a"]}, {"nested": {"x": 1}}, {"n": None}],
    "text": ["SPECIAL", '"session 1"', "sion spec"],
}
ALONE = [(name, value) for name, values in EXAMPLES.items() for value in values]


async def walk(engine, viewer, filter: dict, order: tuple[str, str], size: int, forward: bool) -> list[str]:
    """Every page of the list, `size` at a time, forward (first/after) or backward
    (last/before), checking totalCount on each; the ids in list order."""
    ids, cursor, total = [], None, None
    while True:
        variables = {"filter": filter, "order": {"field": order[0], "direction": order[1]}}
        variables.update({"first": size, "after": cursor} if forward else {"last": size, "before": cursor})
        page = (await ok(engine, viewer, PAGE, variables))["sessions"]
        assert total in (None, page["totalCount"])
        total = page["totalCount"]
        found = [n["sessionId"] for n in page["nodes"]]
        ids = ids + found if forward else found + ids
        more = page["pageInfo"]["hasNextPage" if forward else "hasPreviousPage"]
        if not more:
            assert total == len(ids)
            return ids
        cursor = page["pageInfo"]["endCursor" if forward else "startCursor"]


async def test_each_filter_alone(engine, org, data):
    for name, value in ALONE:
        for viewer in (org.admin, org.alice):
            want = expected(data, viewer, {name: value})
            page = (await ok(engine, viewer, PAGE, {"first": 100, "filter": {name: value}}))["sessions"]
            assert [n["sessionId"] for n in page["nodes"]] == want, (name, value)
            assert page["totalCount"] == len(want)


def test_the_examples_cover_every_declared_filter():
    from strawberry.schema.name_converter import NameConverter

    from sessiongraph.models.fields import SESSION_FILTERS

    names = {NameConverter().apply_naming_config(f.name) for f in SESSION_FILTERS}
    assert names == set(EXAMPLES) | {"userId"} == set(RULES)


def random_filter(rng: random.Random, org) -> dict:
    names = rng.sample(sorted(EXAMPLES) + ["userId"], rng.randrange(2, 5))
    return {
        name: str(rng.choice([org.alice, org.bob]).user_id) if name == "userId" else rng.choice(EXAMPLES[name])
        for name in names
    }


async def test_filters_combined_under_every_order_and_both_paging_directions(engine, org, data):
    rng = random.Random(4)
    matched = 0
    for i in range(48):
        filter = random_filter(rng, org)
        order = ORDERS[i % len(ORDERS)]
        viewer = org.admin if i % 3 else org.alice
        want = expected(data, viewer, filter, order)
        matched += bool(want)
        size = rng.choice([1, 2, 3])
        assert await walk(engine, viewer, filter, order, size, forward=True) == want, (filter, order)
        assert await walk(engine, viewer, filter, order, size, forward=False) == want, (filter, order)
    assert matched >= 20  # the combinations are not all empty


async def test_all_filters_at_once(engine, org, data):
    # One generated session's own values for every filter: it, at least, is listed.
    target = next(s for s in data if s["kind"] == "TERMINAL" and s["user_id"] == org.alice.user_id and s["deleted_at"] is None)
    filter = {
        "search": "session", "createdAfter": (T0 - timedelta(days=1)).isoformat(),
        "createdBefore": (T0 + timedelta(days=1)).isoformat(), "externalIds": [target["external_id"], "ext-2"],
        "userId": str(org.alice.user_id), "kinds": ["TERMINAL"], "statuses": [target["status"]],
        "batchId": target["batch_id"], "correlationId": target["correlation_id"],
        "identityType": target["identity_type"], "resourceNames": [target["resource_name"]],
        "resourceTypes": [target["resource_type"]], "verbs": [target["verb"]],
        "reviewStatuses": [target["review_status"]] if target["review_status"] else None,
        "blockedByGuardrail": target["guardrail_count"] > 0, "metadata": target["metadata"],
    }  # fmt: skip
    for viewer in (org.admin, org.alice):
        want = expected(data, viewer, filter)
        assert str(target["id"]) in want
        for order in (("CREATED_AT", "DESC"), ("TOKENS_USED", "ASC")):
            assert await walk(engine, viewer, filter, order, 1, forward=True) == expected(data, viewer, filter, order)
            assert await walk(engine, viewer, filter, order, 1, forward=False) == expected(data, viewer, filter, order)


async def test_filters_do_not_widen_what_a_user_sees(engine, org, other_org, data):
    # Filters only narrow: a USER filtering on another user's values, or on the other
    # organisation's, still sees only its own sessions.
    bobs = {str(s["id"]) for s in data if s["user_id"] == org.bob.user_id}
    alices = {str(s["id"]) for s in data if s["user_id"] == org.alice.user_id}
    for filter in ({"userId": str(org.bob.user_id), "kinds": ["TERMINAL", "AGENT", "RED_TEAM"]}, {"metadata": {}}, {"blockedByGuardrail": False}):
        listed = set(await walk(engine, org.alice, filter, ("CREATED_AT", "DESC"), 50, True))
        assert not listed & bobs
        assert listed <= alices
    theirs = await walk(engine, other_org.alice, {"metadata": {}}, ("CREATED_AT", "DESC"), 50, True)
    assert theirs == expected(data, other_org.alice, {})
    assert not set(theirs) & (alices | bobs)


# --- statements ----------------------------------------------------------------------

EVERY_FILTER = {
    "search": "session", "createdAfter": (T0 - timedelta(days=1)).isoformat(), "createdBefore": (T0 + timedelta(days=9)).isoformat(),
    "externalIds": [f"ext-{n}" for n in range(100)], "kinds": ["TERMINAL", "AGENT"], "statuses": ["OPEN", "READY", "DONE"],
    "batchId": "batch-1", "correlationId": "run-1", "identityType": "USER",
    "endedAfter": T0.isoformat(), "endedBefore": (T0 + timedelta(days=9)).isoformat(), "resourceNames": ["pgdemo"],
    "resourceTypes": ["database"], "verbs": ["EXEC"], "reviewStatuses": ["APPROVED"], "blockedByGuardrail": False,
    "runnerIds": ["runner-1"], "endpoint": "openai/gpt", "metadata": {"team": "banking"},
}  # fmt: skip


@pytest.mark.usefixtures("both_executions")
@pytest.mark.parametrize("filter", [{"kinds": ["TERMINAL"], "resourceNames": ["pgdemo"], "reviewStatuses": ["APPROVED"], "metadata": {"team": "banking"}}, EVERY_FILTER], ids=["bar", "every"])
async def test_a_filtered_page_costs_the_same_statements_whatever_the_data(engine, org, filter):
    costs = []
    for n in range(45):
        session_id = await store(engine, org.alice, n, external_id=f"ext-{n}", metadata={"team": "banking", "n": n})
        await set_columns(engine, session_id, {
            "kind": "TERMINAL", "resource_name": "pgdemo", "resource_type": "database", "review_status": "APPROVED",
            "verb": "EXEC", "batch_id": "batch-1", "correlation_id": "run-1", "status": "DONE", "ended_at": T0 + timedelta(days=1),
        })  # fmt: skip
        if n in (4, 44):
            for forward in (True, False):
                variables = {"filter": filter, **({"first": 20} if forward else {"last": 20})}
                with count_statements(engine) as counter:
                    await ok(engine, org.alice, PAGE, variables)
                costs.append(counter.count)
    assert len(set(costs)) == 1 and costs[0] <= 2, costs


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [[{"team": "banking"}], "banking", 1, True, ["a"]], ids=str)
async def test_metadata_filter_must_be_an_object(engine, org, value):
    result = await execute(engine, org.alice, PAGE, {"first": 5, "filter": {"metadata": value}})
    assert [e.extensions["code"] for e in result.errors] == ["BAD_USER_INPUT"]
    assert "must be a JSON object" in result.errors[0].message


async def test_metadata_filter_nested_too_deep_is_refused(engine, org):
    deep: dict = {}
    for _ in range(40):
        deep = {"a": deep}
    assert await error_codes(engine, org.alice, PAGE, {"first": 5, "filter": {"metadata": deep}}) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("filter", [
    {"metadata": {"k": "a\x00"}}, {"metadata": {"a\x00": 1}}, {"metadata": {"k": ["\x00"]}},
    {"endpoint": "openai\x00"}, {"batchId": "\x00"}, {"correlationId": "run\x00"}, {"resourceNames": ["\x00"]},
    {"runnerIds": ["r\x00"], "metadata": {}},
], ids=str)  # fmt: skip
async def test_values_no_session_can_hold_match_nothing(engine, org, filter):
    session_id = await store(engine, org.alice, 1, metadata={"k": "a"})
    await set_columns(engine, session_id, {"kind": "RED_TEAM", "endpoints": ["openai"], "runner_id": "r"})
    data = (await ok(engine, org.alice, PAGE, {"first": 5, "filter": filter}))["sessions"]
    assert (data["totalCount"], data["nodes"]) == (0, [])


@pytest.mark.parametrize("literal", ["{kinds: [SPACESHIP]}", '{kinds: ["TERMINAL"]}', "{blockedByGuardrail: 1}", '{endedAfter: "soon"}'])
async def test_malformed_new_filter_literals_fail_validation(engine, org, literal):
    query = "{ sessions(filter: %s) { totalCount } }" % literal
    assert await error_codes(engine, org.alice, query) == ["GRAPHQL_VALIDATION_FAILED"]


# --- metadata containment: PostgreSQL's jsonb @> on both databases ---------------------

# (stored metadata, filter, whether it matches): PostgreSQL's answers, checked on both
# databases below.
CONTAINMENT = [
    ({"team": "banking", "env": "prod"}, {"team": "banking"}, True),
    ({"team": "banking"}, {"team": "banking", "env": "prod"}, False),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),  # nested objects
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 2}}, False),
    ({"a": {"b": {"c": [1, {"d": "e", "f": 0}]}}}, {"a": {"b": {"c": [{"d": "e"}]}}}, True),
    ({"tags": ["a", "b"]}, {"tags": ["a"]}, True),  # arrays: a subset, any order
    ({"tags": ["a", "b"]}, {"tags": ["b", "a"]}, True),
    ({"tags": ["a"]}, {"tags": ["a", "a"]}, True),  # duplicates do not count
    ({"tags": ["a", "a"]}, {"tags": ["a"]}, True),
    ({"tags": ["a"]}, {"tags": ["a", "b"]}, False),
    ({"tags": ["a"]}, {"tags": []}, True),
    ({"tags": []}, {"tags": []}, True),
    ({"tags": "a"}, {"tags": ["a"]}, False),  # a scalar is not an array
    ({"tags": ["a"]}, {"tags": "a"}, False),  # nor the other way round below the top
    ({"items": [{"id": 1, "x": 2}, {"id": 3}]}, {"items": [{"id": 1}]}, True),
    ({"items": [{"id": 1, "x": 2}, {"id": 3}]}, {"items": [{"id": 1, "x": 3}]}, False),
    ({"items": [{"id": 1}, {"x": 2}]}, {"items": [{"id": 1, "x": 2}]}, False),  # one element must hold it all
    ({"m": [[1, 2], [3]]}, {"m": [[3]]}, True),
    ({"m": [[1, 2], [3]]}, {"m": [3]}, False),
    ({"m": [[1, 2], [3]]}, {"m": [[1, 3]]}, False),
    ({"a": {}}, {"a": []}, False),  # an object is not an array
    ({"a": []}, {"a": {}}, False),
    ({"a": {"b": 1}}, {"a": {}}, True),
    ({"n": 1}, {"n": 1.0}, True),  # numbers by value
    ({"n": 1.0}, {"n": 1}, True),
    ({"n": 100}, {"n": 1e2}, True),
    ({"n": 0}, {"n": -0.0}, True),
    ({"n": 0.1}, {"n": 0.1}, True),
    ({"n": 0.1}, {"n": 0.10000000000000002}, False),
    ({"n": 12345678901234567890123}, {"n": 12345678901234567890123}, True),
    ({"n": 12345678901234567890123}, {"n": 12345678901234567890124}, False),
    ({"n": [1, 2]}, {"n": [2.0]}, True),
    ({"n": 1}, {"n": "1"}, False),  # strings are not numbers
    ({"n": "1"}, {"n": 1}, False),
    ({"n": True}, {"n": 1}, False),  # booleans are not numbers
    ({"n": 1}, {"n": True}, False),
    ({"n": False}, {"n": 0}, False),
    ({"n": [True]}, {"n": [1]}, False),
    ({"n": True}, {"n": True}, True),
    ({"k": None}, {"k": None}, True),  # null matches only a stored null
    ({}, {"k": None}, False),
    ({"k": 0}, {"k": None}, False),
    ({"k": False}, {"k": None}, False),
    ({"k": ""}, {"k": None}, False),
    ({"k": [None]}, {"k": [None]}, True),
    ({"k": None}, {"k": [None]}, False),
    ({"a": 1}, {}, True),  # {} matches everything
    ({}, {}, True),
    ({"a": "A"}, {"a": "a"}, False),  # strings exactly
    ({"é": "ü ✓"}, {"é": "ü ✓"}, True),
    ({"a": "x"}, {"A": "x"}, False),
]


@pytest.mark.parametrize(("stored", "filter", "match"), CONTAINMENT, ids=[f"{s}>={f}" for s, f, _ in CONTAINMENT])
async def test_metadata_containment_edge_cases(engine, org, stored, filter, match):
    session_id = await store(engine, org.alice, 1, metadata=stored)
    other = await store(engine, org.alice, 2, metadata={"other": True})  # only {} matches it
    data = (await ok(engine, org.alice, PAGE, {"first": 5, "filter": {"metadata": filter}}))["sessions"]
    want = ([str(other)] if filter == {} else []) + ([str(session_id)] if match else [])
    assert [n["sessionId"] for n in data["nodes"]] == want
    assert contains(parse(json_dumps(stored)), parse(json_dumps(filter))) is match  # the Python rules say the same


async def test_endpoint_keeps_red_team_sessions_testing_it(engine, org):
    tested = await store(engine, org.alice, 1)
    await set_columns(engine, tested, {"kind": "RED_TEAM", "runner_id": "r1", "endpoints": ["b", "a/1"]})
    other = await store(engine, org.alice, 2)
    await set_columns(engine, other, {"kind": "RED_TEAM", "runner_id": "r2", "endpoints": ["b"]})
    await store(engine, org.alice, 3, metadata={"endpoints": ["a/1"]})
    for endpoint, want in (("a/1", [tested]), ("b", [other, tested]), ("a", []), ("", [])):
        data = (await ok(engine, org.alice, PAGE, {"first": 5, "filter": {"endpoint": endpoint}}))["sessions"]
        assert [n["sessionId"] for n in data["nodes"]] == [str(i) for i in want]


# Generated JSON: few keys and values, so that filters often match.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, -0.0, 2.5, 1e20, 10**20, 0.1]),
    st.sampled_from(["", "a", "b", "1", "true", "é"]),
)  # fmt: skip
KEYS = st.sampled_from(["a", "b", "c", "1"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=4)


def part_of(value, rng: random.Random):
    """A value the generated one likely contains: some of its keys, some of its array
    elements (shuffled, some twice), numbers written as floats."""
    if isinstance(value, dict):
        return {k: part_of(v, rng) for k, v in value.items() if rng.random() < 0.6}
    if isinstance(value, list):
        chosen = [part_of(v, rng) for v in value if rng.random() < 0.6]
        chosen += chosen[:1] if rng.random() < 0.3 else []
        rng.shuffle(chosen)
        return chosen
    if isinstance(value, int) and not isinstance(value, bool) and rng.random() < 0.3:
        return float(value)
    return value


def draw_cases(count: int) -> list[tuple[list[dict], list[dict]]]:
    """`count` cases, each some documents and some filters (parts of them, and free ones)."""
    cases = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(documents=st.lists(DOCUMENTS, min_size=1, max_size=6), free=st.lists(DOCUMENTS, max_size=2), seed=st.integers(0, 2**16))
    def draw(documents, free, seed):
        rng = random.Random(seed)
        cases.append((documents, [part_of(rng.choice(documents), rng) for _ in range(3)] + free))

    draw()
    return cases


async def test_containment_rules_are_postgresqls(engine):
    # PostgreSQL's own @> against the Python rules (SQLite's), pair by pair; on SQLite the
    # registered function against the same rules.
    dialect = engine.dialect.name
    check = (
        "SELECT CAST(:a AS JSONB) @> CAST(:b AS JSONB)" if dialect == "postgresql" else "SELECT sg_json_contains(:a, :b)"
    )
    statement = text(check).bindparams(bindparam("a"), bindparam("b"))
    pairs = [(d, f) for documents, filters in draw_cases(150) for d in documents for f in filters]
    async with engine.connect() as connection:
        for stored, filter in pairs:
            a, b = json_dumps(stored), json_dumps(filter)
            answer = bool((await connection.execute(statement, {"a": a, "b": b})).scalar())
            assert answer is contains(parse(a), parse(b)), (stored, filter)


async def test_metadata_filter_answers_as_postgresql_on_both_databases(engine, org):
    # The same generated documents and filters through the API: what the rules say.
    for documents, filters in draw_cases(25):
        async with engine.begin() as connection:
            await connection.execute(Session.__table__.delete())
        stored = [(await store(engine, org.alice, m, metadata=d), d) for m, d in enumerate(documents)]
        for filter in filters:
            data = (await ok(engine, org.alice, PAGE, {"first": 100, "filter": {"metadata": filter}}))["sessions"]
            want = [str(i) for i, d in reversed(stored) if contains(parse(json_dumps(d)), parse(json_dumps(filter)))]
            assert [n["sessionId"] for n in data["nodes"]] == want, (documents, filter)
            assert data["totalCount"] == len(want)
