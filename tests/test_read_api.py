"""The rules under `Query`: who sees which session, lookups by id, the session list's order,
filters and totals, the fields of Session, Turn and Event, node/nodes and DateTime."""

import base64
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from sessiongraph.models import Session, Turn
from sessiongraph.models.recording import NewEvent, append_events
from sessiongraph.resolvers.ids import to_global_id
from tests.conftest import T0, error_codes, event_, execute, ok, store, turn_

pytestmark = pytest.mark.usefixtures("both_executions")


async def delete_directly(engine, session_id: uuid.UUID) -> None:
    """Soft-deletes as the delete mutation will: the row stays, `deleted_at` is set."""
    async with engine.begin() as connection:
        await connection.execute(
            update(Session).where(Session.id == session_id).values(deleted_at=T0 + timedelta(days=1))
        )


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


LIST = """query($filter: SessionFilter, $order: SessionOrder) {
  sessions(first: 100, filter: $filter, orderBy: $order) {
    totalCount
    nodes { sessionId createdAt updatedAt lastActivityAt tokensUsed }
  }
}"""


async def listed(engine, viewer, filter=None, order=None) -> list[str]:
    data = await ok(engine, viewer, LIST, {"filter": filter, "order": order})
    ids = [n["sessionId"] for n in data["sessions"]["nodes"]]
    assert data["sessions"]["totalCount"] == len(ids)
    return ids


# --- who sees what ---------------------------------------------------------------------


# What a MACHINE key may read follows its role.
IDENTITIES = ["USER", "MACHINE"]


@pytest.mark.parametrize("identity", IDENTITIES)
async def test_user_sees_only_its_own_sessions(engine, org, other_org, identity):
    mine = [await store(engine, org.alice, 1), await store(engine, org.alice, 2)]
    await store(engine, org.bob, 3)
    await store(engine, org.admin, 4)
    await store(engine, other_org.alice, 5)
    caller = replace(org.alice, identity_type=identity)
    assert await listed(engine, caller) == [str(i) for i in reversed(mine)]


@pytest.mark.parametrize("identity", IDENTITIES)
async def test_admin_sees_its_whole_organisation_and_no_other(engine, org, other_org, identity):
    ours = [await store(engine, v, m) for m, v in enumerate([org.alice, org.bob, org.admin])]
    theirs = await store(engine, other_org.admin, 10)
    assert await listed(engine, replace(org.admin, identity_type=identity)) == [str(i) for i in reversed(ours)]
    assert await listed(engine, replace(other_org.admin, identity_type=identity)) == [str(theirs)]


async def test_deleted_sessions_are_left_out_of_the_list_and_its_total(engine, org):
    kept = await store(engine, org.alice, 1)
    gone = await store(engine, org.alice, 2)
    await delete_directly(engine, gone)
    for viewer in (org.alice, org.admin):
        assert await listed(engine, viewer) == [str(kept)]


async def test_user_filtering_on_another_users_id_gets_nothing(engine, org):
    await store(engine, org.bob, 1)
    assert await listed(engine, org.alice, {"userId": str(org.bob.user_id)}) == []


async def test_viewer_says_who_is_calling(engine, org):
    data = await ok(engine, org.admin, "{ viewer { userId orgId role identityType } }")
    assert data["viewer"] == {
        "userId": str(org.admin.user_id),
        "orgId": str(org.id),
        "role": "ADMIN",
        "identityType": "USER",
    }


# --- session(id) -----------------------------------------------------------------------

SESSION = "query($id: ID!) { session(id: $id) { sessionId externalId } }"


def lookup(kind: str, session_id: uuid.UUID, external_id: str) -> str:
    return {"global id": to_global_id("Session", session_id), "UUID": str(session_id), "external id": external_id}[kind]


@pytest.mark.parametrize("kind", ["global id", "UUID", "external id"])
async def test_session_is_found_by_each_kind_of_id(engine, org, kind):
    session_id = await store(engine, org.alice, external_id="user-123-chat")
    data = await ok(engine, org.alice, SESSION, {"id": lookup(kind, session_id, "user-123-chat")})
    assert data["session"] == {"sessionId": str(session_id), "externalId": "user-123-chat"}


