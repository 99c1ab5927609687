"""Writing TERMINAL and RED_TEAM sessions (kinds.graphql): createSession's kinds, startTurn's
endpoint, completeTurn's cost, updateSession, endSession, the figures the writers keep
(stream size, cost, guardrail count, READY -> OPEN), no writes to a DONE session, the
announcements, and the import of the contract's two example lines."""

import asyncio
import json

from sqlalchemy import select

from sessiongraph.models import Event, Session, Turn
from tests.conftest import execute, ok
from tests.test_import import ADMIN, ORG, USER, import_bytes
from tests.test_recording import APPEND, COMPLETE, CREATE, START, append, complete, machine, start, stored_count
from tests.test_subscriptions import subscribe, take

DETAILS = """
fragment details on Session {
  id externalId title kind status endedAt batchId correlationId identityType costUsd tokenBudget metadata updatedAt
  terminal {
    verb exitCode input inputSize streamSize columns rows userEmail userDisplayName userSubject machineIdentityId
    resource { name type subtype resourceName tags }
    dataMasking { errorCount infoTypes totalRedactCount transformedBytes }
    guardrails { rule direction matchedWords }
    review { status createdAt decisions { group status reviewerEmail decidedAt } }
    aiAnalysis
  }
  redTeam {
    runnerId endpoints
    settings { attackModule contextStrategy contextStrategyPromptCount promptTemplate metric systemPrompt }
  }
  turns(first: 100) { nodes { taskId status costUsd endpoint preparedPrompt redTeamSettings { attackModule contextStrategyPromptCount } } }
}"""
CREATE_KIND = "mutation($input: CreateSessionInput!) { createSession(input: $input) { session { ...details } } }" + DETAILS
UPDATE = "mutation($input: UpdateSessionInput!) { updateSession(input: $input) { clientMutationId session { ...details } } }" + DETAILS
END = "mutation($input: EndSessionInput!) { endSession(input: $input) { clientMutationId session { ...details } } }" + DETAILS
READ = "query($id: ID!) { session(id: $id) { ...details } }" + DETAILS

TERMINAL = {
    "verb": "EXEC",
    "resource": {"name": "pgdemo", "type": "database", "subtype": "postgres", "resourceName": "db-1", "tags": {"team": "banking"}},
    "input": "SELECT 'é';",
    "columns": 120,
    "rows": 40,
    "userEmail": "jw@example.com",
    "userDisplayName": "John Wick",
    "userSubject": "sub-1",
    "machineIdentityId": "mi-7",
    "review": {"status": "PENDING", "createdAt": "2025-10-28T06:00:00Z",
               "decisions": [{"group": "dba", "status": "PENDING"}]},
}
RED_TEAM = {"runnerId": "nightly", "endpoints": ["gpt-4o", "llama3-8b", "haiku"],
            "settings": {"attackModule": "charswap", "contextStrategyPromptCount": 3}}


async def create_kind(engine, viewer, **given) -> dict:
    return (await ok(engine, viewer, CREATE_KIND, {"input": given}))["createSession"]["session"]


async def refusal(engine, viewer, document: str, given: dict) -> str:
    """The message of the one BAD_USER_INPUT error the mutation answers with."""
    result = await execute(engine, viewer, document, {"input": given})
    [error] = result.errors
    assert error.extensions["code"] == "BAD_USER_INPUT", error
    return error.message


async def read(engine, viewer, id_: str) -> dict:
    return (await ok(engine, viewer, READ, {"id": id_}))["session"]


async def snapshot(engine) -> list:
    """Every stored row, to show a refusal changed nothing."""
    async with engine.connect() as connection:
        return [
            sorted(map(repr, (await connection.execute(select(table).order_by(table.id))).all()))
            for table in (Session, Turn, Event)
        ]


# -- createSession


