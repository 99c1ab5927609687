"""createSession, startTurn, appendEvents and completeTurn: who may write for whom, the
input rules, idempotency, and the figures a reader sees as data arrives; on SQLite and
PostgreSQL, concurrent appenders included."""

import asyncio
import base64
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from sessiongraph.models import Event, Session, Turn
from sessiongraph.resolvers.context import Viewer
from tests.conftest import error_codes, execute, ok

CREATE = """
mutation($input: CreateSessionInput!) {
  createSession(input: $input) {
    clientMutationId
    session { id sessionId externalId title userId turnCount tokensUsed tokenBudget metadata createdAt lastActivityAt }
  }
}"""
START = """
mutation($input: StartTurnInput!) {
  startTurn(input: $input) { clientMutationId turn { id turn taskId workflowId userQuery status createdAt } }
}"""
APPEND = """
mutation($input: AppendEventsInput!) {
  appendEvents(input: $input) {
    clientMutationId
    events { id seq type agentId workflowId message base64: content(encoding: BASE64) payload timestamp turn { turn } }
  }
}"""
COMPLETE = """
mutation($input: CompleteTurnInput!) {
  completeTurn(input: $input) {
    turn { id status tokensUsed finalOutput completedAt executionTimeMs agentsInvolved }
  }
}"""
SESSION = """
query($id: ID!) {
  session(id: $id) {
    turnCount tokensUsed lastActivityAt
    turns { nodes { turn taskId status tokensUsed finalOutput agentsInvolved workflowId } }
    events(first: 100, includePartial: true) { totalCount nodes { seq type workflowId } }
  }
}"""


def machine(org) -> Viewer:
    return Viewer(uuid.uuid4(), org.id, "USER", "MACHINE")


async def create(engine, viewer, **fields) -> dict:
    return (await ok(engine, viewer, CREATE, {"input": fields}))["createSession"]["session"]


async def start(engine, viewer, session_id, task_id="task-1", **fields) -> dict:
    data = await ok(engine, viewer, START, {"input": {"sessionId": session_id, "taskId": task_id, **fields}})
    return data["startTurn"]["turn"]


async def append(engine, viewer, session_id, events, turn_id=None) -> list[dict]:
    data = await ok(engine, viewer, APPEND, {"input": {"sessionId": session_id, "turnId": turn_id, "events": events}})
    return data["appendEvents"]["events"]


async def complete(engine, viewer, turn_id, **fields) -> dict:
    data = await ok(engine, viewer, COMPLETE, {"input": {"turnId": turn_id, **fields}})
    return data["completeTurn"]["turn"]


async def stored_count(engine, table) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(select(func.count()).select_from(table))


# -- createSession


async def test_a_user_creates_its_own_session_with_the_title_sanitized(engine, org):
    data = await ok(engine, org.alice, CREATE, {"input": {
        "title": "  Trip\u200b planning ", "externalId": "chat-1", "tokenBudget": 1000,
        "metadata": {"team": "x"}, "clientMutationId": "m1",
    }})
    payload = data["createSession"]
    session = payload["session"]
    assert payload["clientMutationId"] == "m1"
    assert session["title"] == "Trip planning"
    assert session["userId"] == str(org.alice.user_id)
    assert (session["externalId"], session["tokenBudget"], session["metadata"]) == ("chat-1", 1000, {"team": "x"})
    assert (session["turnCount"], session["tokensUsed"]) == (0, 0)
    assert session["lastActivityAt"] == session["createdAt"]
    found = await ok(engine, org.alice, "query($id: ID!) { session(id: $id) { id } }", {"id": "chat-1"})
    assert found["session"]["id"] == session["id"]


async def test_a_user_key_may_not_create_a_session_for_another_user(engine, org):
    codes = await error_codes(engine, org.alice, CREATE, {"input": {"userId": str(org.bob.user_id)}})
    assert codes == ["FORBIDDEN"]
    assert await stored_count(engine, Session) == 0


