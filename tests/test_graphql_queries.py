"""The frontend's documents in graphql_queries/: every file validates against the schema, and
each one this file knows is run with realistic variables on the demo data set. A file added
later is validated at once; give it an entry in RUNS to have it run too."""

import base64
from datetime import datetime
from pathlib import Path

import pytest
from graphql import parse, validate

from sessiongraph.ingest.demo import ALICE, BOB, DEMO_ORG, load_demo
from sessiongraph.resolvers.context import Viewer
from sessiongraph.schema import schema
from tests.conftest import execute

QUERIES = Path(__file__).resolve().parent.parent / "graphql_queries"
DOCUMENTS = sorted(QUERIES.glob("*.graphql"))
DEMO_ADMIN = Viewer(ALICE, DEMO_ORG, "ADMIN", "USER")
DEMO_SESSIONS = 10  # six chats, three terminal sessions, a red-team run


def document(name: str) -> str:
    return (QUERIES / name).read_text()


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_document_validates_against_the_schema(path):
    errors = validate(schema._schema, parse(path.read_text()))
    assert not errors, [e.message for e in errors]


def test_the_frontend_documents_exist():
    assert {"SessionList.graphql", "SessionWithTurns.graphql", "TurnEvents.graphql", "Viewer.graphql"} <= {
        p.name for p in DOCUMENTS
    }


@pytest.fixture
async def demo(engine):
    await load_demo(engine)
    return engine


async def run(engine, name: str, variables: dict | None = None, viewer: Viewer = DEMO_ADMIN) -> dict:
    result = await execute(engine, viewer, document(name), variables)
    assert result.errors is None, result.errors
    return result.data


async def global_id(engine, external_id: str) -> str:
    """A session's global id, found through the list page's filter (external ids look up by
    `session(id:)` only for their owner, and the demo admin is alice)."""
    found = await run(engine, "SessionList.graphql", {"filter": {"externalIds": [external_id]}})
    [edge] = found["sessions"]["edges"]
    return edge["node"]["id"]


async def run_session_list(engine):
    data = (await run(engine, "SessionList.graphql"))["sessions"]
    assert data["totalCount"] == DEMO_SESSIONS
    created = [edge["node"]["createdAt"] for edge in data["edges"]]
    assert len(created) == DEMO_SESSIONS and created == sorted(created, reverse=True)
    assert all(c.endswith("Z") for c in created)
    assert data["pageInfo"]["hasNextPage"] is False

    first = (await run(engine, "SessionList.graphql", {"first": 3}))["sessions"]
    assert len(first["edges"]) == 3 and first["pageInfo"]["hasNextPage"] is True
    second = (await run(engine, "SessionList.graphql", {"first": 3, "after": first["pageInfo"]["endCursor"]}))["sessions"]
    assert [e["node"]["createdAt"] for e in first["edges"] + second["edges"]] == created[:6]
    assert second["pageInfo"]["hasPreviousPage"] is True and second["totalCount"] == DEMO_SESSIONS
    back = (await run(engine, "SessionList.graphql", {"first": None, "last": 3, "before": second["pageInfo"]["startCursor"]}))
    assert [e["node"]["id"] for e in back["sessions"]["edges"]] == [e["node"]["id"] for e in first["edges"]]

    found = (await run(engine, "SessionList.graphql", {"filter": {"search": "TRIP"}}))["sessions"]
    assert [e["node"]["title"] for e in found["edges"]] == ["Trip planning"] and found["totalCount"] == 1
    bobs = (await run(engine, "SessionList.graphql", {"filter": {"userId": str(BOB)}}))["sessions"]
    assert bobs["totalCount"] == 4 and {e["node"]["userId"] for e in bobs["edges"]} == {str(BOB)}
    by_tokens = (await run(engine, "SessionList.graphql", {"orderBy": {"field": "TOKENS_USED", "direction": "DESC"}}))
    tokens = [e["node"]["tokensUsed"] for e in by_tokens["sessions"]["edges"]]
    assert tokens == sorted(tokens, reverse=True) and tokens[0] > 0

    # A USER sees only its own sessions.
    mine = (await run(engine, "SessionList.graphql", viewer=Viewer(BOB, DEMO_ORG, "USER", "USER")))["sessions"]
    assert mine["totalCount"] == 4 and {e["node"]["userId"] for e in mine["edges"]} == {str(BOB)}