async def test_a_terminal_session_is_created_with_its_details_and_the_keys_identity_type(engine, org):
    robot = machine(org)
    session = await create_kind(engine, robot, userId=str(org.alice.user_id), kind="TERMINAL", status="READY",
                                batchId="batch-1", correlationId="task-9", terminal=TERMINAL)
    assert session["kind"] == "TERMINAL" and session["status"] == "READY" and session["identityType"] == "MACHINE"
    assert session["batchId"] == "batch-1" and session["correlationId"] == "task-9" and session["redTeam"] is None
    assert session["costUsd"] == 0 and session["endedAt"] is None
    assert session["terminal"] == {
        "verb": "EXEC", "exitCode": None, "input": "SELECT 'é';", "inputSize": 12, "streamSize": 0,
        "columns": 120, "rows": 40, "userEmail": "jw@example.com", "userDisplayName": "John Wick",
        "userSubject": "sub-1", "machineIdentityId": "mi-7",
        "resource": {"name": "pgdemo", "type": "database", "subtype": "postgres", "resourceName": "db-1",
                     "tags": {"team": "banking"}},
        "dataMasking": None, "guardrails": [],
        "review": {"status": "PENDING", "createdAt": "2025-10-28T06:00:00Z",
                   "decisions": [{"group": "dba", "status": "PENDING", "reviewerEmail": None, "decidedAt": None}]},
        "aiAnalysis": None,
    }
    assert await read(engine, org.alice, session["id"]) == session
    agent = await create_kind(engine, org.alice, title="chat")
    assert (agent["kind"], agent["status"], agent["identityType"], agent["terminal"]) == ("AGENT", "OPEN", "USER", None)


async def test_a_red_team_session_takes_its_runner_id_as_external_id(engine, org):
    session = await create_kind(engine, org.alice, kind="RED_TEAM", redTeam=RED_TEAM)
    assert session["externalId"] == "nightly" and session["terminal"] is None
    assert session["redTeam"] == {"runnerId": "nightly", "endpoints": ["gpt-4o", "llama3-8b", "haiku"], "settings": {
        "attackModule": "charswap", "contextStrategy": None, "contextStrategyPromptCount": 3,
        "promptTemplate": None, "metric": None, "systemPrompt": None}}
    assert (await read(engine, org.alice, "nightly"))["id"] == session["id"]
    before = await snapshot(engine)
    message = await refusal(engine, org.alice, CREATE_KIND, {"kind": "RED_TEAM", "redTeam": RED_TEAM})
    assert "runner id 'nightly'" in message and "in use" in message
    assert await snapshot(engine) == before
    other = await create_kind(engine, org.alice, kind="RED_TEAM", externalId="nightly-2", redTeam=RED_TEAM)
    assert other["externalId"] == "nightly-2"


async def test_create_session_refuses_broken_rules_naming_the_field_and_stores_nothing(engine, org):
    cases = [
        ({"kind": "TERMINAL"}, "A TERMINAL session needs its terminal details."),
        ({"kind": "RED_TEAM"}, "A RED_TEAM session needs its red-team details."),
        ({"terminal": TERMINAL}, "Terminal details go with a TERMINAL session, not a AGENT one."),
        ({"kind": "TERMINAL", "terminal": TERMINAL, "redTeam": RED_TEAM}, "Red-team details go with a RED_TEAM session"),
        ({"status": "DONE"}, "A session is created READY or OPEN; endSession ends it."),
        ({"batchId": " "}, "The batch id must be non-empty"),
        ({"correlationId": "x" * 256}, "The correlation id is longer than 255 characters."),
        ({"kind": "TERMINAL", "terminal": {**TERMINAL, "columns": 0}}, "terminal: The terminal's columns must be between 1 and 65535."),
        ({"kind": "TERMINAL", "terminal": {**TERMINAL, "resource": {"name": "", "type": "database"}}},
         "terminal: The resource name must be non-empty"),
        ({"kind": "TERMINAL", "terminal": {**TERMINAL, "resource": {"name": "a", "type": "b", "tags": {"n": 1}}}},
         "terminal: The resource tags must be a JSON object of string values."),
        ({"kind": "TERMINAL", "terminal": {**TERMINAL, "userEmail": "a\nb"}}, "terminal: The user email must be non-empty"),
        ({"kind": "RED_TEAM", "redTeam": {**RED_TEAM, "endpoints": []}}, "redTeam: A red-team session needs at least one endpoint."),
        ({"kind": "RED_TEAM", "redTeam": {**RED_TEAM, "endpoints": ["a", "b", "a"]}}, "redTeam: The endpoint 'a' is given twice."),
        ({"kind": "RED_TEAM", "redTeam": {**RED_TEAM, "endpoints": ["x" * 256]}}, "redTeam: The endpoint is longer than 255"),
        ({"kind": "RED_TEAM", "redTeam": {**RED_TEAM, "runnerId": "a\tb"}}, "redTeam: The runner id must be non-empty"),
        ({"kind": "RED_TEAM", "redTeam": {**RED_TEAM, "settings": {"contextStrategyPromptCount": 101}}},
         "redTeam: The context strategy prompt count must be between 0 and 100."),
    ]
    before = await snapshot(engine)
    for given, expected in cases:
        message = await refusal(engine, org.alice, CREATE_KIND, given)
        assert message.startswith(expected), (given, message)
    assert await snapshot(engine) == before