@pytest.mark.parametrize("kind", ["global id", "UUID", "external id"])
@pytest.mark.parametrize("case", ["another user", "another organisation's admin", "deleted", "deleted, as admin"])
async def test_session_the_caller_may_not_see_answers_like_a_missing_one(engine, org, other_org, kind, case):
    session_id = await store(engine, org.alice, external_id="shared-name")
    key = lookup(kind, session_id, "shared-name")
    assert (await ok(engine, org.alice, SESSION, {"id": key}))["session"] is not None
    caller = {
        "another user": org.bob,
        "another organisation's admin": other_org.admin,
        "deleted": org.alice,
        "deleted, as admin": org.admin,
    }[case]
    if case.startswith("deleted"):
        await delete_directly(engine, session_id)
    missing = lookup(kind, uuid.uuid4(), "no-such-name")
    seen = await execute(engine, caller, SESSION, {"id": key})
    unseen = await execute(engine, caller, SESSION, {"id": missing})
    assert (seen.data, seen.errors) == (unseen.data, unseen.errors) == ({"session": None}, None)


async def test_admin_finds_members_sessions_by_id_but_not_by_their_external_id(engine, org):
    session_id = await store(engine, org.alice, external_id="alice-chat")
    for key in (to_global_id("Session", session_id), str(session_id)):
        assert (await ok(engine, org.admin, SESSION, {"id": key}))["session"]["sessionId"] == str(session_id)
    assert (await ok(engine, org.admin, SESSION, {"id": "alice-chat"}))["session"] is None


async def test_session_lookup_prefers_own_external_id_over_another_users(engine, org):
    await store(engine, org.bob, external_id="same-name")
    mine = await store(engine, org.alice, external_id="same-name")
    for viewer in (org.alice, org.bob):
        found = (await ok(engine, viewer, SESSION, {"id": "same-name"}))["session"]["sessionId"]
        assert (found == str(mine)) == (viewer is org.alice)


@pytest.mark.parametrize("kind", ["global id", "UUID"])
async def test_session_lookup_tries_global_id_then_uuid_then_external_id(engine, org, kind):
    target = await store(engine, org.alice, 1)
    key = lookup(kind, target, "")
    namesake = await store(engine, org.alice, 2, external_id=key)
    assert (await ok(engine, org.alice, SESSION, {"id": key}))["session"]["sessionId"] == str(target)
    # Once the id names nothing visible, the next way of reading it is tried.
    await delete_directly(engine, target)
    assert (await ok(engine, org.alice, SESSION, {"id": key}))["session"]["sessionId"] == str(namesake)


async def test_session_id_no_session_can_hold_is_like_a_missing_one(engine, org):
    await store(engine, org.alice, external_id="chat")
    assert await ok(engine, org.alice, SESSION, {"id": "chat\x00"}) == {"session": None}


async def test_global_id_of_another_type_is_not_read_as_a_session(engine, org):
    session_id = await store(engine, org.alice, turns=[turn_("t1", 1)])
    data = await ok(engine, org.alice, "query($id: ID!) { session(id: $id) { turns { nodes { id } } } }",
                    {"id": str(session_id)})
    turn_id = data["session"]["turns"]["nodes"][0]["id"]
    assert (await ok(engine, org.alice, SESSION, {"id": turn_id}))["session"] is None


# --- the session list: order, filters, totals ------------------------------------------


async def test_sessions_default_to_newest_created_first(engine, org):
    ids = {m: await store(engine, org.alice, m) for m in (2, 5, 1, 4, 3)}
    assert await listed(engine, org.alice) == [str(ids[m]) for m in (5, 4, 3, 2, 1)]


ORDER_KEYS = {
    "CREATED_AT": "createdAt",
    "UPDATED_AT": "updatedAt",
    "LAST_ACTIVITY_AT": "lastActivityAt",
    "TOKENS_USED": "tokensUsed",
}