async def run_session_with_turns(engine):
    session = (await run(engine, "SessionWithTurns.graphql", {"id": "chat-1"}))["session"]
    assert session["title"] == "Trip planning" and session["turnCount"] == 3
    assert session["metadata"]["platform"] == "agents"
    turns = session["turns"]
    assert turns["totalCount"] == 3 and [t["turn"] for t in turns["nodes"]] == [1, 2, 3]
    assert turns["nodes"][0]["finalOutput"] == "Day 1: Alfama and the castle."
    assert turns["nodes"][0]["agentsInvolved"] == ["planner", "researcher", "writer"]
    assert turns["nodes"][0]["executionTimeMs"] == 7200  # completedAt - createdAt: 0.12 minutes

    # The same session by its global id, one turn a page: numbering does not restart.
    page = (await run(engine, "SessionWithTurns.graphql", {"id": session["id"], "turnsFirst": 1}))["session"]["turns"]
    assert page["pageInfo"]["hasNextPage"] is True
    after = {"id": session["sessionId"], "turnsFirst": 1, "turnsAfter": page["pageInfo"]["endCursor"]}
    nxt = (await run(engine, "SessionWithTurns.graphql", after))["session"]["turns"]
    assert [t["turn"] for t in nxt["nodes"]] == [2]

    # chat-2 (bob's) last turn stored no result: its output is the LLM's.
    last = (await run(engine, "SessionWithTurns.graphql", {"id": await global_id(engine, "chat-2")}))["session"]["turns"]["nodes"][-1]
    assert last["finalOutput"] == "Americas grew 4%."

    red_team = (await run(engine, "SessionWithTurns.graphql", {"id": "runner-nightly"}))["session"]["turns"]["nodes"]
    assert len(red_team) == 6 and {t["status"] for t in red_team} == {"COMPLETED", "FAILED"}
    assert {t["executionTimeMs"] for t in red_team} == {3000}  # the stored duration wins

    assert (await run(engine, "SessionWithTurns.graphql", {"id": "no-such-session"}))["session"] is None