# -- turns, costs, events on a session's kinds


async def test_red_team_turns_need_an_endpoint_of_the_session_and_keep_the_settings_of_their_time(engine, org):
    session = await create_kind(engine, org.alice, kind="RED_TEAM", redTeam=RED_TEAM)
    id_ = session["id"]
    assert await refusal(engine, org.alice, START, {"sessionId": id_, "taskId": "t"}) == (
        "A RED_TEAM session's turn needs the endpoint its prompt went to.")
    assert await refusal(engine, org.alice, START, {"sessionId": id_, "taskId": "t", "endpoint": "mistral"}) == (
        "The endpoint 'mistral' is not one of the session's endpoints (gpt-4o, llama3-8b, haiku).")
    await start(engine, org.alice, id_, "p1", endpoint="gpt-4o", preparedPrompt="[sys] hi")
    await ok(engine, org.alice, UPDATE, {"input": {"id": id_, "redTeamSettings": {"attackModule": "homoglyph"}}})
    await start(engine, org.alice, id_, "p2", endpoint="haiku")
    await ok(engine, org.alice, UPDATE, {"input": {"id": id_, "redTeamSettings": {"contextStrategyPromptCount": None}}})
    turns = (await read(engine, org.alice, id_))["turns"]["nodes"]
    assert [(t["endpoint"], t["preparedPrompt"], t["redTeamSettings"]) for t in turns] == [
        ("gpt-4o", "[sys] hi", {"attackModule": "charswap", "contextStrategyPromptCount": 3}),
        ("haiku", None, {"attackModule": "homoglyph", "contextStrategyPromptCount": 3}),
    ]
    assert (await read(engine, org.alice, id_))["redTeam"]["settings"]["contextStrategyPromptCount"] == 5
    agent = await create_kind(engine, org.alice)
    assert await refusal(engine, org.alice, START, {"sessionId": agent["id"], "taskId": "t", "endpoint": "gpt-4o"}) == (
        "Only a RED_TEAM session's turns have an endpoint; this session is AGENT.")


async def test_costs_are_exact_to_the_millionth_after_many_completions(engine, org):
    session = await create_kind(engine, org.alice)
    costs = [0.1, 0.2] + [0.000001] * 30 + [999_999.999999]
    for i, cost in enumerate(costs):
        turn = await start(engine, org.alice, session["id"], f"t{i}")
        assert (await ok(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], "status": "COMPLETED", "costUsd": cost}}))
    assert (await read(engine, org.alice, session["id"]))["costUsd"] == 1_000_000.300029
    async with engine.connect() as connection:
        assert await connection.scalar(select(Session.cost_usd_micros)) == 1_000_000_300_029
    two = await create_kind(engine, org.alice)
    for i, cost in enumerate((0.1, 0.2)):
        turn = await start(engine, org.alice, two["id"], f"t{i}")
        await ok(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], "status": "COMPLETED", "costUsd": cost}})
    assert (await read(engine, org.alice, two["id"]))["costUsd"] == 0.3  # not 0.30000000000000004


