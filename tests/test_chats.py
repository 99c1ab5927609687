"""RED_TEAM sessions' chats: one per endpoint, each paging its turns as Session.turns does
(same arguments, same keyset cursors, each cursor good only for the chat that issued it),
and TERMINAL sessions' details, read by both executions."""

import pytest
from sqlalchemy import update

from sessiongraph.models import Session

from tests.conftest import error_codes, ok, store, store_red_team, store_terminal, turn_

pytestmark = pytest.mark.usefixtures("both_executions")

SETTINGS = {"attack_module": "jailbreak", "metric": "refusal", "context_strategy_prompt_count": 2}

CHATS = """query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  session(id: $id) { kind redTeam { runnerId endpoints settings { attackModule metric contextStrategyPromptCount systemPrompt }
    chats { endpoint turns(first: $first, after: $after, last: $last, before: $before) {
      totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes { turn endpoint userQuery preparedPrompt finalOutput costUsd redTeamSettings { attackModule contextStrategyPromptCount } } } } } } }"""


def chat(data: dict, endpoint: str) -> dict:
    [found] = [c for c in data["session"]["redTeam"]["chats"] if c["endpoint"] == endpoint]
    return found["turns"]


async def test_each_endpoint_has_a_chat_of_its_turns_in_order(engine, org):
    session_id = await store_red_team(engine, org.alice, endpoints=("gpt", "claude"), rounds=3, settings=SETTINGS, runner_id="nightly")
    data = await ok(engine, org.alice, CHATS, {"id": str(session_id)})
    red_team = data["session"]["redTeam"]
    assert data["session"]["kind"] == "RED_TEAM"
    assert red_team["runnerId"] == "nightly" and red_team["endpoints"] == ["gpt", "claude"]
    assert red_team["settings"] == {"attackModule": "jailbreak", "metric": "refusal", "contextStrategyPromptCount": 2, "systemPrompt": None}
    assert [c["endpoint"] for c in red_team["chats"]] == ["gpt", "claude"]
    gpt = chat(data, "gpt")
    # Turn numbers are the session's: the chats interleave.
    assert [t["turn"] for t in gpt["nodes"]] == [1, 3, 5] and [t["turn"] for t in chat(data, "claude")["nodes"]] == [2, 4, 6]
    assert gpt["nodes"][1] == {
        "turn": 3, "endpoint": "gpt", "userQuery": "prompt 1", "preparedPrompt": "[gpt] prompt 1",
        "finalOutput": "gpt answers 1", "costUsd": 0.00375,
        "redTeamSettings": {"attackModule": "jailbreak", "contextStrategyPromptCount": 2},
    }
    assert gpt["totalCount"] == 3 and gpt["pageInfo"]["hasNextPage"] is False


async def only_chat(engine, session_id, endpoint: str) -> None:
    """Leaves the session one chat, that of `endpoint`, among turns sent to several: `chats`
    takes no argument, and a cursor passed to every chat is refused by the others."""
    async with engine.begin() as connection:
        await connection.execute(update(Session).where(Session.id == session_id).values(endpoints=[endpoint]))


async def test_a_chat_pages_forwards_and_backwards(engine, org):
    session_id = await store_red_team(engine, org.alice, endpoints=("a", "b", "c"), rounds=5)
    await only_chat(engine, session_id, "b")
    variables = {"id": str(session_id), "first": 2}
    first = chat(await ok(engine, org.alice, CHATS, variables), "b")
    assert [t["turn"] for t in first["nodes"]] == [2, 5] and first["pageInfo"]["hasNextPage"] is True
    assert first["totalCount"] == 5
    second = chat(await ok(engine, org.alice, CHATS, {**variables, "after": first["pageInfo"]["endCursor"]}), "b")
    assert [t["turn"] for t in second["nodes"]] == [8, 11]
    assert second["pageInfo"]["hasPreviousPage"] is True and second["pageInfo"]["hasNextPage"] is True
    last = chat(await ok(engine, org.alice, CHATS, {"id": str(session_id), "last": 2}), "b")
    assert [t["turn"] for t in last["nodes"]] == [11, 14] and last["pageInfo"]["hasPreviousPage"] is True
    back = chat(await ok(engine, org.alice, CHATS, {"id": str(session_id), "last": 10, "before": second["pageInfo"]["startCursor"]}), "b")
    assert [t["turn"] for t in back["nodes"]] == [2, 5] and back["pageInfo"]["hasNextPage"] is True
    empty = chat(await ok(engine, org.alice, CHATS, {"id": str(session_id), "first": 0}), "b")
    assert empty["nodes"] == [] and empty["totalCount"] == 5 and empty["pageInfo"]["startCursor"] is None