async def run_turn_events(engine):
    turns = (await run(engine, "SessionWithTurns.graphql", {"id": "chat-1"}))["session"]["turns"]["nodes"]
    turn_id = turns[0]["id"]
    turn = (await run(engine, "TurnEvents.graphql", {"turnId": turn_id}))["node"]
    assert turn["taskId"] == "task-0-1" and turn["session"]["title"] == "Trip planning"
    events = turn["events"]["nodes"]
    assert [e["type"] for e in events] == ["LLM_PROMPT", "TOOL_INVOKED", "LLM_OUTPUT"]
    assert turn["events"]["totalCount"] == 3
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and all(e["elapsedMs"] > 0 for e in events)
    output = events[-1]
    assert output["text"] == output["message"] == "Day 1: Alfama and the castle."
    assert base64.b64decode(output["base64"]) == b"Day 1: Alfama and the castle."
    assert output["payload"]["model"] == "small" and output["workflowId"] == "wf-0-1"

    with_partial = (await run(engine, "TurnEvents.graphql", {"turnId": turn_id, "includePartial": True}))["node"]["events"]
    assert [e["type"] for e in with_partial["nodes"]] == ["LLM_PROMPT", "LLM_PARTIAL", "TOOL_INVOKED", "LLM_OUTPUT"]
    tools = (await run(engine, "TurnEvents.graphql", {"turnId": turn_id, "types": ["TOOL_INVOKED"]}))["node"]["events"]
    assert [e["agentId"] for e in tools["nodes"]] == ["researcher"] and tools["totalCount"] == 1

    page = (await run(engine, "TurnEvents.graphql", {"turnId": turn_id, "first": 2}))["node"]["events"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await run(engine, "TurnEvents.graphql", {"turnId": turn_id, "first": 2, "after": page["pageInfo"]["endCursor"]})
    assert [e["seq"] for e in page["nodes"] + rest["node"]["events"]["nodes"]] == seqs


async def run_session_events(engine):
    terminal = await global_id(engine, "gateway-tty-1")
    session = (await run(engine, "SessionEvents.graphql", {"id": terminal}))["session"]
    events = [edge["node"] for edge in session["events"]["edges"]]
    assert [e["type"] for e in events] == ["INPUT", "OUTPUT", "INPUT", "OUTPUT", "ERROR"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5] and all(e["turn"] is None for e in events)
    raw = base64.b64decode(events[3]["base64"])
    assert raw.startswith(b"\x89PNG") and "\ufffd" in events[3]["message"]  # bytes kept, text replaced
    created = datetime.fromisoformat(session["createdAt"])
    assert events[0]["elapsedMs"] == (datetime.fromisoformat(events[0]["timestamp"]) - created).total_seconds() * 1000
    errors = (await run(engine, "SessionEvents.graphql", {"id": terminal, "types": ["ERROR"]}))["session"]
    assert errors["events"]["totalCount"] == 1


async def run_viewer(engine):
    assert (await run(engine, "Viewer.graphql"))["viewer"] == {
        "userId": str(ALICE), "orgId": str(DEMO_ORG), "role": "ADMIN", "identityType": "USER",
    }
    machine = Viewer(BOB, DEMO_ORG, "USER", "MACHINE")
    assert (await run(engine, "Viewer.graphql", viewer=machine))["viewer"]["identityType"] == "MACHINE"


async def run_rename_session(engine):
    variables = {"id": "chat-1", "title": "  Lisbon, day by day\u200b ", "clientMutationId": "r-1"}
    renamed = (await run(engine, "RenameSession.graphql", variables))["renameSession"]
    assert renamed["clientMutationId"] == "r-1" and renamed["session"]["title"] == "Lisbon, day by day"
    assert (await run(engine, "SessionWithTurns.graphql", {"id": "chat-1"}))["session"]["title"] == "Lisbon, day by day"


async def run_delete_session(engine):
    terminal = await global_id(engine, "gateway-tty-1")
    deleted = (await run(engine, "DeleteSession.graphql", {"id": terminal, "clientMutationId": "d-1"}))["deleteSession"]
    assert deleted == {"deletedSessionId": terminal, "clientMutationId": "d-1"}
    assert (await run(engine, "SessionList.graphql"))["sessions"]["totalCount"] == DEMO_SESSIONS - 1
    again = await run(engine, "DeleteSession.graphql", {"id": terminal, "clientMutationId": "d-1"})
    assert again["deleteSession"] == deleted


async def run_terminal_sessions(engine):
    data = (await run(engine, "TerminalSessions.graphql"))["sessions"]
    assert data["totalCount"] == DEMO_SESSIONS
    terminals = [e["node"] for e in data["edges"] if e["node"]["kind"] == "TERMINAL"]
    assert len(terminals) == 3
    [terminal] = [t for t in terminals if t["terminal"]["resource"]["name"] == "prod-db"]
    assert terminal["terminal"]["resource"] == {"name": "prod-db", "type": "database", "subtype": "postgres"}
    assert terminal["terminal"]["verb"] == "EXEC" and terminal["terminal"]["guardrails"] == [] and terminal["status"] == "OPEN"
    assert all(e["node"]["terminal"] is None for e in data["edges"] if e["node"]["kind"] != "TERMINAL")


async def run_terminal_session(engine):
    session = (await run(engine, "TerminalSession.graphql", {"id": await global_id(engine, "gateway-tty-1"), "first": 3}))["session"]
    assert session["kind"] == "TERMINAL" and session["terminal"]["resource"]["name"] == "prod-db"
    events = session["events"]
    assert [e["type"] for e in events["nodes"]] == ["INPUT", "OUTPUT", "INPUT"] and events["totalCount"] == 5
    assert events["nodes"][0]["content"] == "psql -c 'select count(*) from orders'\n" and events["pageInfo"]["hasNextPage"] is True


async def run_red_team_session(engine):
    session = (await run(engine, "RedTeamSession.graphql", {"id": "runner-nightly", "n": 1}))["session"]
    assert session["kind"] == "RED_TEAM" and session["redTeam"]["runnerId"] == "nightly"
    chats = session["redTeam"]["chats"]
    assert [c["endpoint"] for c in chats] == ["openai-gpt4o", "claude-haiku", "llama3-8b"]
    assert [[t["turn"] for t in c["turns"]["nodes"]] for c in chats] == [[1], [3], [5]]
    assert all(c["turns"]["totalCount"] == 2 and c["turns"]["pageInfo"]["hasNextPage"] for c in chats)
    assert chats[2]["turns"]["nodes"][0]["finalOutput"].startswith("SYSTEM PROMPT")


async def run_update_session(engine):
    pending = await global_id(engine, "gateway-tty-3")
    review = {"status": "APPROVED", "decisions": [
        {"group": "dba", "status": "APPROVED", "reviewerEmail": "dba@acme.example", "decidedAt": "2025-10-31T09:00:00Z"}]}
    given = {"id": pending, "terminalReview": review, "batchId": None, "clientMutationId": "u-1"}
    updated = (await run(engine, "UpdateSession.graphql", {"input": given}))["updateSession"]
    assert updated["clientMutationId"] == "u-1" and updated["session"]["batchId"] is None
    assert updated["session"]["terminal"]["review"]["status"] == "APPROVED"
    assert updated["session"]["correlationId"] == "deploy-981"  # left out: unchanged
    run_id = await global_id(engine, "runner-nightly")
    settings = {"id": run_id, "redTeamSettings": {"metric": "toxicity", "contextStrategyPromptCount": None}}
    red_team = (await run(engine, "UpdateSession.graphql", {"input": settings}))["updateSession"]["session"]
    assert red_team["redTeam"]["settings"]["metric"] == "toxicity"
    assert red_team["redTeam"]["settings"]["contextStrategyPromptCount"] == 5
    assert red_team["redTeam"]["settings"]["attackModule"] == "harmful-request" and red_team["terminal"] is None


async def run_end_session(engine):
    terminal = await global_id(engine, "gateway-tty-1")
    variables = {"id": terminal, "endedAt": "2025-11-01T10:00:00Z", "exitCode": 0, "clientMutationId": "e-1"}
    ended = (await run(engine, "EndSession.graphql", variables))["endSession"]
    assert ended["clientMutationId"] == "e-1"
    session = ended["session"]
    assert (session["status"], session["endedAt"], session["terminal"]["exitCode"]) == ("DONE", "2025-11-01T10:00:00Z", 0)
    assert session["terminal"]["streamSize"] == 38 + 31 + 34 + 18 + 31  # the five stream events' bytes
    assert (await run(engine, "EndSession.graphql", variables))["endSession"] == ended


async def run_demo_kinds(engine):
    """The demo's kinds: what each filter of the gateway's and the runner's screens finds."""
    data = (await run(engine, "TerminalSessions.graphql", {"first": 20}))["sessions"]["edges"]
    by_id = {e["node"]["terminal"]["resource"]["name"]: e["node"] for e in data if e["node"]["kind"] == "TERMINAL"}
    assert set(by_id) == {"prod-db", "ssh-bastion", "reports-mysql"}
    assert by_id["ssh-bastion"]["terminal"]["guardrails"][0]["rule"] == "no-rm-rf" and by_id["ssh-bastion"]["status"] == "DONE"
    assert by_id["ssh-bastion"]["identityType"] == "MACHINE" and by_id["ssh-bastion"]["terminal"]["machineIdentityId"]
    assert by_id["reports-mysql"]["terminal"]["review"]["status"] == "PENDING" and by_id["reports-mysql"]["status"] == "READY"
    assert by_id["ssh-bastion"]["batchId"] == by_id["reports-mysql"]["batchId"] == "batch-cleanup-42"
    run_ = (await run(engine, "RedTeamSession.graphql", {"id": "runner-nightly", "n": 2}))["session"]
    turns = [t for c in run_["redTeam"]["chats"] for t in c["turns"]["nodes"]]
    assert {t["redTeamSettings"]["attackModule"] for t in turns} == {"prompt-injection", "harmful-request"}
    assert run_["costUsd"] == 0.0102  # 2 x (0.0042 + 0.0008 + 0.0001)


RUNS = {
    "UpdateSession.graphql": run_update_session,
    "EndSession.graphql": run_end_session,
    "TerminalSessions.graphql": run_terminal_sessions,
    "TerminalSession.graphql": run_terminal_session,
    "RedTeamSession.graphql": run_red_team_session,
    "SessionList.graphql": run_session_list,
    "SessionWithTurns.graphql": run_session_with_turns,
    "TurnEvents.graphql": run_turn_events,
    "SessionEvents.graphql": run_session_events,
    "Viewer.graphql": run_viewer,
    "RenameSession.graphql": run_rename_session,
    "DeleteSession.graphql": run_delete_session,
}


@pytest.mark.parametrize("name", sorted(RUNS))
async def test_document_runs_on_the_demo_data(demo, name):
    assert (QUERIES / name).exists(), f"RUNS names {name}, which graphql_queries/ does not have"
    await RUNS[name](demo)


async def test_the_demo_records_terminal_and_red_team_sessions(demo):
    await run_demo_kinds(demo)


@pytest.mark.parametrize(
    "name, external_id, links",
    [
        ("SessionWithTurns.graphql", "chat-1", {"csvDownload": "text/csv", "jsonDownload": "application/json", "jsonlDownload": "application/x-ndjson"}),
        ("TerminalSession.graphql", "gateway-tty-1", {"castDownload": "application/x-asciicast", "textDownload": "text/plain",
                                                      "csvDownload": "text/csv", "jsonlDownload": "application/x-ndjson"}),
        ("RedTeamSession.graphql", "runner-nightly", {"csvDownload": "text/csv", "jsonlDownload": "application/x-ndjson"}),
    ],
)
async def test_session_pages_give_the_download_links_a_frontend_shows(demo, name, external_id, links):
    """With `withDownloads`, a session page carries its download menu's links (export.graphql);
    without, none is made. Each link downloads its file without an API key."""
    from sessiongraph.downloads import signing
    from sessiongraph.gate.auth import create_key
    from tests.live_server import app_client

    signing.forget_secrets()  # each test empties the tables, the deployment's secret included
    key_id, _ = await create_key(demo, DEMO_ORG, ALICE, "ADMIN")
    admin = Viewer(ALICE, DEMO_ORG, "ADMIN", "USER", key_id)
    session_id = await global_id(demo, external_id)
    plain = (await run(demo, name, {"id": session_id}, admin))["session"]
    assert not set(links) & set(plain)
    page = (await run(demo, name, {"id": session_id, "withDownloads": True}, admin))["session"]
    async with app_client(demo) as client:
        for alias, media_type in links.items():
            response = await client.get(page[alias]["url"])
            assert response.status_code == 200 and response.headers["content-type"].startswith(media_type), alias
            assert response.content, alias