async def test_a_cost_out_of_range_or_too_precise_is_refused_and_a_repeat_compares_it(engine, org):
    session = await create_kind(engine, org.alice)
    turn = await start(engine, org.alice, session["id"])
    for cost, message in ((-0.01, "The cost must be between 0 and 1,000,000 US dollars."),
                          (1_000_000.01, "The cost must be between 0 and 1,000,000 US dollars."),
                          (0.0000001, "The cost has more than 6 decimals (a millionth of a dollar).")):
        assert await refusal(engine, org.alice, COMPLETE, {"turnId": turn["id"], "status": "COMPLETED", "costUsd": cost}) == message
    done = {"turnId": turn["id"], "status": "COMPLETED", "costUsd": 0.25}
    await ok(engine, org.alice, COMPLETE, {"input": done})
    await ok(engine, org.alice, COMPLETE, {"input": done})  # the same again: a no-op
    await ok(engine, org.alice, COMPLETE, {"input": {"turnId": turn["id"], "status": "COMPLETED"}})  # left out: not compared
    assert (await refusal(engine, org.alice, COMPLETE, {**done, "costUsd": 0.26})).startswith("The turn has ended already")
    assert (await read(engine, org.alice, session["id"]))["costUsd"] == 0.25


async def test_stream_size_counts_input_output_and_error_bytes_as_they_are_appended(engine, org):
    session = await create_kind(engine, org.alice, kind="TERMINAL", status="READY", terminal=TERMINAL)
    expected = 0
    for i in range(40):
        message = f"ligne {i} é\n" * (i % 3 + 1)
        kind = ("INPUT", "OUTPUT", "ERROR", "LLM_OUTPUT")[i % 4]
        await append(engine, org.alice, session["id"], [{"type": kind, "message": message, "dedupKey": f"k{i}"}])
        expected += len(message.encode()) if kind != "LLM_OUTPUT" else 0
    await append(engine, org.alice, session["id"], [{"type": "OUTPUT", "message": "again", "dedupKey": "k1"}])  # a retry: no bytes
    await append(engine, org.alice, session["id"], [{"type": "OUTPUT", "messageBase64": "/w=="}])  # one raw byte
    read_back = await read(engine, org.alice, session["id"])
    assert read_back["terminal"]["streamSize"] == expected + 1 and read_back["status"] == "OPEN"


async def test_starting_a_turn_or_appending_makes_a_ready_session_open(engine, org):
    for write in ("turn", "event"):
        session = await create_kind(engine, org.alice, status="READY")
        if write == "turn":
            await start(engine, org.alice, session["id"])
        else:
            await append(engine, org.alice, session["id"], [{"type": "OUTPUT"}])
        assert (await read(engine, org.alice, session["id"]))["status"] == "OPEN"


# -- endSession and what a DONE session refuses