async def test_machine_and_admin_keys_create_sessions_for_users_of_their_organisation(engine, org):
    by_machine = await create(engine, machine(org), userId=str(org.bob.user_id))
    by_admin = await create(engine, org.admin, userId=str(org.alice.user_id))
    assert by_machine["userId"] == str(org.bob.user_id)
    assert by_admin["userId"] == str(org.alice.user_id)
    listed = await ok(engine, org.bob, "{ sessions { nodes { id } } }")
    assert listed["sessions"]["nodes"] == [{"id": by_machine["id"]}]


async def test_a_never_seen_user_joins_the_machines_organisation(engine, org, other_org):
    newcomer = uuid.uuid4()
    await create(engine, machine(org), userId=str(newcomer))
    # The newcomer is now org's: the other organisation cannot write for it.
    codes = await error_codes(engine, machine(other_org), CREATE, {"input": {"userId": str(newcomer)}})
    assert codes == ["NOT_FOUND"]


async def test_a_user_of_another_organisation_is_not_found(engine, org, other_org):
    for viewer in (machine(org), org.admin):
        codes = await error_codes(engine, viewer, CREATE, {"input": {"userId": str(other_org.alice.user_id)}})
        assert codes == ["NOT_FOUND"]
    assert await stored_count(engine, Session) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "   "},
        {"title": "x" * 61},
        {"externalId": "a\nb"},
        {"externalId": "x" * 256},
        {"tokenBudget": -1},
        {"metadata": [1, 2]},
        {"metadata": {"big": "x" * 70_000}},
    ],
    ids=["blank-title", "long-title", "control-in-external-id", "long-external-id", "negative-budget",
         "metadata-not-object", "metadata-over-64KB"],
)
async def test_create_session_rejects_bad_input_and_stores_nothing(engine, org, fields):
    assert await error_codes(engine, org.alice, CREATE, {"input": fields}) == ["BAD_USER_INPUT"]
    assert await stored_count(engine, Session) == 0


async def test_an_external_id_in_use_on_a_live_session_is_bad_input(engine, org):
    await create(engine, org.alice, externalId="chat-1")
    codes = await error_codes(engine, org.alice, CREATE, {"input": {"externalId": "chat-1"}})
    assert codes == ["BAD_USER_INPUT"]
    # Another owner may use it.
    await create(engine, org.bob, externalId="chat-1")
    assert await stored_count(engine, Session) == 2


async def test_concurrent_creates_with_one_external_id_store_one_session(engine, org):
    results = await asyncio.gather(*(
        execute(engine, org.alice, CREATE, {"input": {"externalId": "same"}}) for _ in range(5)
    ))
    assert sum(r.errors is None for r in results) == 1
    assert {r.errors[0].extensions["code"] for r in results if r.errors} == {"BAD_USER_INPUT"}
    assert await stored_count(engine, Session) == 1


# -- startTurn


async def test_start_turn_is_idempotent_by_task_id(engine, org):
    session = await create(engine, org.alice)
    first = await start(engine, org.alice, session["id"], "task-1", workflowId="wf-1", userQuery="2+2?")
    again = await start(engine, org.alice, session["id"], "task-1", workflowId="other", userQuery="changed")
    second = await start(engine, org.alice, session["id"], "task-2")
    assert first == again
    assert (first["turn"], first["status"], first["workflowId"], first["userQuery"]) == (1, "RUNNING", "wf-1", "2+2?")
    assert second["turn"] == 2
    figures = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert figures["turnCount"] == 2
    assert figures["lastActivityAt"] >= second["createdAt"]


async def test_concurrent_start_turns_with_one_task_id_make_one_turn(engine, org):
    session = await create(engine, org.alice)
    turns = await asyncio.gather(*(start(engine, org.alice, session["id"], "task-1") for _ in range(6)))
    assert len({t["id"] for t in turns}) == 1
    assert (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]["turnCount"] == 1


