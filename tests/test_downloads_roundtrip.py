"""The JSON Lines export is the import format itself: a session exported, imported into an
empty database (`sessiongraph import`'s code) and exported again gives the same bytes, for
every kind of session (AGENT; TERMINAL with binary contents and every detail; RED_TEAM with
its chats and settings), on both databases. And the import reads back what the API showed."""

import base64
import io
import uuid

import orjson
import pytest

from sessiongraph.downloads.export import export_file
from sessiongraph.downloads.formats import ExportFormat, Options
from sessiongraph.ingest.importer import import_lines
from sessiongraph.models import create_engine
from sessiongraph.resolvers.context import Viewer
from tests.conftest import event_, fresh_database, ok, store, store_red_team, turn_

ORG = uuid.UUID("0f4d8a52-7a1e-4c3b-9d6e-2b5f8c1a9e70")
USER = uuid.UUID("5b2e9c14-3f6a-4d8b-a1c7-9e0d2f4b6a83")
JSONL = Options(ExportFormat.JSONL)

AGENT_LINE = {
    "external_id": "user-123-chat", "org_id": str(ORG), "user_id": str(USER), "title": "Trip planning",
    "created_at": "2025-10-28T06:00:00Z", "token_budget": 10000, "metadata": {"team": "banking", "n": [1, 2.5, None]},
    "batch_id": "b-1", "correlation_id": "c-1",
    "turns": [
        {"task_id": "task-001", "workflow_id": "wf-1", "user_query": "What is 2+2?", "result": "2 + 2 equals 4.",
         "status": "COMPLETED", "created_at": "2025-10-29T06:00:00Z", "completed_at": "2025-10-29T06:00:08.5Z",
         "tokens_used": 150, "duration_ms": 8000, "cost_usd": 0.0042,
         "events": [
             {"type": "LLM_PROMPT", "agent_id": "simple-agent", "message": "What is 2+2?", "timestamp": "2025-10-29T06:00:01Z"},
             {"type": "LLM_OUTPUT", "agent_id": "simple-agent", "message": "2 + 2 equals 4.", "timestamp": "2025-10-29T06:00:07.123456Z",
              "payload": {"model": "small", "nested": {"a": [True, False]}}, "dedup_key": "span-1"},
         ]},
        {"task_id": "task-002", "status": "RUNNING", "created_at": "2025-10-29T06:01:00Z"},
    ],
    "events": [{"type": "NOTE", "message": "session-level, no turn", "timestamp": "2025-10-28T06:00:00.268Z"}],
}

TERMINAL_LINE = {
    "org_id": str(ORG), "user_id": str(USER), "title": "psql on pgdemo", "created_at": "2024-07-25T15:56:30Z",
    "kind": "TERMINAL", "status": "DONE", "ended_at": "2024-07-25T15:56:35.361Z",
    "batch_id": "batch-abc-123", "correlation_id": "task-12345", "identity_type": "MACHINE",
    "terminal": {"verb": "EXEC", "exit_code": 0, "input": "SELECT NOW()", "columns": 120, "rows": 40,
                 "resource": {"name": "pgdemo", "type": "database", "subtype": "postgres",
                              "resource_name": "my-resource", "tags": {"team": "banking"}},
                 "user_email": "jw@example.com", "user_display_name": "John Wick", "user_subject": "nJ1x",
                 "machine_identity_id": "BF997324",
                 "data_masking": {"error_count": 0, "info_types": {"EMAIL_ADDRESS": 1}, "total_redact_count": 1, "transformed_bytes": 31},
                 "guardrails": [{"rule": "no-drop", "direction": "INPUT", "matched_words": ["DROP"]}],
                 "review": {"status": "APPROVED", "created_at": "2024-07-25T15:56:31Z",
                            "decisions": [{"group": "dba", "status": "APPROVED", "reviewer_email": "a@example.com",
                                           "decided_at": "2024-07-25T15:56:32Z"}]},
                 "ai_analysis": {"risk": "low"}},
    "events": [
        {"type": "INPUT", "message": "SELECT NOW();\r\n", "timestamp": "2024-07-25T15:56:33Z"},
        {"type": "OUTPUT", "message_b64": base64.b64encode(b"\xff\xfe\x00 binary \x1b[0m").decode(), "timestamp": "2024-07-25T15:56:34Z"},
        {"type": "OUTPUT", "message_b64": base64.b64encode(b"nul \x00 inside text").decode(), "timestamp": "2024-07-25T15:56:34.5Z"},
        {"type": "ERROR", "timestamp": "2024-07-25T15:56:35Z"},
    ],
}

RED_TEAM_LINE = {
    "org_id": str(ORG), "user_id": str(USER), "created_at": "2025-01-01T00:00:00Z", "kind": "RED_TEAM",
    "red_team": {"runner_id": "nightly", "endpoints": ["gpt-4o", "llama3-8b"],
                 "settings": {"attack_module": "charswap", "context_strategy": "summary", "context_strategy_prompt_count": 3,
                              "prompt_template": "mmlu", "metric": "refusal", "system_prompt": "You are a helpful assistant."}},
    "turns": [
        {"task_id": "gpt-4o-1", "endpoint": "gpt-4o", "user_query": "q1", "prepared_prompt": "[gpt] q1",
         "red_team_settings": {"attack_module": "homoglyph"}, "result": "a1", "created_at": "2025-01-01T00:00:01Z", "cost_usd": 0.0042},
        {"task_id": "llama-1", "endpoint": "llama3-8b", "user_query": "q1", "red_team_settings": {"metric": None},
         "result": "a2", "created_at": "2025-01-01T00:00:02Z"},
        {"task_id": "gpt-4o-2", "endpoint": "gpt-4o", "user_query": "q2", "created_at": "2025-01-01T00:00:03Z",
         "events": [{"type": "LLM_OUTPUT", "message": "a3", "timestamp": "2025-01-01T00:00:04Z"}]},
    ],
}