async def test_end_session_ends_once_and_a_repeat_with_the_same_values_changes_nothing(engine, org):
    session = await create_kind(engine, org.alice, kind="TERMINAL", terminal=TERMINAL)
    running = await start(engine, org.alice, session["id"], "still-running")
    given = {"id": session["id"], "endedAt": "2030-01-01T00:00:00Z", "exitCode": 2, "clientMutationId": "e1"}
    ended = (await ok(engine, org.alice, END, {"input": given}))["endSession"]
    assert ended["clientMutationId"] == "e1"
    assert (ended["session"]["status"], ended["session"]["endedAt"], ended["session"]["terminal"]["exitCode"]) == (
        "DONE", "2030-01-01T00:00:00Z", 2)
    assert [t["status"] for t in ended["session"]["turns"]["nodes"]] == ["RUNNING"]
    again = (await ok(engine, org.alice, END, {"input": given}))["endSession"]["session"]
    assert again == ended["session"]
    assert (await ok(engine, org.alice, END, {"input": {"id": session["id"]}}))["endSession"]["session"] == ended["session"]
    before = await snapshot(engine)
    assert await refusal(engine, org.alice, END, {**given, "exitCode": 3}) == (
        "The session has ended already, with another end time or exit code.")
    assert await refusal(engine, org.alice, END, {**given, "endedAt": "2030-01-01T00:00:01Z"}) == (
        "The session has ended already, with another end time or exit code.")
    # No more turns, completions or events; a retry of what was stored already answers as before.
    ended_rule = "The session has ended (status DONE): it takes no more turns, turn completions or events."
    assert await refusal(engine, org.alice, START, {"sessionId": session["id"], "taskId": "new"}) == ended_rule
    assert await refusal(engine, org.alice, APPEND, {"sessionId": session["id"], "events": [{"type": "OUTPUT"}]}) == ended_rule
    assert await refusal(engine, org.alice, COMPLETE, {"turnId": running["id"], "status": "COMPLETED"}) == ended_rule
    assert (await start(engine, org.alice, session["id"], "still-running"))["id"] == running["id"]
    assert await snapshot(engine) == before


async def test_end_session_rules(engine, org):
    agent = await create_kind(engine, org.alice)
    assert await refusal(engine, org.alice, END, {"id": agent["id"], "exitCode": 0}) == (
        "exitCode: only a TERMINAL session has an exit code; this one is AGENT.")
    assert await refusal(engine, org.alice, END, {"id": agent["id"], "endedAt": "2000-01-01T00:00:00Z"}) == (
        "endedAt: A session cannot end before it was created.")
    now = (await ok(engine, org.alice, END, {"input": {"id": agent["id"]}}))["endSession"]["session"]
    assert now["status"] == "DONE" and now["endedAt"] >= agent["updatedAt"]
    assert (await execute(engine, org.bob, END, {"input": {"id": agent["id"]}})).errors[0].extensions["code"] == "NOT_FOUND"


# -- updateSession


async def test_update_session_patches_what_is_given_and_clears_what_is_null(engine, org):
    session = await create_kind(engine, org.alice, kind="TERMINAL", title="t", tokenBudget=10, batchId="b",
                                correlationId="c", metadata={"a": 1}, terminal=TERMINAL)
    guardrails = [{"rule": "no-drop", "direction": "INPUT", "matchedWords": ["DROP"]},
                  {"rule": "no-pii", "direction": "OUTPUT"}]
    masking = {"errorCount": 0, "infoTypes": {"EMAIL_ADDRESS": 2}, "totalRedactCount": 2, "transformedBytes": 31}
    review = {"status": "APPROVED", "createdAt": "2025-10-28T07:00:00Z",
              "decisions": [{"group": "dba", "status": "APPROVED", "reviewerEmail": "a@example.com", "decidedAt": "2025-10-28T07:01:00Z"}]}
    updated = (await ok(engine, org.alice, UPDATE, {"input": {
        "id": session["id"], "title": "  New\u200b ", "metadata": {"b": 2}, "terminalGuardrails": guardrails,
        "terminalDataMasking": masking, "terminalReview": review, "terminalAiAnalysis": {"risk": "low"},
        "clientMutationId": "u1",
    }}))["updateSession"]
    assert updated["clientMutationId"] == "u1"
    s = updated["session"]
    assert (s["title"], s["tokenBudget"], s["batchId"], s["correlationId"], s["metadata"]) == ("New", 10, "b", "c", {"b": 2})
    assert s["terminal"]["guardrails"] == [{**guardrails[0]}, {**guardrails[1], "matchedWords": []}]
    assert s["terminal"]["dataMasking"] == masking and s["terminal"]["aiAnalysis"] == {"risk": "low"}
    assert s["terminal"]["review"]["decisions"][0]["decidedAt"] == "2025-10-28T07:01:00Z"
    assert s["terminal"]["input"] == TERMINAL["input"]  # not given: unchanged
    async with engine.connect() as connection:
        assert await connection.scalar(select(Session.guardrail_count)) == 2
    cleared = (await ok(engine, org.alice, UPDATE, {"input": {
        "id": session["id"], "title": None, "tokenBudget": None, "batchId": None, "correlationId": None,
        "terminalGuardrails": None, "terminalDataMasking": None, "terminalReview": None, "terminalAiAnalysis": None,
    }}))["updateSession"]["session"]
    assert (cleared["title"], cleared["tokenBudget"], cleared["batchId"], cleared["correlationId"]) == (None, None, None, None)
    assert cleared["terminal"]["guardrails"] == [] and cleared["terminal"]["review"] is None
    assert cleared["terminal"]["dataMasking"] is None and cleared["terminal"]["aiAnalysis"] is None
    assert cleared["metadata"] == {"b": 2}
    async with engine.connect() as connection:
        assert await connection.scalar(select(Session.guardrail_count)) == 0
    # Allowed once the session has ended.
    await ok(engine, org.alice, END, {"input": {"id": session["id"]}})
    late = (await ok(engine, org.alice, UPDATE, {"input": {"id": session["id"], "terminalAiAnalysis": {"risk": "high"}}}))
    assert late["updateSession"]["session"]["terminal"]["aiAnalysis"] == {"risk": "high"}