async def store_sessions_with_ties(engine, owner) -> None:
    """Sessions where every order key is shared by two of them, and the orders differ."""
    await store(engine, owner, 0, turns=[turn_("a", 10, tokens_used=5)], events=[event_("OUTPUT", 30)])
    await store(engine, owner, 1, turns=[turn_("a", 10, tokens_used=7)])
    await store(engine, owner, 1, events=[event_("OUTPUT", 30)])
    await store(engine, owner, 2, turns=[turn_("a", 5, tokens_used=5)])
    await store(engine, owner, 3, turns=[turn_("a", 4, tokens_used=1, completed_at=T0 + timedelta(minutes=20))])


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
@pytest.mark.parametrize("field", list(ORDER_KEYS))
async def test_sessions_sort_by_each_order_with_ties_broken_by_session_id(engine, org, field, direction):
    await store_sessions_with_ties(engine, org.alice)
    data = await ok(engine, org.alice, LIST, {"order": {"field": field, "direction": direction}})
    nodes = data["sessions"]["nodes"]
    values = [n[ORDER_KEYS[field]] for n in nodes]
    assert len(set(values)) < len(values), "the data must have ties"

    def key(node):
        value = node[ORDER_KEYS[field]]
        return (value if field == "TOKENS_USED" else datetime.fromisoformat(value)), uuid.UUID(node["sessionId"])

    assert nodes == sorted(nodes, key=key, reverse=direction == "DESC")


async def test_order_direction_alone_keeps_created_at(engine, org):
    ids = [await store(engine, org.alice, m) for m in (1, 2, 3)]
    assert await listed(engine, org.alice, order={"direction": "ASC"}) == [str(i) for i in ids]


SEARCHABLE = {
    "trip": {"title": "Trip Planning"},
    "user": {"title": "x", "external_id": "USER-123-Chat"},
    "percent sign": {"title": "50% off"},
    "percent word": {"title": "50 percent off"},
    "underscore": {"external_id": "a_b"},
    "no underscore": {"external_id": "axb"},
    "backslash": {"title": r"C:\temp"},
    "untitled": {},
}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("trip", {"trip"}),
        ("PLANNING", {"trip"}),
        ("user-123-chat", {"user"}),
        ("0% o", {"percent sign"}),
        ("%", {"percent sign"}),
        ("a_b", {"underscore"}),
        ("_", {"underscore"}),
        ("\\t", {"backslash"}),
        ("off", {"percent sign", "percent word"}),
        ("nothing like it", set()),
    ],
)
async def test_search_is_a_case_insensitive_literal_substring_of_title_or_external_id(engine, org, search, expected):
    ids = {name: str(await store(engine, org.alice, i, **kw)) for i, (name, kw) in enumerate(SEARCHABLE.items())}
    found = await listed(engine, org.alice, {"search": search})
    assert set(found) == {ids[name] for name in expected}


async def test_search_ignores_case_beyond_ascii(engine, org):
    wanted = await store(engine, org.alice, 1, title="Ärger im Büro")
    await store(engine, org.alice, 2, title="Anderes")
    assert await listed(engine, org.alice, {"search": "äRGER"}) == [str(wanted)]


async def test_created_after_and_before_bound_the_creation_time(engine, org):
    ids = {m: str(await store(engine, org.alice, m)) for m in (1, 2, 3)}
    # 07:01:30+01:00 is 06:01:30Z, between the first two sessions.
    assert await listed(engine, org.alice, {"createdAfter": "2025-10-28T07:01:30+01:00"}) == [ids[3], ids[2]]
    assert await listed(engine, org.alice, {"createdBefore": at(2.5)}) == [ids[2], ids[1]]
    assert await listed(engine, org.alice, {"createdAfter": at(1.5), "createdBefore": at(2.5)}) == [ids[2]]
    # Both bounds are exclusive.
    assert await listed(engine, org.alice, {"createdAfter": at(1), "createdBefore": at(3)}) == [ids[2]]


async def test_external_ids_filter_keeps_only_those(engine, org):
    ids = {e: str(await store(engine, org.alice, i, external_id=e)) for i, e in enumerate(["a", "b", "c"])}
    await store(engine, org.alice, 9)
    assert await listed(engine, org.alice, {"externalIds": ["c", "a", "missing"]}) == [ids["c"], ids["a"]]
    assert await listed(engine, org.alice, {"externalIds": []}) == []