async def test_a_chat_cursor_is_refused_by_another_chat_and_by_session_turns(engine, org):
    session_id = await store_red_team(engine, org.alice, endpoints=("a", "b"), rounds=3)
    other = await store_red_team(engine, org.alice, 1, endpoints=("a", "b"), rounds=3)
    data = await ok(engine, org.alice, CHATS, {"id": str(session_id), "first": 1})
    cursor_a = chat(data, "a")["pageInfo"]["endCursor"]
    one_chat = """query($id: ID!, $after: String) { session(id: $id) { redTeam { chats { endpoint turns(first: 1, after: $after) { nodes { turn } } } } } }"""
    # The chat that issued it takes it; the other chat of the session and the same endpoint's
    # chat of another session do not.
    taken = await error_codes(engine, org.alice, one_chat, {"id": str(session_id), "after": cursor_a})
    assert taken == ["BAD_USER_INPUT"]  # from chat b only: a takes it
    await only_chat(engine, session_id, "a")
    page = await ok(engine, org.alice, one_chat, {"id": str(session_id), "after": cursor_a})
    assert page["session"]["redTeam"]["chats"] == [{"endpoint": "a", "turns": {"nodes": [{"turn": 3}]}}]
    await only_chat(engine, session_id, "b")
    assert await error_codes(engine, org.alice, one_chat, {"id": str(session_id), "after": cursor_a}) == ["BAD_USER_INPUT"]
    assert await error_codes(engine, org.alice, one_chat, {"id": str(other), "after": cursor_a}) == ["BAD_USER_INPUT"]
    session_turns = """query($id: ID!, $after: String) { session(id: $id) { turns(first: 1, after: $after) { nodes { turn } endCursor: pageInfo { endCursor } } } }"""
    assert await error_codes(engine, org.alice, session_turns, {"id": str(session_id), "after": cursor_a}) == ["BAD_USER_INPUT"]
    turns_cursor = (await ok(engine, org.alice, session_turns, {"id": str(session_id)}))["session"]["turns"]["endCursor"]["endCursor"]
    assert await error_codes(engine, org.alice, one_chat, {"id": str(session_id), "after": turns_cursor}) == ["BAD_USER_INPUT"]


async def test_bad_page_arguments_are_refused(engine, org):
    session_id = await store_red_team(engine, org.alice)
    for variables in ({"first": 101}, {"last": -1}, {"first": 1, "last": 1}, {"after": "garbage"}):
        assert set(await error_codes(engine, org.alice, CHATS, {"id": str(session_id), **variables})) == {"BAD_USER_INPUT"}


async def test_an_endpoint_without_turns_has_an_empty_chat_and_other_kinds_no_details(engine, org):
    session_id = await store_red_team(engine, org.alice, endpoints=("only",), rounds=0)
    data = await ok(engine, org.alice, CHATS, {"id": str(session_id)})
    assert chat(data, "only") == {"totalCount": 0, "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None}, "nodes": []}
    agent = await store(engine, org.alice, 1, turns=[turn_("t", 1)])
    data = await ok(engine, org.alice, "query($id: ID!) { session(id: $id) { kind terminal { verb } redTeam { runnerId } turns { nodes { endpoint redTeamSettings { metric } } } } }", {"id": str(agent)})
    assert data["session"] == {"kind": "AGENT", "terminal": None, "redTeam": None, "turns": {"nodes": [{"endpoint": None, "redTeamSettings": None}]}}


TERMINAL = """query($id: ID!) { session(id: $id) { kind terminal { verb exitCode input columns
  resource { name type subtype resourceName tags }
  review { status createdAt decisions { group status reviewerEmail decidedAt } }
  guardrails { rule direction matchedWords } dataMasking { errorCount infoTypes totalRedactCount transformedBytes } } } }"""


async def test_a_terminal_session_shows_its_details(engine, org):
    from tests.conftest import T0

    session_id = await store_terminal(engine, org.alice, details={
        "verb": "EXEC", "exit_code": 2, "terminal_input": "select 1", "resource_name": "pgdemo", "resource_type": "database",
        "resource_subtype": "postgres", "resource_tags": {"team": "banking"}, "review_status": "APPROVED", "review_created_at": T0,
        "review_decisions": [{"group": "dba", "status": "APPROVED", "reviewer_email": "r@example.com", "decided_at": "2025-10-28T06:01:00+00:00"}],
        "guardrails": [{"rule": "no-drop", "direction": "INPUT", "matched_words": ["drop"]}], "guardrail_count": 1,
        "data_masking": {"error_count": 0, "info_types": {"EMAIL_ADDRESS": 1}, "total_redact_count": 1, "transformed_bytes": 12},
    })
    data = await ok(engine, org.alice, TERMINAL, {"id": str(session_id)})
    assert data["session"] == {"kind": "TERMINAL", "terminal": {
        "verb": "EXEC", "exitCode": 2, "input": "select 1", "columns": None,
        "resource": {"name": "pgdemo", "type": "database", "subtype": "postgres", "resourceName": None, "tags": {"team": "banking"}},
        "review": {"status": "APPROVED", "createdAt": "2025-10-28T06:00:00Z", "decisions": [
            {"group": "dba", "status": "APPROVED", "reviewerEmail": "r@example.com", "decidedAt": "2025-10-28T06:01:00Z"}]},
        "guardrails": [{"rule": "no-drop", "direction": "INPUT", "matchedWords": ["drop"]}],
        "dataMasking": {"errorCount": 0, "infoTypes": {"EMAIL_ADDRESS": 1}, "totalRedactCount": 1, "transformedBytes": 12},
    }}