async def test_update_session_refuses_a_broken_rule_whole(engine, org):
    terminal = await create_kind(engine, org.alice, kind="TERMINAL", title="keep", terminal=TERMINAL)
    red_team = await create_kind(engine, org.alice, kind="RED_TEAM", redTeam=RED_TEAM)
    agent = await create_kind(engine, org.alice)
    before = await snapshot(engine)
    cases = [
        (terminal, {"title": "x" * 61}, "The title is longer than 60 characters (61)."),
        (terminal, {"title": "ok", "tokenBudget": -1}, "The token budget must be 0 or more."),
        (terminal, {"title": "ok", "metadata": [1]}, "The metadata must be a JSON object."),
        (terminal, {"title": "ok", "terminalGuardrails": [{"rule": "r", "direction": "SIDEWAYS"}]},
         "terminalGuardrails: A guardrail's direction is INPUT or OUTPUT."),
        (terminal, {"title": "ok", "terminalDataMasking": {"errorCount": -1, "infoTypes": {}, "totalRedactCount": 0, "transformedBytes": 0}},
         "terminalDataMasking: The data masking's error count must be a whole number, 0 or more."),
        (terminal, {"title": "ok", "redTeamSettings": {"metric": "m"}},
         "redTeamSettings: only a RED_TEAM session has red-team settings; this one is TERMINAL."),
        (agent, {"terminalAiAnalysis": {}}, "terminalAiAnalysis: only a TERMINAL session has terminal details; this one is AGENT."),
        (red_team, {"terminalReview": None}, "terminalReview: only a TERMINAL session has terminal details; this one is RED_TEAM."),
        (red_team, {"title": "ok", "redTeamSettings": {"contextStrategyPromptCount": -1}},
         "redTeamSettings: The context strategy prompt count must be between 0 and 100."),
    ]
    for session, given, expected in cases:
        assert await refusal(engine, org.alice, UPDATE, {"id": session["id"], **given}) == expected, given
    assert await snapshot(engine) == before


async def test_machine_keys_update_and_end_sessions_of_their_organisation_users_only_their_own(engine, org, other_org):
    session = await create_kind(engine, org.alice, kind="TERMINAL", terminal=TERMINAL)
    await ok(engine, machine(org), UPDATE, {"input": {"id": session["id"], "batchId": "from-gateway"}})
    for stranger in (org.bob, other_org.admin, machine(other_org)):
        result = await execute(engine, stranger, UPDATE, {"input": {"id": session["id"], "batchId": "x"}})
        assert result.errors[0].extensions["code"] == "NOT_FOUND"
    assert (await read(engine, org.alice, session["id"]))["batchId"] == "from-gateway"


# -- announcements