@pytest.mark.parametrize(
    "filter",
    [{"createdAfter": "yesterday"}, {"createdBefore": 5}, {"createdAfter": "2025-13-01T00:00:00Z"}, {"userId": "nope"},
     {"search": 5}],
    ids=["words for a time", "number for a time", "month 13", "malformed UUID", "number for a string"],
)
async def test_malformed_filter_is_bad_user_input(engine, org, filter):
    await store(engine, org.alice, 1)
    assert await error_codes(engine, org.alice, LIST, {"filter": filter}) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("literal", ['{createdAfter: "yesterday"}', '{userId: "nope"}'])
async def test_malformed_filter_literal_fails_validation(engine, org, literal):
    query = "{ sessions(filter: %s) { totalCount } }" % literal
    assert await error_codes(engine, org.alice, query) == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.mark.parametrize(
    "filter", [{"search": "a\x00"}, {"externalIds": ["a\x00"]}, {"search": "\x00", "externalIds": ["\x00b"]}]
)
async def test_filter_values_no_session_can_hold_match_nothing(engine, org, filter):
    # No stored text holds U+0000 (PostgreSQL cannot store it): such a value matches nothing.
    await store(engine, org.alice, 1, title="a", external_id="a")
    assert await listed(engine, org.alice, filter) == []


async def test_admin_filters_by_owner(engine, org):
    alices = str(await store(engine, org.alice, 1))
    await store(engine, org.bob, 2)
    assert await listed(engine, org.admin, {"userId": str(org.alice.user_id)}) == [alices]


async def test_total_count_counts_every_match_across_pages(engine, org):
    for m in range(7):
        await store(engine, org.alice, m, title="even" if m % 2 == 0 else "odd")
    await store(engine, org.bob, 9, title="even")
    query = "query($filter: SessionFilter) { sessions(first: 2, filter: $filter) { totalCount nodes { id } } }"
    assert (await ok(engine, org.alice, query))["sessions"]["totalCount"] == 7
    data = (await ok(engine, org.alice, query, {"filter": {"search": "even"}}))["sessions"]
    assert (data["totalCount"], len(data["nodes"])) == (4, 2)


# --- Session fields --------------------------------------------------------------------


async def test_session_fields_carry_the_stored_figures(engine, org):
    session_id = await store(
        engine,
        org.alice,
        0,
        title="Trip planning",
        external_id="user-123-chat",
        token_budget=10_000,
        metadata={"team": "banking", "tags": ["a", 1]},
        turns=[
            turn_("t1", 1, tokens_used=150, completed_at=T0 + timedelta(minutes=2)),
            turn_("t2", 3, tokens_used=50, events=[event_("LLM_OUTPUT", 7, "hi")]),
        ],
    )
    query = """query($id: ID!) { session(id: $id) {
      id sessionId externalId title userId createdAt updatedAt lastActivityAt
      turnCount tokensUsed tokenBudget metadata } }"""
    data = await ok(engine, org.alice, query, {"id": str(session_id)})
    assert data["session"] == {
        "id": to_global_id("Session", session_id),
        "sessionId": str(session_id),
        "externalId": "user-123-chat",
        "title": "Trip planning",
        "userId": str(org.alice.user_id),
        "createdAt": at(0),
        "updatedAt": at(3),
        "lastActivityAt": at(7),
        "turnCount": 2,
        "tokensUsed": 200,
        "tokenBudget": 10_000,
        "metadata": {"team": "banking", "tags": ["a", 1]},
    }


# --- Turn fields -----------------------------------------------------------------------

TURNS = """query($id: ID!) { session(id: $id) { turns(first: 100) { nodes {
  id turn taskId workflowId userQuery finalOutput status createdAt completedAt tokensUsed
  executionTimeMs agentsInvolved session { sessionId } } } } }"""


async def one_turn(engine, viewer, turn) -> dict:
    session_id = await store(engine, viewer, turns=[turn])
    return (await ok(engine, viewer, TURNS, {"id": str(session_id)}))["session"]["turns"]["nodes"][0]