async def test_writing_to_someone_elses_or_a_missing_session_is_not_found(engine, org, other_org):
    bobs = await create(engine, org.bob)
    missing = base64.b64encode(f"Session:{uuid.uuid4()}".encode()).decode()
    for viewer, session_id in ((org.alice, bobs["id"]), (other_org.admin, bobs["id"]), (org.alice, missing)):
        codes = await error_codes(engine, viewer, START, {"input": {"sessionId": session_id, "taskId": "t"}})
        assert codes == ["NOT_FOUND"]
    # The admin and a machine of bob's organisation may write to it.
    await start(engine, org.admin, bobs["id"], "by-admin")
    await start(engine, machine(org), bobs["sessionId"], "by-machine")
    assert await stored_count(engine, Turn) == 2


async def test_writing_to_a_deleted_session_is_not_found(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    await ok(engine, org.alice, "mutation($id: ID!) { deleteSession(input: {id: $id}) { deletedSessionId } }",
             {"id": session["id"]})
    start_codes = await error_codes(engine, org.alice, START, {"input": {"sessionId": session["id"], "taskId": "t2"}})
    append_codes = await error_codes(engine, org.alice, APPEND, {"input": {
        "sessionId": session["id"], "events": [{"type": "OUTPUT", "message": "x"}]}})
    complete_codes = await error_codes(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], "status": "COMPLETED"}})
    assert (start_codes, append_codes, complete_codes) == (["NOT_FOUND"], ["NOT_FOUND"], ["NOT_FOUND"])
    assert await stored_count(engine, Event) == 0


# -- appendEvents