async def test_updates_and_ends_are_announced_over_session_updates(engine, org):
    updates = """subscription { sessionUpdates { kind sessionId session { status batchId } } }"""
    alices = await subscribe(engine, org.alice, updates)
    admins = await subscribe(engine, org.admin, updates)
    session = await create_kind(engine, org.alice)
    await ok(engine, org.alice, UPDATE, {"input": {"id": session["id"], "batchId": "b1"}})
    await ok(engine, org.alice, END, {"input": {"id": session["id"]}})
    await ok(engine, org.alice, END, {"input": {"id": session["id"]}})  # a no-op: nothing announced
    await ok(engine, org.alice, CREATE, {"input": {"title": "next"}})
    for stream in (alices, admins):
        got = [d["sessionUpdates"] for d in await take(stream, 4)]
        # (each with the session as it is when the notice is read)
        assert [g["kind"] for g in got] == ["CREATED", "UPDATED", "ENDED", "CREATED"]
        assert (got[2]["session"]["status"], got[2]["session"]["batchId"]) == ("DONE", "b1")
        assert got[1]["sessionId"] == got[2]["sessionId"] == session["id"]
        await stream.aclose()


async def test_concurrent_completions_add_every_cost(engine, org):
    session = await create_kind(engine, org.alice)
    turns = [await start(engine, org.alice, session["id"], f"t{i}") for i in range(10)]
    await asyncio.gather(*(
        ok(engine, org.alice, COMPLETE, {"input": {"turnId": t["id"], "status": "COMPLETED", "costUsd": 0.1}}) for t in turns
    ))
    assert (await read(engine, org.alice, session["id"]))["costUsd"] == 1.0


# -- import

EXAMPLES = [
    {"kind": "TERMINAL", "status": "DONE", "ended_at": "2024-07-25T15:56:35.361Z",
     "batch_id": "batch-abc-123", "correlation_id": "task-12345", "identity_type": "MACHINE",
     "terminal": {"verb": "EXEC", "exit_code": 0, "input": "SELECT NOW()", "columns": 120, "rows": 40,
                  "resource": {"name": "pgdemo", "type": "database", "subtype": "postgres",
                               "resource_name": "my-resource", "tags": {"team": "banking"}},
                  "user_email": "jw@example.com", "user_display_name": "John Wick", "user_subject": "nJ1x...",
                  "machine_identity_id": "BF997324-...",
                  "data_masking": {"error_count": 0, "info_types": {"EMAIL_ADDRESS": 1},
                                   "total_redact_count": 1, "transformed_bytes": 31},
                  "guardrails": [{"rule": "no-drop", "direction": "INPUT", "matched_words": ["DROP"]}],
                  "review": {"status": "APPROVED", "created_at": "2024-07-25T15:50:00Z",
                             "decisions": [{"group": "dba", "status": "APPROVED", "reviewer_email": "a@example.com",
                                            "decided_at": "2024-07-25T15:51:00Z"}]},
                  "ai_analysis": {"risk": "low"}},
     "events": [{"type": "INPUT", "message": "SELECT NOW();\n", "timestamp": "2024-07-25T15:56:00Z"}]},
    {"kind": "RED_TEAM", "red_team": {"runner_id": "nightly", "endpoints": ["gpt-4o", "llama3-8b"],
                                      "settings": {"attack_module": "charswap", "context_strategy": "summary",
                                                   "context_strategy_prompt_count": 5, "prompt_template": "mmlu",
                                                   "metric": "refusal", "system_prompt": "You are a helpful assistant."}},
     "turns": [{"task_id": "gpt-4o-1", "endpoint": "gpt-4o", "user_query": "…", "prepared_prompt": "…",
                "red_team_settings": {"attack_module": "homoglyph"}, "result": "…", "created_at": "2024-07-25T15:50:00Z",
                "cost_usd": 0.0042},
               {"task_id": "llama-1", "endpoint": "llama3-8b", "created_at": "2024-07-25T15:50:01Z", "cost_usd": 0.0008}]},
]