async def test_turn_fields(engine, org):
    turn = await one_turn(engine, org.alice, turn_(
        "task-001", 1, workflow_id="wf-1", user_query="What is 2+2?", result="4", tokens_used=150,
        completed_at=T0 + timedelta(minutes=1, seconds=8), status="COMPLETED",
    ))
    del turn["session"]  # test_turn_session_is_its_parent
    assert turn == {
        "id": turn["id"],
        "turn": 1,
        "taskId": "task-001",
        "workflowId": "wf-1",
        "userQuery": "What is 2+2?",
        "finalOutput": "4",
        "status": "COMPLETED",
        "createdAt": at(1),
        "completedAt": "2025-10-28T06:01:08Z",
        "tokensUsed": 150,
        "executionTimeMs": 8000,
        "agentsInvolved": [],
    }


@pytest.mark.parametrize("status", ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"])
async def test_turn_status_is_the_stored_one(engine, org, status):
    assert (await one_turn(engine, org.alice, turn_("t", 1, status=status)))["status"] == status


@pytest.mark.parametrize(
    ("result", "events", "expected"),
    [
        ("  2 + 2 equals 4.\n", [event_("LLM_OUTPUT", 2, "other")], "2 + 2 equals 4."),
        (" \n\t", [event_("LLM_OUTPUT", 2, "from the event")], "from the event"),
        (None, [event_("LLM_PARTIAL", 2, "partial"), event_("LLM_OUTPUT", 3, "first"),
                event_("LLM_OUTPUT", 4, "second")], "first"),
        (None, [event_("LLM_OUTPUT", 2, "  "), event_("LLM_OUTPUT", 3), event_("LLM_OUTPUT", 4, "kept")], "kept"),
        (None, [event_("LLM_PROMPT", 2, "a prompt"), event_("LLM_PARTIAL", 3, "partial")], None),
        ("", [], None),
    ],
    ids=["result trimmed", "blank result falls back", "first output", "blank outputs skipped", "no output", "nothing"],
)
async def test_final_output_is_the_trimmed_result_else_the_first_non_blank_output(engine, org, result, events, expected):
    turn = await one_turn(engine, org.alice, turn_("t", 1, result=result, events=events))
    assert turn["finalOutput"] == expected


async def test_final_output_falls_back_to_an_output_appended_later(engine, org):
    session_id = await store(engine, org.alice, turns=[turn_("t", 1, events=[event_("LLM_OUTPUT", 2, " ")])])
    async with engine.begin() as connection:
        turn_id = await connection.scalar(select(Turn.id).where(Turn.session_id == session_id))
        await append_events(connection, session_id, turn_id, [
            NewEvent("LLM_OUTPUT", T0 + timedelta(minutes=3), content=b"later"),
            NewEvent("LLM_OUTPUT", T0 + timedelta(minutes=4), content=b"latest"),
        ])
    turns = (await ok(engine, org.alice, TURNS, {"id": str(session_id)}))["session"]["turns"]["nodes"]
    assert turns[0]["finalOutput"] == "later"


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"duration_ms": 8000, "completed_at": T0 + timedelta(minutes=1, seconds=5)}, 8000),
        ({"completed_at": T0 + timedelta(minutes=1, seconds=5, milliseconds=250)}, 5250),
        ({"status": "RUNNING"}, None),
        ({"completed_at": T0 + timedelta(minutes=1, days=25)}, None),
    ],
    ids=["stored duration", "completed minus created", "neither", "beyond Int"],
)
async def test_execution_time_is_the_stored_duration_else_the_elapsed_time(engine, org, kw, expected):
    assert (await one_turn(engine, org.alice, turn_("t", 1, **kw)))["executionTimeMs"] == expected


async def test_agents_involved_are_distinct_and_sorted(engine, org):
    events = [event_("LLM_PROMPT", 2, agent="planner"), event_("TOOL_INVOKED", 3, agent="browser"),
              event_("LLM_OUTPUT", 4), event_("LLM_PARTIAL", 5, agent="planner"), event_("X", 6, agent="Zeta")]
    turn = await one_turn(engine, org.alice, turn_("t", 1, events=events))
    assert turn["agentsInvolved"] == ["Zeta", "browser", "planner"]