async def test_events_get_the_next_seqs_in_order_and_figures_follow(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"], workflowId="wf-9")
    terminal = await append(engine, org.alice, session["id"], [
        {"type": "OUTPUT", "messageBase64": base64.b64encode(b"\xff\x00raw").decode(), "timestamp": "2030-01-01T00:00:00Z"},
    ])
    events = await append(engine, org.alice, session["id"], [
        {"type": "LLM_PROMPT", "agentId": "planner", "message": "2+2?"},
        {"type": "LLM_OUTPUT", "agentId": "writer", "message": "   "},
        {"type": "LLM_OUTPUT", "agentId": "planner", "message": "4", "payload": {"model": "small"}},
    ], turn["id"])
    assert terminal[0]["seq"] == 1 and terminal[0]["turn"] is None and terminal[0]["workflowId"] is None
    assert terminal[0]["base64"] == base64.b64encode(b"\xff\x00raw").decode()
    assert [e["seq"] for e in events] == [2, 3, 4]
    assert {e["workflowId"] for e in events} == {"wf-9"}
    assert events[2]["payload"] == {"model": "small"}
    figures = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert figures["lastActivityAt"] == "2030-01-01T00:00:00Z"
    [turn_figures] = figures["turns"]["nodes"]
    assert turn_figures["finalOutput"] == "4"  # the first non-blank LLM_OUTPUT, no result yet
    assert turn_figures["agentsInvolved"] == ["planner", "writer"]


async def test_append_events_with_a_dedup_key_stores_it_once_and_returns_the_stored_copy(engine, org):
    session = await create(engine, org.alice)
    first = await append(engine, org.alice, session["id"], [
        {"type": "OUTPUT", "message": "a", "dedupKey": "k1"},
        {"type": "OUTPUT", "message": "a again in the same call", "dedupKey": "k1"},
        {"type": "OUTPUT", "message": "b", "dedupKey": "k2"},
    ])
    retry = await append(engine, org.alice, session["id"], [
        {"type": "OUTPUT", "message": "b, different content", "dedupKey": "k2"},
        {"type": "OUTPUT", "message": "c"},
    ])
    assert [(e["seq"], e["message"]) for e in first] == [(1, "a"), (1, "a"), (2, "b")]
    assert [(e["seq"], e["message"]) for e in retry] == [(2, "b"), (3, "c")]
    assert await stored_count(engine, Event) == 3


async def test_concurrent_retries_with_one_dedup_key_store_it_once(engine, org):
    session = await create(engine, org.alice)
    results = await asyncio.gather(*(
        append(engine, org.alice, session["id"], [{"type": "OUTPUT", "message": "x", "dedupKey": "once"}])
        for _ in range(8)
    ))
    assert {r[0]["id"] for r in results} == {results[0][0]["id"]}
    assert await stored_count(engine, Event) == 1


@pytest.mark.parametrize(
    "events",
    [
        [{"type": "OUTPUT", "message": "ok"}, {"type": "OUTPUT", "message": "a", "messageBase64": "YQ=="}],
        [{"type": "OUTPUT", "message": "ok"}, {"type": "OUTPUT", "messageBase64": "not base64!"}],
        [{"type": "OUTPUT", "message": "ok"}, {"type": ""}],
        [{"type": "OUTPUT", "message": "ok"}, {"type": "x" * 65}],
        [{"type": "OUTPUT", "message": "ok"}, {"type": "OUTPUT", "dedupKey": ""}],
        [{"type": "OUTPUT", "message": str(i)} for i in range(1001)],
    ],
    ids=["message-and-base64", "bad-base64", "empty-type", "long-type", "empty-dedup-key", "1001-events"],
)
async def test_a_bad_event_rejects_the_whole_call(engine, org, events):
    session = await create(engine, org.alice)
    codes = await error_codes(engine, org.alice, APPEND, {"input": {"sessionId": session["id"], "events": events}})
    assert codes == ["BAD_USER_INPUT"]
    assert await stored_count(engine, Event) == 0


async def test_a_thousand_events_in_one_call_are_stored(engine, org):
    session = await create(engine, org.alice)
    events = await append(engine, org.alice, session["id"], [{"type": "OUTPUT", "message": str(i)} for i in range(1000)])
    assert [e["seq"] for e in events] == list(range(1, 1001))


async def test_no_events_is_a_no_op(engine, org):
    session = await create(engine, org.alice)
    assert await append(engine, org.alice, session["id"], []) == []
    after = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert after["events"]["totalCount"] == 0


async def test_a_turn_of_another_session_or_a_malformed_turn_id_is_bad_input(engine, org):
    one, other = await create(engine, org.alice), await create(engine, org.alice)
    turn = await start(engine, org.alice, other["id"])
    for turn_id in (turn["id"], "not-an-id", one["id"]):
        codes = await error_codes(engine, org.alice, APPEND, {"input": {
            "sessionId": one["id"], "turnId": turn_id, "events": [{"type": "OUTPUT"}]}})
        assert codes == ["BAD_USER_INPUT"]
    assert await stored_count(engine, Event) == 0


async def test_events_after_completion_take_the_turns_workflow_id(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"], workflowId="wf-late")
    await complete(engine, org.alice, turn["id"], status="COMPLETED")
    [late] = await append(engine, org.alice, session["id"], [{"type": "TOOL_RESULT"}], turn["id"])
    assert late["workflowId"] == "wf-late"
    assert late["turn"] == {"turn": 1}


async def test_concurrent_appenders_leave_one_gapless_sequence(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    writers, batches, size = 6, 10, 30  # 300 events per writer

    async def writer(w: int) -> None:
        for b in range(batches):
            await append(engine, machine(org) if w % 2 else org.alice, session["id"], [
                {"type": "OUTPUT", "message": f"{w}:{b}:{i}", "agentId": f"agent-{w}"} for i in range(size)
            ], turn["id"] if w % 3 == 0 else None)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Event.seq, Event.content).order_by(Event.seq))).all()
        count = await connection.scalar(select(Session.event_count))
    total = writers * batches * size
    assert [r.seq for r in rows] == list(range(1, total + 1))
    assert count == total
    # Each batch landed whole and in the order given.
    for start_index in range(0, total, size):
        messages = [rows[start_index + i].content.decode() for i in range(size)]
        prefix = messages[0].rsplit(":", 1)[0]
        assert messages == [f"{prefix}:{i}" for i in range(size)]