async def import_into(url: str, data: bytes) -> None:
    errors = io.StringIO()
    report = await import_lines(url, io.BytesIO(data), errors=errors)
    assert report.rejected == 0, errors.getvalue()


async def exported(engine, session_id) -> bytes:
    out = io.BytesIO()
    await export_file(engine, session_id, JSONL, out)
    return out.getvalue()


async def round_trip(engine, session_id) -> tuple[bytes, bytes]:
    """(the export from `engine`, the export of it imported into an empty database)."""
    first = await exported(engine, session_id)
    async with fresh_database(engine.dialect.name) as url:
        await import_into(url, first)
        other = create_engine(url)
        try:
            second = await exported(other, session_id)
        finally:
            await other.dispose()
    return first, second


async def imported(engine, line: dict) -> uuid.UUID:
    session_id = uuid.uuid4()
    await import_into(str(engine.url.render_as_string(hide_password=False)), orjson.dumps({**line, "session_id": str(session_id)}) + b"\n")
    return session_id


@pytest.mark.parametrize("line", [AGENT_LINE, TERMINAL_LINE, RED_TEAM_LINE], ids=["agent", "terminal", "red_team"])
async def test_an_imported_jsonl_export_exports_the_same_bytes(engine, line):
    session_id = await imported(engine, line)
    first, second = await round_trip(engine, session_id)
    assert first == second
    assert first.count(b"\n") == 1


async def test_the_export_carries_what_the_line_said(engine):
    """What the import stored comes back in the file: details, binary contents, settings."""
    terminal = orjson.loads(await exported(engine, await imported(engine, TERMINAL_LINE)))
    assert terminal["terminal"]["review"]["decisions"][0]["reviewer_email"] == "a@example.com"
    assert terminal["terminal"]["resource"]["tags"] == {"team": "banking"}
    assert [base64.b64decode(e["message_b64"]) for e in terminal["events"] if "message_b64" in e] == [
        b"\xff\xfe\x00 binary \x1b[0m", b"nul \x00 inside text"
    ]
    assert terminal["status"] == "DONE" and terminal["ended_at"] == "2024-07-25T15:56:35.361000Z"
    red_team = orjson.loads(await exported(engine, await imported(engine, RED_TEAM_LINE)))
    turns = {t["task_id"]: t for t in red_team["turns"]}
    assert turns["gpt-4o-1"]["red_team_settings"]["attack_module"] == "homoglyph"
    assert turns["llama-1"]["red_team_settings"]["metric"] is None  # cleared for that turn, and stays so
    assert turns["gpt-4o-1"]["cost_usd"] == 0.0042 and turns["gpt-4o-1"]["endpoint"] == "gpt-4o"


async def test_sessions_written_through_the_writers_round_trip(engine, org):
    """Sessions recorded by the API's writers (not imported), with events of turns and of no
    turn interleaved by seq, a RED_TEAM one with per-turn settings, binary contents."""
    agent = await store(
        engine, org.alice,
        events=[event_("OUTPUT", 1, b"\x00\x01\xff"), event_("NOTE", 2, "plain")],
        turns=[turn_("t1", 3, [event_("LLM_PROMPT", 3.5, "p", agent="a", payload={"k": 1})], tokens_used=7, result="r"),
               turn_("t2", 4, [event_("LLM_OUTPUT", 4.5, "o", agent="b", dedup_key="d")])],
        metadata={"team": "x"}, title="Written",
    )
    # (The writers give a RED_TEAM session without an external id its runner id: as they do.)
    red_team = await store_red_team(engine, org.alice, settings={"metric": "refusal"}, runner_id="nightly", external_id="nightly")
    for session_id in (agent, red_team):
        first, second = await round_trip(engine, session_id)
        assert first == second


async def test_the_reimported_session_reads_as_the_original(engine, org):
    """Through the API: the session imported from its export answers the same document."""
    session_id = await imported(engine, {**AGENT_LINE, "org_id": str(org.id), "user_id": str(org.alice.user_id)})
    query = """query ($id: ID!) { session(id: $id) { sessionId externalId title metadata tokensUsed turnCount costUsd status kind
      events(first: 100) { nodes { seq type agentId message payload turn { taskId } } }
      turns { nodes { turn taskId finalOutput status createdAt completedAt executionTimeMs costUsd agentsInvolved } } } }"""
    before = await ok(engine, org.alice, query, {"id": str(session_id)})
    file = await exported(engine, session_id)
    async with fresh_database(engine.dialect.name) as url:
        await import_into(url, file)
        other = create_engine(url)
        try:
            after = await ok(other, Viewer(org.alice.user_id, org.id, "USER", "USER"), query, {"id": str(session_id)})
        finally:
            await other.dispose()
    assert after == before


async def test_the_exports_keys_are_the_declared_import_format(engine):
    """What the file carries follows from models/fields.py's `imported` marks: a field the
    import format gains is exported too."""
    from sessiongraph.models import fields

    line = orjson.loads(await exported(engine, await imported(engine, AGENT_LINE)))
    assert set(line) == {f.name for f in fields.imported("Session")} | {"terminal", "red_team", "events", "turns"}
    assert set(line["turns"][0]) == {f.name for f in fields.imported("Turn")} | {"events"}
    event_keys = {f.name for f in fields.imported("Event")} | {"message", "message_b64"}
    assert {key for t in line["turns"] for e in t["events"] for key in e} | {k for e in line["events"] for k in e} <= event_keys
    assert {"type", "timestamp", "agent_id", "payload", "dedup_key"} <= {k for e in line["turns"][0]["events"] for k in e}