async def test_turn_session_is_its_parent(engine, org):
    session_id = await store(engine, org.alice, turns=[turn_("t", 1)])
    turn = (await ok(engine, org.alice, TURNS, {"id": str(session_id)}))["session"]["turns"]["nodes"][0]
    assert turn["session"] == {"sessionId": str(session_id)}


# --- Events ----------------------------------------------------------------------------

FILTERED = "events(first: 100, types: $types, includePartial: $partial) { totalCount nodes { type message } }"
EVENTS = "query($id: ID!, $types: [String!], $partial: Boolean) { session(id: $id) { %s } }" % FILTERED
TURN_EVENTS = "query($id: ID!, $types: [String!], $partial: Boolean) { session(id: $id) { turns { nodes { %s } } } }" % FILTERED

MIXED = [
    event_("LLM_PROMPT", 1, "p"),
    event_("LLM_PARTIAL", 2, "pa"),
    event_("LLM_PARTIAL", 3, "pb"),
    event_("LLM_OUTPUT", 4, "o"),
    event_("TOOL_INVOKED", 5, "t"),
]


@pytest.mark.parametrize(
    ("types", "partial", "expected"),
    [
        (None, None, ["p", "o", "t"]),
        (None, False, ["p", "o", "t"]),
        (None, True, ["p", "pa", "pb", "o", "t"]),
        (["LLM_OUTPUT", "TOOL_INVOKED"], None, ["o", "t"]),
        (["LLM_PARTIAL"], False, ["pa", "pb"]),
        (["LLM_PARTIAL", "LLM_PROMPT"], None, ["p", "pa", "pb"]),
        (["LLM_OUTPUT"], True, ["o"]),
        (["NO_SUCH_TYPE"], None, []),
        ([], None, []),
        (["LLM_OUTPUT\x00"], None, []),
    ],
)
async def test_events_leave_out_partials_unless_asked_and_keep_only_the_given_types(engine, org, types, partial, expected):
    session_id = await store(engine, org.alice, turns=[turn_("t", 0, events=MIXED)])
    variables = {"id": str(session_id), "types": types, "partial": partial}
    if partial is None:
        del variables["partial"]
    data = await ok(engine, org.alice, EVENTS, variables)
    assert [e["message"] for e in data["session"]["events"]["nodes"]] == expected
    assert data["session"]["events"]["totalCount"] == len(expected)
    turn_data = await ok(engine, org.alice, TURN_EVENTS, variables)
    assert turn_data["session"]["turns"]["nodes"][0]["events"] == data["session"]["events"]


EVENT_FIELDS = "id seq type workflowId agentId message timestamp elapsedMs payload turn { taskId } session { sessionId }"


async def test_session_events_include_turn_events_and_turn_events_only_their_own(engine, org):
    session_id = await store(
        engine,
        org.alice,
        events=[event_("OUTPUT", 0.5, "boot"), event_("INPUT", 0.75, "ls")],
        turns=[turn_("t1", 1, workflow_id="wf-1", events=[event_("LLM_PROMPT", 1.5, "q1", agent="a")]),
               turn_("t2", 2, events=[event_("LLM_OUTPUT", 2.5, "r2", agent="b")])],
    )
    query = f"""query($id: ID!) {{ session(id: $id) {{
      events {{ nodes {{ {EVENT_FIELDS} }} }}
      turns {{ nodes {{ taskId events {{ nodes {{ seq }} }} }} }} }} }}"""
    data = (await ok(engine, org.alice, query, {"id": str(session_id)}))["session"]
    events = data["events"]["nodes"]
    assert [(e["seq"], e["type"], e["message"], e["turn"]) for e in events] == [
        (1, "OUTPUT", "boot", None),
        (2, "INPUT", "ls", None),
        (3, "LLM_PROMPT", "q1", {"taskId": "t1"}),
        (4, "LLM_OUTPUT", "r2", {"taskId": "t2"}),
    ]
    assert [e["workflowId"] for e in events] == [None, None, "wf-1", None]
    assert [e["agentId"] for e in events] == [None, None, "a", "b"]
    assert all(e["session"] == {"sessionId": str(session_id)} for e in events)
    assert [(t["taskId"], [e["seq"] for e in t["events"]["nodes"]]) for t in data["turns"]["nodes"]] == [
        ("t1", [3]), ("t2", [4])
    ]