# -- completeTurn


async def test_complete_turn_sets_status_tokens_and_time_and_the_session_follows(engine, org):
    session = await create(engine, org.alice)
    one = await start(engine, org.alice, session["id"], "t1")
    two = await start(engine, org.alice, session["id"], "t2")
    eight_seconds_later = (datetime.fromisoformat(one["createdAt"]) + timedelta(seconds=8)).isoformat()
    done = await complete(engine, org.alice, one["id"], status="COMPLETED", result="  4  ", tokensUsed=150,
                          completedAt=eight_seconds_later)
    await complete(engine, org.alice, two["id"], status="FAILED", tokensUsed=50)
    assert (done["status"], done["tokensUsed"], done["finalOutput"], done["executionTimeMs"]) == (
        "COMPLETED", 150, "4", 8000)
    figures = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert figures["tokensUsed"] == 200
    assert figures["lastActivityAt"] == done["completedAt"]
    assert [t["status"] for t in figures["turns"]["nodes"]] == ["COMPLETED", "FAILED"]


async def test_completed_at_defaults_to_now_and_left_out_fields_stay(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    await append(engine, org.alice, session["id"], [{"type": "LLM_OUTPUT", "message": "from events"}], turn["id"])
    done = await complete(engine, org.alice, turn["id"], status="CANCELLED")
    assert done["completedAt"] >= turn["createdAt"]
    assert (done["tokensUsed"], done["finalOutput"]) == (0, "from events")


async def test_completing_again_with_the_same_values_is_a_no_op_and_with_others_bad_input(engine, org):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    done = await complete(engine, org.alice, turn["id"], status="COMPLETED", result="r", tokensUsed=10)
    assert await complete(engine, org.alice, turn["id"], status="COMPLETED", tokensUsed=10) == done
    assert await complete(engine, org.alice, turn["id"], status="COMPLETED") == done
    for other in ({"status": "FAILED"}, {"status": "COMPLETED", "tokensUsed": 11}, {"status": "COMPLETED", "result": "s"},
                  {"status": "COMPLETED", "completedAt": "2001-01-01T00:00:00Z"}):
        codes = await error_codes(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], **other}})
        assert codes == ["BAD_USER_INPUT"]
    figures = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert figures["tokensUsed"] == 10


@pytest.mark.parametrize(
    "fields", [{"status": "RUNNING"}, {"status": "COMPLETED", "tokensUsed": -1},
               {"status": "COMPLETED", "completedAt": "2000-01-01T00:00:00Z"}],
    ids=["running", "negative-tokens", "before-start"],
)
async def test_complete_turn_rejects_bad_input_and_changes_nothing(engine, org, fields):
    session = await create(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    assert await error_codes(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], **fields}}) == ["BAD_USER_INPUT"]
    figures = (await ok(engine, org.alice, SESSION, {"id": session["id"]}))["session"]
    assert figures["turns"]["nodes"][0]["status"] == "RUNNING"


async def test_completing_a_turn_the_caller_cannot_write_is_not_found(engine, org):
    session = await create(engine, org.bob)
    turn = await start(engine, org.bob, session["id"])
    for turn_id in (turn["id"], base64.b64encode(b"Turn:999999").decode()):
        codes = await error_codes(engine, org.alice, COMPLETE, {"input": {"turnId": turn_id, "status": "COMPLETED"}})
        assert codes == ["NOT_FOUND"]
    assert await error_codes(engine, org.alice, COMPLETE, {"input": {"turnId": "junk", "status": "COMPLETED"}}) == [
        "BAD_USER_INPUT"]
