"""One rule, one message, whatever the way in: each input rule of resolvers/rules.py refuses a
value in a mutation (BAD_USER_INPUT) and in an import line alike, with the same message after
the value's place in its input; and the rules and the visibility module load without GraphQL,
for ingests that have none."""

import subprocess
import sys

import pytest

from sessiongraph.models import Event, Session, Turn
from tests.conftest import execute
from tests.test_import import event, import_bytes, line, new_session, turn
from tests.test_recording import APPEND, COMPLETE, CREATE, START, create, start, stored_count

LONG = "x" * 256
BIG = "x" * (1024 * 1024 + 1)
BIG_JSON = {"big": "x" * 70_000}
TERMINAL = {"verb": "EXEC", "resource": {"name": "pgdemo", "type": "database"}}  # the same in an import line and an input

# (id, mutation, its input, the value's place in the mutation's input, the import line, the
# value's place in the line)
CASES = [
    ("blank-title", CREATE, {"title": "   "}, None, new_session(title="   "), "session: `title`"),
    ("long-title", CREATE, {"title": "x" * 61}, None, new_session(title="x" * 61), "session: `title`"),
    ("control-in-external-id", CREATE, {"externalId": "a\nb"}, None, new_session(external_id="a\nb"), "session: `external_id`"),
    ("long-external-id", CREATE, {"externalId": LONG}, None, new_session(external_id=LONG), "session: `external_id`"),
    ("metadata-over-64KB", CREATE, {"metadata": BIG_JSON}, None, new_session(metadata=BIG_JSON), "session: `metadata`"),
    ("empty-task-id", START, {"taskId": ""}, None, new_session(turns=[turn("", 1)]), "turns[0]: `task_id`"),
    ("control-in-task-id", START, {"taskId": "a\x7fb"}, None, new_session(turns=[turn("a\x7fb", 1)]), "turns[0]: `task_id`"),
    ("blank-workflow-id", START, {"taskId": "t", "workflowId": "  "}, None,
     new_session(turns=[turn("t", 1, workflow_id="  ")]), "turns[0]: `workflow_id`"),
    ("empty-type", APPEND, {"type": ""}, "events[0]", new_session(events=[event("", "x")]), "session.events[0]: `type`"),
    ("control-in-type", APPEND, {"type": "A\tB"}, "events[0]",
     new_session(turns=[turn("t", 1, event("A\tB", "x"))]), "turns[0].events[0]: `type`"),
    ("long-type", APPEND, {"type": "x" * 65}, "events[0]", new_session(events=[event("x" * 65, "x")]), "session.events[0]: `type`"),
    ("control-in-agent-id", APPEND, {"type": "OUTPUT", "agentId": "a\nb"}, "events[0]",
     new_session(events=[event("OUTPUT", "x", agent_id="a\nb")]), "session.events[0]: `agent_id`"),
    ("empty-dedup-key", APPEND, {"type": "OUTPUT", "dedupKey": ""}, "events[0]",
     new_session(events=[event("OUTPUT", "x", dedup_key="")]), "session.events[0]: `dedup_key`"),
    ("bad-base64", APPEND, {"type": "OUTPUT", "messageBase64": "%%%"}, "events[0]",
     new_session(events=[{"type": "OUTPUT", "message_b64": "%%%", "timestamp": "2025-10-28T06:00:00Z"}]),
     "session.events[0]: `message_b64`"),
    ("content-over-1MiB", APPEND, {"type": "OUTPUT", "message": BIG}, "events[0]",
     new_session(events=[event("OUTPUT", BIG)]), "session.events[0]: `message`"),
    ("payload-over-64KB", APPEND, {"type": "OUTPUT", "payload": BIG_JSON}, "events[0]",
     new_session(events=[event("OUTPUT", "x", payload=BIG_JSON)]), "session.events[0]: `payload`"),
    # kinds.graphql's rules
    ("terminal-kind-without-details", CREATE, {"kind": "TERMINAL"}, None, new_session(kind="TERMINAL"), "session: `kind`"),
    ("red-team-details-on-agent", CREATE, {"redTeam": {"runnerId": "r", "endpoints": ["e"]}}, None,
     new_session(red_team={"runner_id": "r", "endpoints": ["e"]}), "session: `kind`"),
    ("blank-batch-id", CREATE, {"batchId": " "}, None, new_session(batch_id=" "), "session: `batch_id`"),
    ("long-correlation-id", CREATE, {"correlationId": LONG}, None, new_session(correlation_id=LONG), "session: `correlation_id`"),
    ("terminal-columns-0", CREATE, {"kind": "TERMINAL", "terminal": {**TERMINAL, "columns": 0}}, "terminal",
     new_session(kind="TERMINAL", terminal={**TERMINAL, "columns": 0}), "session: `terminal`"),
    ("resource-tags-not-strings", CREATE,
     {"kind": "TERMINAL", "terminal": {**TERMINAL, "resource": {"name": "a", "type": "b", "tags": {"n": 1}}}}, "terminal",
     new_session(kind="TERMINAL", terminal={**TERMINAL, "resource": {"name": "a", "type": "b", "tags": {"n": 1}}}),
     "session: `terminal`"),
    ("control-in-user-email", CREATE, {"kind": "TERMINAL", "terminal": {**TERMINAL, "userEmail": "a\nb"}}, "terminal",
     new_session(kind="TERMINAL", terminal={**TERMINAL, "user_email": "a\nb"}), "session: `terminal`"),
    ("endpoint-twice", CREATE, {"kind": "RED_TEAM", "redTeam": {"runnerId": "r", "endpoints": ["e", "e"]}}, "redTeam",
     new_session(kind="RED_TEAM", red_team={"runner_id": "r", "endpoints": ["e", "e"]}), "session: `red_team`"),
    ("no-endpoint", CREATE, {"kind": "RED_TEAM", "redTeam": {"runnerId": "r", "endpoints": []}}, "redTeam",
     new_session(kind="RED_TEAM", red_team={"runner_id": "r", "endpoints": []}), "session: `red_team`"),
    ("prompt-count-101", CREATE,
     {"kind": "RED_TEAM", "redTeam": {"runnerId": "r", "endpoints": ["e"], "settings": {"contextStrategyPromptCount": 101}}},
     "redTeam", new_session(kind="RED_TEAM", red_team={"runner_id": "r", "endpoints": ["e"],
                                                         "settings": {"context_strategy_prompt_count": 101}}),
     "session: `red_team`"),
    ("control-in-runner-id", CREATE, {"kind": "RED_TEAM", "redTeam": {"runnerId": "a\tb", "endpoints": ["e"]}}, "redTeam",
     new_session(kind="RED_TEAM", red_team={"runner_id": "a\tb", "endpoints": ["e"]}), "session: `red_team`"),
    ("endpoint-on-agent-turn", START, {"taskId": "t", "endpoint": "e"}, None,
     new_session(turns=[turn("t", 1, endpoint="e")]), "turns[0]: `endpoint`"),
    ("cost-7-decimals", COMPLETE, {"status": "COMPLETED", "costUsd": 0.0000001}, None,
     new_session(turns=[turn("t", 1, cost_usd=0.0000001)]), "turns[0]: `cost_usd`"),
    ("cost-negative", COMPLETE, {"status": "COMPLETED", "costUsd": -1}, None,
     new_session(turns=[turn("t", 1, cost_usd=-1)]), "turns[0]: `cost_usd`"),
    ("cost-over-a-million", COMPLETE, {"status": "COMPLETED", "costUsd": 1_000_000.000001}, None,
     new_session(turns=[turn("t", 1, cost_usd=1_000_000.000001)]), "turns[0]: `cost_usd`"),
    ("ends-before-start", COMPLETE, {"status": "COMPLETED", "completedAt": "2000-01-01T00:00:00Z"}, None,
     new_session(turns=[turn("t", 1, completed_at="2000-01-01T00:00:00Z")]), "turns[0]: `completed_at`"),
]