async def test_event_elapsed_ms_is_measured_from_session_creation(engine, org):
    session_id = await store(
        engine, org.alice, 10,
        events=[event_("OUTPUT", 10 + 0.004 / 60)],
        turns=[turn_("t", 11, events=[event_("LLM_OUTPUT", 12.5)])],
    )
    query = "query($id: ID!) { session(id: $id) { events { nodes { elapsedMs timestamp } } } }"
    events = (await ok(engine, org.alice, query, {"id": str(session_id)}))["session"]["events"]["nodes"]
    assert [e["elapsedMs"] for e in events] == [pytest.approx(4.0), 150_000.0]


@pytest.mark.parametrize(
    ("stored", "message", "encoded"),
    [
        (b"\xff\xfeok\x00\x1b[0m", "\ufffd\ufffdok\x00\x1b[0m", "//5vawAbWzBt"),
        ("héllo ✓".encode(), "héllo ✓", "aMOpbGxvIOKckw=="),
        (b"", "", ""),
        (None, None, None),
    ],
    ids=["invalid UTF-8", "UTF-8", "empty", "none"],
)
async def test_event_content_renders_the_stored_bytes_in_either_encoding(engine, org, stored, message, encoded):
    session_id = await store(engine, org.alice, events=[event_("OUTPUT", 1, stored)])
    query = """query($id: ID!) { session(id: $id) { events { nodes {
      message content utf8: content(encoding: UTF8) b64: content(encoding: BASE64) } } } }"""
    event = (await ok(engine, org.alice, query, {"id": str(session_id)}))["session"]["events"]["nodes"][0]
    assert event == {"message": message, "content": message, "utf8": message, "b64": encoded}
    if stored is not None:
        assert base64.b64decode(event["b64"], validate=True) == stored


@pytest.mark.parametrize("payload", [{"model": "small", "usage": {"in": 3, "out": 4.5}}, [1, "two", None], "text", None])
async def test_event_payload_is_the_stored_json(engine, org, payload):
    session_id = await store(engine, org.alice, events=[event_("OUTPUT", 1, payload=payload)])
    query = "query($id: ID!) { session(id: $id) { events { nodes { payload } } } }"
    data = await ok(engine, org.alice, query, {"id": str(session_id)})
    assert data["session"]["events"]["nodes"] == [{"payload": payload}]


# --- node / nodes ----------------------------------------------------------------------

NODE = """query($id: ID!) { node(id: $id) { __typename id
  ... on Session { sessionId }
  ... on Turn { taskId session { sessionId } }
  ... on Event { seq turn { taskId } session { sessionId } } } }"""


async def store_with_everything(engine, owner) -> dict[str, str]:
    """A session with a turn and an event; the global ids of the three, read as `owner`."""
    session_id = await store(engine, owner, turns=[turn_("t1", 1, events=[event_("LLM_OUTPUT", 2, "x")])])
    query = "query($id: ID!) { session(id: $id) { id turns { nodes { id } } events { nodes { id } } } }"
    data = (await ok(engine, owner, query, {"id": str(session_id)}))["session"]
    return {
        "Session": data["id"],
        "Turn": data["turns"]["nodes"][0]["id"],
        "Event": data["events"]["nodes"][0]["id"],
        "session_id": str(session_id),
    }


async def test_node_resolves_sessions_turns_and_events(engine, org):
    ids = await store_with_everything(engine, org.alice)
    owner = {"sessionId": ids["session_id"]}
    expected = {
        "Session": {"sessionId": ids["session_id"]},
        "Turn": {"taskId": "t1", "session": owner},
        "Event": {"seq": 1, "turn": {"taskId": "t1"}, "session": owner},
    }
    for type_name, fields in expected.items():
        data = await ok(engine, org.alice, NODE, {"id": ids[type_name]})
        assert data["node"] == {"__typename": type_name, "id": ids[type_name], **fields}