def example_line(example: dict, **changes) -> bytes:
    owner = {"org_id": str(ORG), "user_id": str(USER), "created_at": "2024-07-25T15:49:00Z"}
    return json.dumps({**owner, **example, **changes}).encode()


async def test_the_contract_examples_import_and_read_back(engine):
    report, errors = await import_bytes(engine, *map(example_line, EXAMPLES))
    assert errors == "" and report.sessions_created == 2
    sessions = (await ok(engine, ADMIN, "{ sessions(first: 5) { nodes { ...details } } }" + DETAILS))["sessions"]["nodes"]
    terminal = next(s for s in sessions if s["kind"] == "TERMINAL")
    red_team = next(s for s in sessions if s["kind"] == "RED_TEAM")
    assert (terminal["status"], terminal["endedAt"], terminal["identityType"], terminal["batchId"]) == (
        "DONE", "2024-07-25T15:56:35.361000Z", "MACHINE", "batch-abc-123")
    assert terminal["terminal"]["streamSize"] == len(b"SELECT NOW();\n") and terminal["terminal"]["inputSize"] == 12
    assert terminal["terminal"]["guardrails"] == [{"rule": "no-drop", "direction": "INPUT", "matchedWords": ["DROP"]}]
    assert terminal["terminal"]["review"]["decisions"][0]["decidedAt"] == "2024-07-25T15:51:00Z"
    assert terminal["terminal"]["resource"]["tags"] == {"team": "banking"} and terminal["terminal"]["exitCode"] == 0
    assert red_team["externalId"] == "nightly" and red_team["status"] == "OPEN" and red_team["costUsd"] == 0.005
    assert [(t["endpoint"], t["costUsd"], t["redTeamSettings"]["attackModule"]) for t in red_team["turns"]["nodes"]] == [
        ("gpt-4o", 0.0042, "homoglyph"), ("llama3-8b", 0.0008, "charswap")]
    # A turn added to an ended session by a later line: refused whole.
    same_session = example_line({**EXAMPLES[0], "external_id": "tty-9"})
    await import_bytes(engine, same_session)
    report, errors = await import_bytes(engine, example_line({**EXAMPLES[0], "external_id": "tty-9",
                                                              "turns": [{"task_id": "late", "created_at": "2024-07-25T16:00:00Z"}]}))
    assert report.rejected == 1 and "has ended (status DONE)" in errors


async def test_import_lines_break_the_mutations_rules_with_their_messages(engine):
    cases = [
        ({"kind": "TERMINAL"}, "session: `kind`: A TERMINAL session needs its terminal details."),
        ({"status": "READY", "ended_at": "2024-07-25T16:00:00Z"}, "session: `ended_at`: Only a DONE session has an end time; this one is READY."),
        ({"ended_at": "2024-07-25T15:00:00Z"}, "session: `ended_at`: A session cannot end before it was created."),
        ({"kind": "SHELL"}, "session: `kind` must be one of AGENT, TERMINAL, RED_TEAM"),
        ({**EXAMPLES[1], "turns": [{"task_id": "t", "endpoint": "haiku", "created_at": "2024-07-25T15:50:00Z"}]},
         "turns[0]: `endpoint`: The endpoint 'haiku' is not one of the session's endpoints (gpt-4o, llama3-8b)."),
        ({**EXAMPLES[1], "turns": [{"task_id": "t", "endpoint": "gpt-4o", "cost_usd": 0.1234567, "created_at": "2024-07-25T15:50:00Z"}]},
         "turns[0]: `cost_usd`: The cost has more than 6 decimals (a millionth of a dollar)."),
        ({"turns": [{"task_id": "t", "red_team_settings": {}, "created_at": "2024-07-25T15:50:00Z"}]},
         "turns[0]: `red_team_settings`: Only a RED_TEAM session's turns have red-team settings; this session is AGENT."),
    ]
    for changes, expected in cases:
        report, errors = await import_bytes(engine, example_line({}, **changes))
        assert report.rejected == 1 and errors == f"line 1: rejected: {expected}\n", (changes, errors)
    assert await stored_count(engine, Session) == 0