async def mutation_message(engine, org, document: str, given: dict) -> str:
    """The message of the one error the mutation answers `given` with (BAD_USER_INPUT)."""
    if document is CREATE:
        variables = {"input": given}
    else:
        session = await create(engine, org.alice)
        if document is START:
            variables = {"input": {"sessionId": session["id"], **given}}
        elif document is APPEND:
            variables = {"input": {"sessionId": session["id"], "events": [given]}}
        else:
            variables = {"input": {"turnId": (await start(engine, org.alice, session["id"]))["id"], **given}}
    result = await execute(engine, org.alice, document, variables)
    [error] = result.errors
    assert error.extensions["code"] == "BAD_USER_INPUT", error
    return error.message


@pytest.mark.parametrize(("mutation", "given", "mutation_where", "imported", "import_where"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_the_importer_refuses_what_a_mutation_refuses_with_its_message(
    engine, org, mutation, given, mutation_where, imported, import_where
):
    message = await mutation_message(engine, org, mutation, given)
    rule = message if mutation_where is None else message.removeprefix(f"{mutation_where}: ")
    assert rule != message or mutation_where is None, message
    assert rule[0].isupper() and rule.endswith("."), rule  # a sentence naming the rule
    before = [await stored_count(engine, table) for table in (Session, Turn, Event)]

    report, errors = await import_bytes(engine, line(imported))

    assert report.rejected == 1 and report.sessions_created == 0
    assert errors == f"line 1: rejected: {import_where}: {rule}\n"
    assert [await stored_count(engine, table) for table in (Session, Turn, Event)] == before


def test_the_rules_and_the_visibility_module_load_without_graphql():
    """What the importer (and a later ingest without GraphQL) calls brings in neither
    graphql-core nor Strawberry."""
    code = (
        "import sys, sessiongraph.resolvers.rules, sessiongraph.resolvers.visibility, sessiongraph.ingest.importer;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'graphql', 'strawberry'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"