@pytest.mark.parametrize("type_name", ["Session", "Turn", "Event"])
@pytest.mark.parametrize("case", ["another user", "another organisation's admin", "deleted"])
async def test_node_of_a_session_the_caller_may_not_see_is_null(engine, org, other_org, type_name, case):
    ids = await store_with_everything(engine, org.alice)
    caller = {"another user": org.bob, "another organisation's admin": other_org.admin, "deleted": org.admin}[case]
    if case == "deleted":
        assert (await ok(engine, caller, NODE, {"id": ids[type_name]}))["node"] is not None
        await delete_directly(engine, uuid.UUID(ids["session_id"]))
    assert await ok(engine, caller, NODE, {"id": ids[type_name]}) == {"node": None}


@pytest.mark.parametrize("missing", [to_global_id("Session", uuid.uuid4()), to_global_id("Turn", 10**9),
                                     to_global_id("Event", 10**9)])
async def test_node_of_a_missing_object_is_null(engine, org, missing):
    assert await ok(engine, org.admin, NODE, {"id": missing}) == {"node": None}


MALFORMED_IDS = [
    "not an id",
    "",
    str(uuid.UUID(int=7)),
    base64.b64encode(b"Planet:1").decode(),
    base64.b64encode(b"Turn:abc").decode(),
    base64.b64encode(b"Turn:0").decode(),
    base64.b64encode(b"Event:-3").decode(),
    base64.b64encode(b"Session:not-a-uuid").decode(),
    base64.b64encode(b"\xff\xfe").decode(),
    to_global_id("Turn", 2**63),
    to_global_id("Event", 2**70),
]


@pytest.mark.parametrize("malformed", MALFORMED_IDS)
async def test_node_of_a_malformed_id_is_bad_user_input(engine, org, malformed):
    assert await error_codes(engine, org.alice, NODE, {"id": malformed}) == ["BAD_USER_INPUT"]
    nodes = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    assert await error_codes(engine, org.alice, nodes, {"ids": [malformed]}) == ["BAD_USER_INPUT"]


async def test_nodes_keep_the_order_asked_and_null_for_what_is_not_visible(engine, org):
    mine = await store_with_everything(engine, org.alice)
    bobs = await store_with_everything(engine, org.bob)
    ids = [mine["Event"], bobs["Session"], mine["Session"], to_global_id("Turn", 10**9), mine["Turn"], bobs["Event"],
           mine["Event"]]
    data = await ok(engine, org.alice, "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }", {"ids": ids})
    assert data["nodes"] == [
        {"__typename": "Event", "id": mine["Event"]},
        None,
        {"__typename": "Session", "id": mine["Session"]},
        None,
        {"__typename": "Turn", "id": mine["Turn"]},
        None,
        {"__typename": "Event", "id": mine["Event"]},
    ]
    assert await ok(engine, org.alice, "{ nodes(ids: []) { id } }") == {"nodes": []}


# --- DateTime --------------------------------------------------------------------------


async def test_every_datetime_is_utc_with_z(engine, org):
    created = datetime(2025, 10, 29, 6, 0, 1, 513288, tzinfo=UTC)
    session_id = await store(
        engine, org.alice, (created - T0).total_seconds() / 60,
        turns=[turn_("t", (created - T0).total_seconds() / 60 + 1, completed_at=created + timedelta(minutes=2),
                     events=[event_("LLM_OUTPUT", 24 * 60 + 1.5)])],
    )
    query = """query($id: ID!) { session(id: $id) { createdAt updatedAt lastActivityAt
      turns { nodes { createdAt completedAt } } events { nodes { timestamp } } } }"""
    data = (await ok(engine, org.alice, query, {"id": str(session_id)}))["session"]
    assert data["createdAt"] == "2025-10-29T06:00:01.513288Z"
    assert data["updatedAt"] == "2025-10-29T06:02:01.513288Z"
    assert data["turns"]["nodes"] == [{"createdAt": "2025-10-29T06:01:01.513288Z", "completedAt": "2025-10-29T06:02:01.513288Z"}]
    assert data["events"]["nodes"] == [{"timestamp": "2025-10-29T06:01:30Z"}]
    assert data["lastActivityAt"] == "2025-10-29T06:02:01.513288Z"
