"""The planner answers exactly as normal execution does: every query document of
graphql_queries/ and a few thousand generated selections, compared byte for byte."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, update
from graphql import OperationType, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.name_converter import NameConverter

from sessiongraph.models import Session, Turn
from sessiongraph.models import fields as declared
from sessiongraph.planner import compiled
from sessiongraph.planner.extension import PlannedExecution, execute_planned
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.ids import from_global_id, to_global_id
from sessiongraph.resolvers.pagination import encode_cursor
from sessiongraph.schema import schema
from tests.conftest import api_key, count_statements, event_, store, store_red_team, store_terminal, turn_
from tests.test_graphql_queries import DOCUMENTS

without_planner = schema.configured(schema.limits, schema.introspection, planner=False)


def response(result) -> bytes:
    """The response body as the HTTP layer builds it (minus the transport's own choices)."""
    body = {}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    body["data"] = result.data
    if result.extensions:
        body["extensions"] = result.extensions
    return orjson.dumps(body)


async def both_ways(engine, viewer, query: str, variables: dict | None = None) -> tuple[bytes, bytes, bool]:
    """(the response without the planner, the response with it, whether the planner
    answered itself rather than falling back)."""
    answers = []
    for executor in (without_planner, schema):
        context = RequestContext(engine, viewer)
        answered = PlannedExecution.answered
        try:
            with count_statements(engine) as counter:
                result = await executor.execute(query, variable_values=variables, context_value=context)
        finally:
            await context.close()
        answers.append((response(result), counter.count, PlannedExecution.answered > answered))
    (expected, normal_count, _), (planned, planned_count, answered) = answers
    if answered:
        assert planned_count <= normal_count, (planned_count, normal_count)
    # The HTTP layer's way around Strawberry's pipeline answers exactly what the planner
    # answers, with the same bytes, and leaves everything else to `schema.execute`.
    context = RequestContext(engine, viewer)
    try:
        shortcut = await execute_planned(schema, query, variables, context, None)
    finally:
        await context.close()
    assert (shortcut is not None) == answered, query
    if shortcut is not None:
        assert response(shortcut) == planned, query
    return expected, planned, answered


def assert_same_answer(expected: bytes, planned: bytes, answered: bool, case) -> None:
    """Byte for byte where the planner answered. Where it handed the operation to graphql-core
    (an error somewhere), the answer is graphql-core's own; which of several errors it
    reports can then depend on which statement returned first (once an error has nulled a
    field, graphql-core drops the errors that follow under it), so that part is compared as
    what a client relies on: the same data, the same cost, errors with the same codes."""
    if answered or planned == expected:
        assert planned == expected, case
        return
    expected_body, planned_body = orjson.loads(expected), orjson.loads(planned)
    assert planned_body.get("data") == expected_body.get("data"), case
    assert planned_body.get("extensions") == expected_body.get("extensions"), case
    codes = [{e["extensions"]["code"] for e in body.get("errors", ())} for body in (expected_body, planned_body)]
    assert codes[0] == codes[1] and codes[0], case


@pytest.fixture
async def world(engine, org, other_org):
    """Two users' sessions with turns, partial and binary events, a deleted session, and a
    session of another organisation."""
    ids = {}
    for owner, name in ((org.alice, "alice"), (org.bob, "bob"), (other_org.alice, "stranger")):
        for n in range(3):
            turns = [
                turn_(
                    f"t{n}-{k}",
                    n * 60 + k * 5,
                    events=[
                        event_("LLM_PROMPT", n * 60 + k * 5 + 1, f"ask {k}", agent="planner"),
                        event_("LLM_PARTIAL", n * 60 + k * 5 + 2, "partial", agent="writer"),
                        event_("LLM_OUTPUT", n * 60 + k * 5 + 3, f"answer {k}", agent="writer", payload={"k": k}),
                    ],
                    result="" if k == 1 else f" result {k} ",
                    tokens_used=10 * k,
                )
                for k in range(3)
            ]
            ids[f"{name}{n}"] = await store(
                engine,
                owner,
                minutes=n * 60,
                turns=turns,
                events=[event_("OUTPUT", n * 60 + 0.5, b"\xff\xfeok\n")],
                title=f"{name} session {n}",
                external_id=f"{name}-{n}",
                metadata={"n": n},
            )
        ids[f"{name}_terminal"] = await store_terminal(
            engine, owner, 200, title=f"{name} terminal", external_id=f"{name}-terminal",
            events=[event_("INPUT", 200.1, "select 1;\n"), event_("OUTPUT", 200.2, b"\xff 1 row\n"), event_("ERROR", 200.3, "denied")],
            details=TERMINAL_DETAILS,
        )
        ids[f"{name}_red_team"] = await store_red_team(
            engine, owner, 300, endpoints=("gpt", "claude", "llama"), rounds=4, settings=RED_TEAM_SETTINGS,
            title=f"{name} red team", external_id=f"{name}-red-team",
        )
    async with engine.begin() as connection:
        await connection.execute(update(Session).where(Session.id == ids["bob2"]).values(deleted_at=Session.created_at))
    return ids


TERMINAL_DETAILS = {
    "verb": "EXEC", "exit_code": 1, "terminal_input": "psql -c 'select 1'", "input_size": 18, "stream_size": 30,
    "terminal_columns": 120, "terminal_rows": 40, "user_email": "ops@example.com", "user_subject": "sub-1",
    "resource_name": "pgdemo", "resource_type": "database", "resource_subtype": "postgres", "resource_tags": {"team": "banking"},
    "review_status": "APPROVED", "review_created_at": datetime(2025, 10, 28, 5, 59, tzinfo=UTC),
    "review_decisions": [
        {"group": "dba", "status": "APPROVED", "reviewer_email": "r@example.com", "decided_at": "2025-10-28T06:00:30+00:00"},
        {"group": "sec", "status": "PENDING"},
    ],
    "guardrails": [{"rule": "no-drop", "direction": "INPUT", "matched_words": ["drop", "table"]}], "guardrail_count": 1,
    "data_masking": {"error_count": 0, "info_types": {"EMAIL_ADDRESS": 2}, "total_redact_count": 2, "transformed_bytes": 40},
    "ai_analysis": {"risk": "low", "notes": ["read only"]},
}
RED_TEAM_SETTINGS = {"attack_module": "jailbreak", "context_strategy": "last-n", "metric": "refusal", "system_prompt": "Be safe."}


async def test_every_query_document_answers_the_same(engine, org, world):
    from tests.test_graphql_queries import document

    for path in DOCUMENTS:
        operations = [d for d in parse(path.read_text()).definitions if getattr(d, "operation", None) is OperationType.QUERY]
        if not operations:
            continue
        query = document(path.name)
        # The same document with other variables: what a plan keeps must not depend on them.
        for session in ("alice0", "bob1", "stranger0", "alice_terminal", "alice_red_team"):
            gid = to_global_id("Session", world[session])
            for variables in (
                {"id": gid, "sessionId": gid, "query": "answer"},
                {"id": gid, "sessionId": gid, "first": 1, "filter": {"search": "session 1"}, "query": "ROW"},
                {"id": gid, "sessionId": gid, "first": 2, "orderBy": {"field": "TOKENS_USED", "direction": "ASC"}, "query": '"answer 1"'},
            ):
                for viewer in (org.alice, org.admin, org.bob):
                    assert_same_answer(*await both_ways(engine, viewer, query, variables), (path.name, variables))


async def test_the_planner_answers_the_nested_page_itself(engine, org, world):
    query = "{ sessions(first: 5) { edges { cursor node { id title turns(first: 2) { nodes { turn finalOutput events(first: 2) { nodes { seq message } } } } } } } }"
    expected, planned, planned_itself = await both_ways(engine, org.admin, query)
    assert planned_itself and planned == expected


async def test_a_query_the_planner_hands_back_runs_its_statements_once_over_http(engine, org, world, client):
    """Over HTTP a planned query skips Strawberry's pipeline; when the planner hands it back
    (here a cursor no turns page issued), normal execution answers it, and the planner is
    not tried a second time on the way: the request costs what `schema.execute` costs."""
    query = '{ sessions(first: 2) { nodes { title turns(first: 1, after: "garbage") { nodes { id } } } } }'
    headers = {"X-API-Key": await api_key(engine, org.alice)}
    await client.post("/graphql", json={"query": "{ viewer { userId } }"}, headers=headers)  # the key, cached
    with count_statements(engine) as over_http:
        body = (await client.post("/graphql", json={"query": query}, headers=headers)).json()
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    context = RequestContext(engine, org.alice)
    try:
        with count_statements(engine) as in_process:
            result = await schema.execute(query, context_value=context)
    finally:
        await context.close()
    assert orjson.loads(response(result)) == body
    assert over_http.count == in_process.count


async def statements_of(engine, viewer, query: str) -> list[str]:
    """The SQL statements the planner's execution of `query` sends."""
    context = RequestContext(engine, viewer)
    try:
        with count_statements(engine) as counter:
            result = await schema.execute(query, context_value=context)
    finally:
        await context.close()
    assert result.errors is None, result.errors
    return counter.statements


async def test_compiled_selections_read_only_the_columns_they_select(engine, org, world):
    """A selection of turns and events without relations is compiled: its pages fetch the
    columns its fields read (no payload, no JSON to decode, no join with the sessions unless
    elapsedMs is asked for), and the answer is still byte for byte the resolvers'."""
    query = "{ sessions(first: 5) { nodes { id turns(first: 2) { nodes { turn finalOutput events(first: 2) { nodes { seq message } } } } } } }"
    completions = compiled.COUNTS["completions"]
    expected, planned, planned_itself = await both_ways(engine, org.admin, query)
    assert planned_itself and planned == expected
    assert compiled.COUNTS["completions"] > completions
    statements = await statements_of(engine, org.admin, query)
    events_statement = statements[-1].lower()
    assert "events" in events_statement and "payload" not in events_statement and "sessions" not in events_statement
    assert "agents" not in statements[-2].lower()  # the turns' JSON column

    # elapsedMs needs the session's creation time; a relation (Event.turn) only its id column,
    # its turns loaded by id for all the page's events at once and compiled too.
    for selection, joined in (("seq elapsedMs", True), ("seq turn { id turn }", False)):
        query = f"{{ sessions(first: 2) {{ nodes {{ events(first: 3) {{ nodes {{ {selection} }} }} }} }} }}"
        expected, planned, planned_itself = await both_ways(engine, org.admin, query)
        assert planned_itself and planned == expected, selection
        statements = await statements_of(engine, org.admin, query)
        events_statement = next(s for s in statements if "events" in s.lower()).lower()
        assert ("sessions" in events_statement.split("from", 2)[-1]) == joined, selection


# -- generated selections -------------------------------------------------------------------

# Every declared field of the node types and of the detail types (models/fields.py): a field
# added there is generated here without a change. A field of a declared type is an object
# (DETAILS), selected with fields of its own; the others are leaves.
_graphql_name = NameConverter().apply_naming_config


def _declared(type_name: str, objects: bool) -> list:
    return [
        (_graphql_name(f.name), f.annotation.name) if objects else _graphql_name(f.name)
        for f in declared.exposed(type_name)
        if isinstance(f.annotation, declared.Nested) == objects
    ]


LEAVES = {type_name: ["id", *_declared(type_name, False), "__typename"] for type_name in declared.FIELDS}
LEAVES.update({type_name: [*_declared(type_name, False), "__typename"] for type_name in declared.NESTED})
LEAVES["Event"] += ["content", "cb: content(encoding: BASE64)", "cu: content(encoding: UTF8)"]
LEAVES["Viewer"] = ["userId", "orgId", "role", "identityType", "__typename"]
LEAVES["Chat"] = ["endpoint", "__typename"]
RELATIONS = {"Turn": [("session", "Session")], "Event": [("turn", "Turn"), ("session", "Session")]}
# Objects read from their parent (a session's terminal details, a turn's settings, a red-teaming
# session's chats): finitely nested, so they take no depth.
DETAILS = {type_name: _declared(type_name, True) for type_name in (*declared.FIELDS, *declared.NESTED)}
DETAILS["RedTeamDetails"].append(("chats", "Chat"))
CONNECTIONS = {"Session": [("turns", "Turn"), ("events", "Event")], "Turn": [("events", "Event")], "Chat": [("turns", "Turn")]}

names = st.sampled_from(["a", "b", "c", "x1"])


def rarely(common, rare, one_in: int):
    """`common`, or `rare` once in `one_in` draws: errors stay rare enough that most
    documents are answered by the planner, not handed back to graphql-core."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else common)


def page_arguments(cursors):
    size = rarely(st.one_of(st.none(), st.integers(0, 4)), st.sampled_from([100, 101, -1]), 25)
    cursor = rarely(st.none(), st.sampled_from(cursors), 8)

    @st.composite
    def build(draw):
        parts = []
        if draw(st.integers(0, 3)) == 0:
            parts.append("first: $n")  # from the variables, which change between runs
        elif (first := draw(size)) is not None:
            parts.append(f"first: {first}")
        if draw(st.integers(0, 30)) == 0 and (last := draw(size)) is not None:
            parts.append(f"last: {last}")
        if (after := draw(cursor)) is not None:
            parts.append(f'after: "{after}"')
        if draw(st.integers(0, 4)) == 0 and (before := draw(cursor)) is not None:
            parts.append(f'before: "{before}"')
        return parts

    return build()


@st.composite
def selection(draw, type_name: str, depth: int, cursors):
    fields = []
    for leaf in draw(st.lists(st.sampled_from(LEAVES[type_name]), min_size=1, max_size=5)):
        alias = f"{draw(names)}{len(fields)}: " if ":" not in leaf and draw(st.integers(0, 3)) == 0 else ""
        directive = " @include(if: $flag)" if draw(st.integers(0, 6)) == 0 else (" @skip(if: $flag)" if draw(st.integers(0, 6)) == 0 else "")
        fields.append(f"{alias}{leaf}{directive}")
    for name, child in DETAILS.get(type_name, []):
        if draw(st.integers(0, 2)) == 0:
            fields.append(f"{name} {{ {draw(selection(child, depth, cursors))} }}")
    if depth > 0:
        for name, child in RELATIONS.get(type_name, []):
            if draw(st.integers(0, 2)) == 0:
                fields.append(f"{name} {{ {draw(selection(child, depth - 1, cursors))} }}")
        for name, child in CONNECTIONS.get(type_name, []):
            if draw(st.booleans()):
                arguments = draw(page_arguments(cursors))
                if child == "Event":
                    if draw(st.integers(0, 2)) == 0:
                        arguments.append(draw(st.sampled_from(['types: ["LLM_OUTPUT"]', 'types: ["LLM_PARTIAL", "OUTPUT"]', "types: []", "includePartial: true"])))
                alias = f"{draw(names)}{len(fields)}: " if draw(st.integers(0, 3)) == 0 else ""
                fields.append(f"{alias}{name}{'(' + ', '.join(arguments) + ')' if arguments else ''} {{ {draw(connection(child, depth - 1, cursors))} }}")
    if draw(st.integers(0, 5)) == 0:
        fields.append(f"... on {type_name} {{ {draw(st.sampled_from(LEAVES[type_name]))} }}")
    return " ".join(fields)


@st.composite
def connection(draw, type_name: str, depth: int, cursors):
    parts = []
    if draw(st.booleans()):
        parts.append("totalCount")
    if draw(st.booleans()):
        parts.append("pageInfo { hasNextPage hasPreviousPage startCursor endCursor }")
    if draw(st.booleans()):
        parts.append(f"nodes {{ {draw(selection(type_name, depth, cursors))} }}")
    if not parts or draw(st.booleans()):
        parts.append(f"edges {{ cursor node {{ {draw(selection(type_name, depth, cursors))} }} }}")
    return " ".join(parts)


@st.composite
def document(draw, ids, cursors):
    roots = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["sessions", "session", "node", "nodes", "viewer"]))
        if kind == "viewer":
            roots.append(f"r{i}: viewer {{ {draw(selection('Viewer', 0, cursors))} }}")
        elif kind == "sessions":
            arguments = draw(page_arguments(cursors))
            arguments.append(draw(st.sampled_from(["", "orderBy: {field: TOKENS_USED, direction: ASC}", 'filter: {search: "SESSION 1"}', "orderBy: {field: LAST_ACTIVITY_AT}"])))
            arguments = [a for a in arguments if a]
            roots.append(f"r{i}: sessions{'(' + ', '.join(arguments) + ')' if arguments else ''} {{ {draw(connection('Session', 2, cursors))} }}")
        elif kind == "session":
            roots.append(f'r{i}: session(id: "{draw(st.sampled_from(ids))}") {{ {draw(selection("Session", 2, cursors))} }}')
        else:
            inner = " ".join(f"... on {t} {{ {draw(selection(t, 1, cursors))} }}" for t in draw(st.lists(st.sampled_from(["Session", "Turn", "Event"]), min_size=1, max_size=3, unique=True)))
            inner = "id __typename " + inner
            global_ids = [i for i in ids if from_global_id(i) is not None]
            node_ids = rarely(st.sampled_from(global_ids), st.sampled_from(ids), 10)  # the rest: no node id
            if kind == "node":
                roots.append(f'r{i}: node(id: "{draw(node_ids)}") {{ {inner} }}')
            else:
                chosen = draw(st.lists(node_ids, max_size=4))
                roots.append(f"r{i}: nodes(ids: {orjson.dumps(chosen).decode()}) {{ {inner} }}")
    body = " ".join(roots)
    # Declared only where used: an unused variable would make the document invalid.
    declared = [d for name, d in (("$flag", "$flag: Boolean = true"), ("$n", "$n: Int")) if name in body]
    variables = {"flag": draw(st.booleans()), "n": draw(st.sampled_from([0, 1, 3, 3, 3, 3, 3, 3, 3, 101]))}
    return f"query Generated{'(' + ', '.join(declared) + ')' if declared else ''} {{ {body} }}", variables


async def test_generated_selections_answer_the_same(engine, org, world):
    sessions = [world[k] for k in ("alice0", "alice1", "bob0", "bob2", "stranger0", "alice_terminal", "alice_red_team", "bob_red_team")]
    # Global ids first, then what only `session(id:)` takes.
    async with engine.connect() as connection:
        red_team_turn = (await connection.execute(select(func.max(Turn.id)).where(Turn.session_id == world["alice_red_team"]))).scalar()
    ids = [to_global_id("Session", s) for s in sessions] + [to_global_id("Turn", 1), to_global_id("Turn", 4), to_global_id("Turn", red_team_turn), to_global_id("Event", 2), to_global_id("Event", 9999)]
    ids += [str(sessions[0]), "alice-1", "bob-0", "nonsense", str(uuid.uuid4())]
    cursors = ["garbage", encode_cursor("turns", str(sessions[0]), 1), encode_cursor("events", f"session:{sessions[0]}", 2), encode_cursor("events", "turn:1", 1),
               encode_cursor("turns", f"chat:{world['alice_red_team']}:gpt", 1)]
    cases = []

    # Hypothesis draws the cases (a fixed, derandomized set); they run afterwards, in this
    # test's event loop, since Hypothesis cannot drive an async function inside another.
    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(case=document(ids, cursors), viewer=st.sampled_from([org.alice, org.admin, org.bob]))
    def draw(case, viewer):
        cases.append((*case, viewer))

    draw()
    planned_itself = 0
    compiled_before = compiled.COUNTS["completions"]
    previous = None
    for query, variables, viewer in cases:
        try:
            expected, planned, answered = await both_ways(engine, viewer, query, variables)
        except BaseException:
            # A failure can be the previous case's doing (a connection it left broken).
            print("previous case:", previous, "\nthis case:", query, variables)
            raise
        previous = (query, variables)
        assert_same_answer(expected, planned, answered, (query, variables))
        planned_itself += answered
    # The comparison means something only if the planner answered most cases itself, and
    # compiled selections completed many of them.
    assert planned_itself > len(cases) // 3, (planned_itself, len(cases))
    assert compiled.COUNTS["completions"] - compiled_before > len(cases) // 3


async def test_the_planner_answers_the_terminal_and_red_teaming_screens_itself(engine, org, world):
    """The documents of a gateway's and a red-teaming UI's screens, on TERMINAL and RED_TEAM
    sessions: answered by the planner (no fallback), byte for byte as graphql-core, never
    with more statements."""
    from tests.test_graphql_queries import document

    cases = [
        ("TerminalSessions.graphql", {"first": 5}, lambda d: [e["node"]["terminal"] for e in d["sessions"]["edges"] if e["node"]["kind"] == "TERMINAL"]),
        ("TerminalSession.graphql", {"id": str(world["alice_terminal"]), "first": 2}, lambda d: [d["session"]["terminal"], d["session"]["events"]["nodes"]]),
        ("RedTeamSession.graphql", {"id": str(world["alice_red_team"]), "n": 3}, lambda d: d["session"]["redTeam"]["chats"]),
    ]
    for name, variables, shown in cases:
        expected, planned, answered = await both_ways(engine, org.alice, document(name), variables)
        assert answered and planned == expected, name
        data = orjson.loads(planned)["data"]
        assert all(shown(data)), name
    chats = orjson.loads(planned)["data"]["session"]["redTeam"]["chats"]
    assert [c["endpoint"] for c in chats] == ["gpt", "claude", "llama"]
    assert [[t["turn"] for t in c["turns"]["nodes"]] for c in chats] == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
    assert {c["turns"]["totalCount"] for c in chats} == {4} and all(c["turns"]["pageInfo"]["hasNextPage"] for c in chats)
