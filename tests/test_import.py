"""`sessiongraph import`: JSON Lines, one session a line, stored whole or not at all, rejected
lines reported with their number and reason, idempotent, streamed."""

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import uuid

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite

from sessiongraph.ingest import importer
from sessiongraph.ingest.importer import _plain_event, import_lines, parse_event
from sessiongraph.models import Event, Session, Turn, User
from sessiongraph.models import fields as declared_fields
from sessiongraph.models.recording import append_events, store_session
from sessiongraph.models.types import UTCDateTime
from sessiongraph.resolvers.context import Viewer
from tests.conftest import count_statements, ok

ORG = uuid.UUID("0f4d8a52-7a1e-4c3b-9d6e-2b5f8c1a9e70")
USER = uuid.UUID("5b2e9c14-3f6a-4d8b-a1c7-9e0d2f4b6a83")
ADMIN = Viewer(uuid.uuid4(), ORG, "ADMIN", "USER")

# The contract README's example line, with its elisions filled in.
EXAMPLE = {
    "session_id": "a0c2b1e2-fd3e-4567-890a-bcdef1234567", "external_id": "user-123-chat",
    "org_id": str(ORG), "user_id": str(USER), "title": "Trip planning",
    "created_at": "2025-10-28T06:00:00Z", "token_budget": 10000, "metadata": {"team": "banking"},
    "turns": [
        {"task_id": "task-001", "workflow_id": "wf-1", "user_query": "What is 2+2?",
         "result": "2 + 2 equals 4.", "status": "COMPLETED",
         "created_at": "2025-10-29T06:00:00Z", "completed_at": "2025-10-29T06:00:08Z",
         "tokens_used": 150, "duration_ms": 8000,
         "events": [
             {"type": "LLM_PROMPT", "agent_id": "simple-agent", "message": "What is 2+2?", "timestamp": "2025-10-29T06:00:01Z"},
             {"type": "LLM_OUTPUT", "agent_id": "simple-agent", "message": "2 + 2 equals 4.", "timestamp": "2025-10-29T06:00:07Z",
              "payload": {"model": "small"}},
         ]},
    ],
    "events": [
        {"type": "OUTPUT", "message_b64": "aGVsbG8gd29ybGQ=", "timestamp": "2025-10-28T06:00:00.268Z"},
    ],
}

SESSION = """query ($id: ID!) { session(id: $id) {
  sessionId externalId title userId createdAt lastActivityAt turnCount tokensUsed tokenBudget metadata
  events(includePartial: true, first: 100) { nodes { seq type agentId message base64: content(encoding: BASE64) payload turn { taskId } } }
  turns(first: 100) { nodes { turn taskId workflowId userQuery finalOutput status tokensUsed executionTimeMs agentsInvolved } }
} }"""


def line(session: dict | None = None, **changes) -> bytes:
    return orjson.dumps({**(session or EXAMPLE), **changes})


def new_session(**changes) -> dict:
    """A valid session line of ORG/USER with a fresh id and no turns or events."""
    return {"session_id": str(uuid.uuid4()), "org_id": str(ORG), "user_id": str(USER),
            "created_at": "2025-10-28T06:00:00Z", **changes}


def turn(task_id: str, minute: int, *events: dict, **changes) -> dict:
    return {"task_id": task_id, "created_at": f"2025-10-28T06:{minute:02d}:00Z", "events": list(events), **changes}


def event(type_: str, message: str, second: int = 1, **changes) -> dict:
    return {"type": type_, "message": message, "timestamp": f"2025-10-28T06:00:{second:02d}Z", **changes}


async def import_bytes(engine, *lines: bytes, **kw):
    """Imports the lines; returns the report and what was written to standard error."""
    errors = io.StringIO()
    report = await import_lines(url_of(engine), io.BytesIO(b"\n".join(lines) + b"\n"), errors=errors, engine=engine, **kw)
    return report, errors.getvalue()


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


async def read(engine, session_id) -> dict:
    return (await ok(engine, ADMIN, SESSION, {"id": str(session_id)}))["session"]


async def counts(engine) -> tuple[int, int, int, int]:
    async with engine.connect() as connection:
        return tuple([
            await connection.scalar(select(func.count()).select_from(table)) for table in (User, Session, Turn, Event)
        ])


def cli(url: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sessiongraph.cli", "--database-url", url, *args],
        input=stdin, capture_output=True, timeout=300,
    )


async def test_contract_example_line_imports_through_the_command_line(engine):
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
        f.write(line() + b"\n")
    try:
        done = cli(url_of(engine), "import", f.name)
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, done.stderr
    assert b"stored 1 new sessions" in done.stdout and b"1 turns, 3 events" in done.stdout

    session = await read(engine, EXAMPLE["session_id"])
    assert session["externalId"] == "user-123-chat" and session["title"] == "Trip planning"
    assert session["userId"] == str(USER) and session["createdAt"] == "2025-10-28T06:00:00Z"
    assert (session["turnCount"], session["tokensUsed"], session["tokenBudget"]) == (1, 150, 10000)
    assert session["metadata"] == {"team": "banking"}
    assert session["lastActivityAt"] == "2025-10-29T06:00:08Z"
    [stored_turn] = session["turns"]["nodes"]
    assert stored_turn == {
        "turn": 1, "taskId": "task-001", "workflowId": "wf-1", "userQuery": "What is 2+2?",
        "finalOutput": "2 + 2 equals 4.", "status": "COMPLETED", "tokensUsed": 150,
        "executionTimeMs": 8000, "agentsInvolved": ["simple-agent"],
    }
    events = session["events"]["nodes"]
    # The session's own events first, then the turn's, in the order of the file.
    assert [(e["seq"], e["type"]) for e in events] == [(1, "OUTPUT"), (2, "LLM_PROMPT"), (3, "LLM_OUTPUT")]
    assert events[0]["turn"] is None and events[0]["message"] == "hello world"
    assert events[0]["base64"] == "aGVsbG8gd29ybGQ="
    assert events[2]["turn"] == {"taskId": "task-001"} and events[2]["payload"] == {"model": "small"}


async def test_message_is_text_and_message_b64_raw_bytes(engine):
    raw = b"\x89PNG\r\n\x1a\n\xff\xfe"
    session = new_session(events=[
        event("OUTPUT", "héllo ✓", 1),
        {"type": "OUTPUT", "message_b64": base64.b64encode(raw).decode(), "timestamp": "2025-10-28T06:00:02Z"},
        {"type": "OUTPUT", "timestamp": "2025-10-28T06:00:03Z"},
    ])
    report, errors = await import_bytes(engine, line(session))
    assert (report.rejected, errors) == (0, "")
    text, binary, empty = (await read(engine, session["session_id"]))["events"]["nodes"]
    assert text["message"] == "héllo ✓" and base64.b64decode(text["base64"]) == "héllo ✓".encode()
    assert base64.b64decode(binary["base64"]) == raw and "\ufffd" in binary["message"]
    assert empty["message"] is None and empty["base64"] is None


MISSING = object()


def without(obj: dict, key: str) -> dict:
    return {k: v for k, v in obj.items() if k != key}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"org_id": ', "not valid JSON"),
        (b'["a", "list"]', "must be a JSON object"),
        (line(without(new_session(), "org_id")), "`org_id` is required"),
        (line(without(new_session(), "user_id")), "`user_id` is required"),
        (line(without(new_session(), "created_at")), "`created_at` is required"),
        (line(new_session(user_id="not-a-uuid")), "`user_id` is not a UUID"),
        (line(new_session(created_at="yesterday")), "`created_at` is not an ISO-8601 timestamp"),
        (line(new_session(turns=[without(turn("t1", 1), "task_id")])), "`task_id` is required"),
        (line(new_session(turns=[without(turn("t1", 1), "created_at")])), "`created_at` is required"),
        (line(new_session(turns=[turn("t1", 1, without(event("LLM_OUTPUT", "x"), "type"))])), "`type` is required"),
        (line(new_session(events=[without(event("OUTPUT", "x"), "timestamp")])), "`timestamp` is required"),
        (line(new_session(events=[event("OUTPUT", "x", message_b64="eA==")])), "An event has both a message and a base64 message"),
        (line(new_session(events=[{"type": "OUTPUT", "message_b64": "%%%", "timestamp": "2025-10-28T06:00:00Z"}])), "not base64"),
        (line(new_session(events=[{"type": "OUTPUT", "message_b64": "é", "timestamp": "2025-10-28T06:00:00Z"}])), "not base64"),
        (line(new_session(events=[event("OUTPUT", "x"), ["not", "an", "object"]])), "events[1]: an event must be an object"),
        (line(new_session(turns=[turn("t1", 1, event("OUTPUT", "x", timestamp="2025-13-01T00:00:00Z"))])), "turns[0].events[0]: `timestamp` is not an ISO-8601"),
        (line(new_session(events=[event("OUTPUT", "x", agent_id=7)])), "`agent_id` must be str"),
        (line(new_session(turns=[turn("t1", 1, status="DONE")])), "`status` must be one of"),
        (line(new_session(token_budget=-1)), "`token_budget` must be between 0 and 2147483647"),
        (line(new_session(metadata=[1, 2])), "`metadata` must be an object"),
        (line(new_session(title="   ")), "title"),
    ],
)
async def test_a_line_breaking_a_rule_is_rejected_with_its_number_and_reason(engine, bad, reason):
    before = await counts(engine)
    good = new_session()
    report, errors = await import_bytes(engine, line(good), bad, line(new_session()))
    assert (report.lines, report.rejected, report.sessions_created) == (3, 1, 2)
    [message] = errors.splitlines()
    assert message.startswith("line 2: rejected:") and reason in message, message
    assert (await counts(engine))[1] == before[1] + 2


async def test_a_line_with_a_bad_event_in_its_second_turn_stores_nothing_of_it(engine):
    broken = new_session(turns=[
        turn("t1", 1, event("LLM_OUTPUT", "fine")),
        turn("t2", 2, event("LLM_OUTPUT", "fine"), {"type": "LLM_OUTPUT", "message": "no timestamp"}),
    ])
    report, errors = await import_bytes(engine, line(new_session()), line(broken), line(new_session()))
    assert report.rejected == 1 and report.sessions_created == 2
    assert errors.startswith("line 2: rejected: turns[1].events[1]: `timestamp` is required")
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).where(Session.id == uuid.UUID(broken["session_id"]))) == 0
        assert await connection.scalar(select(func.count()).select_from(Turn)) == 0


async def test_a_line_failing_in_the_database_in_its_second_turn_stores_nothing_of_it(engine):
    """Parsed fine, but the second turn's events repeat a dedup key: the line's transaction
    is rolled back, the first turn with it."""
    broken = new_session(turns=[
        turn("t1", 1, event("LLM_OUTPUT", "fine")),
        turn("t2", 2, event("LLM_OUTPUT", "a", dedup_key="k"), event("LLM_OUTPUT", "b", dedup_key="k")),
    ])
    before = await counts(engine)
    report, errors = await import_bytes(engine, line(broken), line(new_session(turns=[turn("ok", 1)])))
    assert (report.rejected, report.sessions_created) == (1, 1)
    assert errors.startswith("line 1: rejected:")
    after = await counts(engine)
    assert (after[1] - before[1], after[2] - before[2], after[3] - before[3]) == (1, 1, 0)


async def test_the_command_reports_rejected_lines_on_stderr_and_exits_non_zero(engine):
    url = url_of(engine)
    lines = [line(new_session()), b"not json", line(new_session()), line(without(new_session(), "org_id"))]
    done = cli(url, "import", "-", stdin=b"\n".join(lines) + b"\n")
    assert done.returncode != 0
    stderr = done.stderr.decode()
    assert "line 2: rejected: not valid JSON" in stderr and "line 4: rejected: session: `org_id` is required" in stderr
    assert b"stored 2 new sessions" in done.stdout and b"2 of 4 lines rejected" in done.stdout
    assert (await counts(engine))[1] == 2


async def test_seq_follows_the_file_and_new_turns_come_after_stored_events(engine):
    session = new_session(
        events=[event("INPUT", "a", 1), event("OUTPUT", "b", 2)],
        turns=[turn("t1", 1, event("LLM_OUTPUT", "c", 3)), turn("t2", 2, event("LLM_PROMPT", "d", 4), event("LLM_OUTPUT", "e", 5))],
    )
    await import_bytes(engine, line(session))
    stored = (await read(engine, session["session_id"]))["events"]["nodes"]
    assert [(e["seq"], e["message"]) for e in stored] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]

    # The same session again with a third turn (and the old ones, which are skipped).
    session["turns"].append(turn("t3", 3, event("LLM_PROMPT", "f", 6), event("LLM_OUTPUT", "g", 7)))
    report, _ = await import_bytes(engine, line(session))
    assert (report.sessions_created, report.sessions_updated, report.turns, report.events) == (0, 1, 1, 2)
    again = await read(engine, session["session_id"])
    assert [(e["seq"], e["message"]) for e in again["events"]["nodes"]] == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f"), (7, "g"),
    ]
    assert [t["turn"] for t in again["turns"]["nodes"]] == [1, 2, 3] and again["turnCount"] == 3


async def test_importing_a_file_twice_stores_it_once(engine):
    lines = [line(), line(new_session(turns=[turn("t1", 1, event("LLM_OUTPUT", "x"))]))]
    first, _ = await import_bytes(engine, *lines)
    stored = await counts(engine)
    assert first.sessions_created == 2
    second, errors = await import_bytes(engine, *lines)
    assert (second.sessions_created, second.sessions_updated, second.turns, second.events, second.rejected) == (0, 0, 0, 0, 0)
    assert errors == "" and await counts(engine) == stored


async def test_same_owner_and_external_id_is_the_same_session(engine):
    """Without a session id, the owner's external id finds the stored session; nothing but
    new turns is taken from the new line."""
    original = without(new_session(external_id="chat-7", title="First", turns=[turn("t1", 1)]), "session_id")
    await import_bytes(engine, line(original))
    changed = {**original, "title": "Renamed", "token_budget": 5, "turns": [turn("t1", 1), turn("t2", 2)]}
    report, _ = await import_bytes(engine, line(changed))
    assert (report.sessions_created, report.sessions_updated, report.turns) == (0, 1, 1)
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Session.title, Session.token_budget, Session.turn_count))).all()
    assert [tuple(r) for r in rows] == [("First", None, 2)]

    # Another owner's session with the same external id is another session.
    other_user = without(new_session(user_id=str(uuid.uuid4()), external_id="chat-7"), "session_id")
    assert (await import_bytes(engine, line(other_user)))[0].sessions_created == 1


async def test_a_user_of_another_organisation_is_rejected(engine):
    await import_bytes(engine, line(new_session()))
    elsewhere = new_session(org_id=str(uuid.uuid4()), turns=[turn("t1", 1)])
    report, errors = await import_bytes(engine, line(elsewhere))
    assert report.rejected == 1
    assert errors.startswith(f"line 1: rejected: user {USER} belongs to another organisation")
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).where(Session.id == uuid.UUID(elsewhere["session_id"]))) == 0


async def test_a_session_id_of_another_owner_is_rejected(engine):
    session = new_session()
    await import_bytes(engine, line(session))
    report, errors = await import_bytes(engine, line({**session, "user_id": str(uuid.uuid4()), "turns": [turn("t1", 1)]}))
    assert report.rejected == 1 and "belongs to another owner" in errors
    assert (await counts(engine))[2] == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (new_session(turns=[turn("t" * 300, 1)]), "`task_id`"),
        (new_session(turns=[turn("t1", 1, workflow_id="w" * 300)]), "`workflow_id`"),
        (new_session(events=[event("T" * 65, "x")]), "`type`"),
        (new_session(events=[event("OUTPUT", "x", agent_id="a" * 300)]), "`agent_id`"),
        (new_session(token_budget=2**40), "`token_budget`"),
        (new_session(turns=[turn("t1", 1, tokens_used=2**40)]), "`tokens_used`"),
        (new_session(turns=[turn("t1", 1, user_query="a\u0000b")]), "`user_query`: The user query holds the character U+0000 (NUL)"),
        (new_session(metadata={"k": "a\u0000"}), "`metadata`: The metadata holds the character U+0000 (NUL)"),
        (new_session(events=[event("OUTPUT", "x", payload={"a\u0000": 1})]), "`payload`: The payload holds the character U+0000 (NUL)"),
        (new_session(events=[event("OUTPUT", "a\u0000b")]), "`message`: The message holds the character U+0000 (NUL)"),
        (new_session(turns=[turn("t1", 1, event("OUTPUT", "x", dedup_key="k\u0000"))]), "`dedup_key`: The dedup key must be non-empty and have no control character"),
        (new_session(events=[event("OUTPUT", "x", dedup_key="k" * 300)]), "`dedup_key`"),
    ],
)
async def test_a_value_postgresql_cannot_store_is_a_rejected_line_on_every_database(engine, bad, reason):
    report, errors = await import_bytes(engine, line(bad), line(new_session()))
    assert (report.rejected, report.sessions_created) == (1, 1)
    assert errors.startswith("line 1: rejected:") and reason in errors, errors


async def test_a_session_whose_tokens_would_pass_int_is_rejected_and_the_import_goes_on(engine):
    """Two turns of 2**31-1 tokens each are fine one by one, but their sum passes the
    session's Int: rejected alike on both databases (SQLite's integers would take it,
    PostgreSQL's INTEGER not), by the rule completeTurn applies."""
    big = new_session(turns=[turn("t1", 1, tokens_used=2**31 - 1), turn("t2", 2, tokens_used=2**31 - 1)])
    report, errors = await import_bytes(engine, line(big), line(new_session()))
    assert (report.lines, report.rejected, report.sessions_created) == (2, 1, 1)
    assert errors.startswith("line 1: rejected: session: `turns`: The session's tokens used"), errors
    assert (await counts(engine))[1:3] == (1, 0)


def varied_events(count: int, second: int = 0, tag: str = "") -> list[dict]:
    """Events of every shape the import takes: text, raw bytes or no message; timestamps with
    and without an offset or fraction; JSON payloads of each kind; agents and dedup keys."""
    payloads = [None, {"step": 1, "ok": True, "nested": {"list": [1, 2.5, "✓"]}}, [1, "two"], "text", 3, 2.5, False]
    stamps = ["2025-10-28T06:{m:02d}:{s:02d}Z", "2025-10-28T08:{m:02d}:{s:02d}.5+02:00",
              "2025-10-28T06:{m:02d}:{s:02d}.123456", "2025-10-28T01:{m:02d}:{s:02d}.000001-05:00",
              "2025-10-28T06:{m:02d}:{s:02d}.000000Z", "2025-10-28T06:{m:02d}:{s:02d}.987654Z"]
    events = []
    for i in range(count):
        e = {"type": ("LLM_OUTPUT", "TOOL_INVOKED", "OUTPUT")[i % 3],
             "timestamp": stamps[i % len(stamps)].format(m=(second + i) // 60 % 60, s=(second + i) % 60)}
        if i % 4 == 1:
            e["message_b64"] = base64.b64encode(bytes([i % 256, 0, 255])).decode()
        elif i % 4 != 3:
            e["message"] = f"message {i} é ✓ " + "\\\\u0000" * (i == 7)  # a backslash, then u0000: not a NUL
        if (payload := payloads[i % len(payloads)]) is not None:
            e["payload"] = payload
        if i % 5:
            e["agent_id"] = f"agent-{i % 3}"
        if i % 6 == 0:
            e["dedup_key"] = f"key-{tag}{i}"
        events.append(e)
    return events


async def stored_rows(engine, session_id: str) -> dict:
    """A session's rows as the driver reads them back (SQLite: the stored text, numbers and
    bytes themselves), without the ids the database gives: turn ids become positions."""
    key = uuid.UUID(session_id)
    async with engine.connect() as connection:
        bound = connection.dialect.name == "sqlite" and key.hex or key
        marker = "?" if connection.dialect.name == "sqlite" else "$1"

        async def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in (await connection.exec_driver_sql(sql.replace("?", marker), (bound,))).all()]

        session = await rows("SELECT org_id, user_id, title, token_budget, metadata, created_at, updated_at,"
                             " last_activity_at, turn_count, tokens_used, event_count FROM sessions WHERE id = ?")
        turns = await rows("SELECT position, task_id, workflow_id, user_query, result, status, created_at, completed_at,"
                           " tokens_used, duration_ms, fallback_output, agents FROM turns WHERE session_id = ? ORDER BY position")
        events = await rows("SELECT t.position, e.seq, e.type, e.workflow_id, e.agent_id, e.content, e.timestamp, e.payload,"
                            " e.dedup_key FROM events e LEFT JOIN turns t ON t.id = e.turn_id WHERE e.session_id = ? ORDER BY e.seq")
    return {"session": session, "turns": turns, "events": events}


async def test_a_session_imported_whole_is_stored_as_the_incremental_writers_store_it(engine):
    """The import stores a new session's events many rows a statement, their values converted
    column by column; the writers that add to a stored session go through SQLAlchemy's own
    insert, row by row. The same session, imported whole (in a batch, with others) or built
    up by those writers (its line without turns and events, then its events appended, then
    its turns added by importing the line again), is stored with the same values: on SQLite
    the same text, numbers and bytes. So is it stored alone, line by line, as the importer
    stores the lines of a batch that is not all new sessions."""
    whole, built, alone = (
        new_session(external_id=name, title="Varied", token_budget=5, metadata={"k": ["v", 1]},
                    events=varied_events(150),
                    turns=[turn(f"t{n}", n, *varied_events(n * 40, n, f"t{n}-"), workflow_id=f"wf-{n}", tokens_used=n,
                                completed_at=f"2025-10-28T07:0{n}:00+00:30")
                           for n in range(4)])
        for name in ("whole", "built", "alone")
    )
    others = [new_session(events=varied_events(4)) for _ in range(3)]  # 398 events: 4 statements of 99 rows, and 2 rows
    report, errors = await import_bytes(engine, line(others[0]))  # the user is known: the rest is one batch
    report, errors = await import_bytes(engine, line(whole), *map(line, others[1:]))
    assert (report.sessions_created, errors) == (3, "")

    skeleton = {**built, "turns": [], "events": []}
    report, errors = await import_bytes(engine, line(skeleton))
    async with engine.begin() as connection:
        await append_events(connection, uuid.UUID(built["session_id"]), None,
                            [parse_event(e, "event") for e in built["events"]])
    report, errors = await import_bytes(engine, line(built))
    assert (report.sessions_updated, report.events, errors) == (1, 240, "")

    async with engine.begin() as connection:
        assert (await store_session(connection, importer.parse_session(line(alone)))).created

    whole_rows, built_rows = await stored_rows(engine, whole["session_id"]), await stored_rows(engine, built["session_id"])
    assert len(whole_rows["events"]) == 150 + 240
    assert whole_rows == built_rows == await stored_rows(engine, alone["session_id"])


def test_the_one_pass_event_check_takes_an_event_as_the_full_check_does():
    """`parse_event` checks a field at a time, and says what is wrong; the common event is
    taken in one pass instead (a line without NUL characters), which must give the same."""
    events = varied_events(120) + [
        {"type": "OUTPUT", "timestamp": "2025-10-28"},  # a date alone is midnight
        {"type": "OUTPUT", "timestamp": "2025-10-28T06:00:00,5Z", "message": ""},
        {"type": "T" * 64, "timestamp": "2025-10-28T06:00:00Z", "agent_id": "a" * 255, "dedup_key": "k" * 255},
        {"type": "OUTPUT", "timestamp": "2025-W44-2T06:00:00.000000Z"},  # a week date: not cut as text
        {"type": "OUTPUT", "timestamp": "2025-10-28 06:00:00.000000Z"},
        {"type": "OUTPUT", "timestamp": "2025-10-28T06:00:00,000000Z"},
    ]
    assert [_plain_event(e) for e in events] == [parse_event(e, "event") for e in events]
    # The SQLite text it cuts from a timestamp, where it does, is the one SQLite's DateTime makes.
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    texts = [(e.sqlite_timestamp, process(e.timestamp)) for e in map(_plain_event, events)]
    assert sum(text is not None for text, _ in texts) >= 40
    assert all(text == stored for text, stored in texts if text is not None)


def test_titles_and_external_ids_follow_the_mutations_rules_without_graphql():
    """The importer applies the mutations' rules to titles and external ids, and importing
    it loads no GraphQL (a twentieth of a second of every import's start-up)."""
    assert parse_session_fields(title=" Padded ") == ("Padded", None)
    assert parse_session_fields(external_id="x" * 60, title="y" * 60) == ("y" * 60, "x" * 60)
    assert parse_session_fields(title="zero\u200bwidth", external_id="caf\u00e9") == ("zerowidth", "caf\u00e9")
    for bad in ({"title": "x" * 61}, {"title": "\u200b"}, {"external_id": "x" * 256}, {"external_id": "a\tb"}):
        with pytest.raises(importer.LineError):
            parse_session_fields(**bad)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sessiongraph.ingest.importer; print('graphql' in sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert loaded == "False"


def parse_session_fields(**fields) -> tuple:
    parsed = importer.parse_session(line(new_session(**fields)))
    return parsed.title, parsed.external_id


async def test_lines_are_stored_in_bounded_batches_as_they_are_read(engine):
    """The importer holds at most one batch of lines: each batch is written before the line
    after it is read, so a file of any size runs in the memory of one batch."""
    stored_when_read: list[int] = []

    def stream(counter):
        for n in range(5):
            stored_when_read.append(sum(s.startswith("INSERT INTO sessions") for s in counter.statements))
            yield line(new_session(user_id=str(uuid.uuid4()), events=[event("OUTPUT", f"line {n}")]))

    with count_statements(engine) as counter:
        report = await import_lines(url_of(engine), stream(counter), errors=io.StringIO(), batch_lines=2, engine=engine)
    assert report.sessions_created == 5
    # Lines 0-1 (of users never seen, added with them) are stored before line 2 is read,
    # lines 2-3 before line 4: one INSERT a batch.
    assert stored_when_read == [0, 0, 1, 1, 2]


async def test_users_never_seen_join_the_organisation_of_their_first_line(engine):
    """A batch of new sessions adds the users it is the first to name, as a line at a time
    would: in the organisation of their first line, at its creation time. A user named with
    two organisations in one batch: the second line is rejected, the others stored."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    lines = [
        new_session(user_id=first, created_at="2025-10-28T07:00:00Z"),
        new_session(user_id=second, created_at="2025-10-28T08:00:00+01:00"),
        new_session(user_id=first, created_at="2025-10-28T05:00:00Z"),
        new_session(user_id=second, org_id=str(uuid.uuid4())),
    ]
    report, errors = await import_bytes(engine, *map(line, lines))
    assert (report.sessions_created, report.rejected) == (3, 1)
    assert errors.startswith(f"line 4: rejected: user {second} belongs to another organisation")
    report, errors = await import_bytes(engine, *map(line, lines[:3]))  # a batch alone
    assert (report.sessions_created, report.rejected, errors) == (0, 0, "")
    async with engine.connect() as connection:
        users = (await connection.execute(
            select(User.id, User.org_id, User.created_at).where(User.id.in_([uuid.UUID(first), uuid.UUID(second)]))
        )).all()
    assert sorted((str(u.id), u.org_id, u.created_at.isoformat()) for u in users) == sorted([
        (first, ORG, "2025-10-28T07:00:00+00:00"), (second, ORG, "2025-10-28T07:00:00+00:00"),
    ])


def test_the_columns_lengths_the_import_checks_are_the_tables():
    assert (importer.TASK_ID, importer.WORKFLOW_ID) == (Turn.__table__.c.task_id.type.length, Turn.__table__.c.workflow_id.type.length)
    assert (importer.EVENT_TYPE, importer.AGENT_ID, importer.DEDUP_KEY) == tuple(
        Event.__table__.c[name].type.length for name in ("type", "agent_id", "dedup_key")
    )


def test_the_console_script_and_the_importer_load_no_sqlalchemy_until_used():
    """The console script's start-up: its commands that need no database (and the importer
    until it opens one) spare loading SQLAlchemy, about a third of a second."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sessiongraph.cli, sessiongraph.ingest.importer; print('sqlalchemy' in sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert loaded == "False"


async def test_a_batch_with_a_bad_line_stores_every_other_line(engine):
    """A batch the database refuses is stored again line by line: the bad line alone is
    rejected, with its number."""
    first = new_session()
    report, _ = await import_bytes(engine, line(first))
    twin = new_session(session_id=str(uuid.uuid4()))
    clash = new_session(session_id=first["session_id"], user_id=str(uuid.uuid4()))  # another owner's id
    report, errors = await import_bytes(engine, line(twin), line(clash), line(new_session()))
    assert (report.sessions_created, report.rejected) == (2, 1)
    assert errors.startswith("line 2: rejected:"), errors


async def test_progress_is_reported_on_long_imports(engine):
    lines = [line(new_session()) for _ in range(3)]
    report, errors = await import_bytes(engine, *lines, progress_every=0, batch_lines=1)
    progress = errors.splitlines()
    assert len(progress) == 3 and progress[-1].startswith("... line 3: stored 3 new sessions")
    quiet, errors = await import_bytes(engine, line(new_session()))
    assert errors == ""


# The console script, then its peak resident memory. VmHWM, not getrusage: ru_maxrss survives
# exec on Linux and would report the forking test process's own peak.
PEAK_RSS = """
import runpy, sys
sys.argv = ["sessiongraph", *sys.argv[1:]]
try:
    runpy.run_module("sessiongraph.cli", run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print("peak-rss-kb", peak, file=sys.stderr)
"""


def generated(lines: int) -> bytes:
    """`lines` sessions of ~40 KB each: a turn with two 20 KB events."""
    filler = "x" * 20_000
    return b"".join(
        line(new_session(turns=[turn("t1", 1, *(event("LLM_OUTPUT", f"{n}-{i} {filler}") for i in range(2)))])) + b"\n"
        for n in range(lines)
    )


def peak_rss_kb(url: str, data: bytes) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "--database-url", url, "import", "-"],
        input=data, capture_output=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stderr.decode().rsplit("peak-rss-kb", 1)[1].split()[0])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from Linux's /proc")
def test_import_memory_does_not_grow_with_the_file():
    """A 40 MB file from standard input costs no more memory than a 4 MB one. (SQLite only:
    the importer's memory does not depend on the database.)"""
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{directory}/import.db"
        small, large = generated(100), generated(1000)
        assert len(large) > 40_000_000
        small_kb, large_kb = peak_rss_kb(url, small), peak_rss_kb(url, large)
    # Reading the whole file at once would cost at least its 40 MB (and its parsed form more).
    assert large_kb - small_kb < 15_000, (small_kb, large_kb)
    print(json.dumps({"peak_rss_kb": {"100 lines": small_kb, "1000 lines": large_kb}}))


def _line_with(type_name: str, key: str, value) -> bytes:
    if type_name == "Session":
        return line(new_session(**{key: value}))
    if type_name == "Turn":
        return line(new_session(turns=[{**turn("t1", 1), key: value}]))
    return line(new_session(events=[{**event("OUTPUT", "x"), key: value}]))


IMPORTABLE = [(t, f.name) for t in ("Session", "Turn", "Event") for f in declared_fields.imported(t)]


@pytest.mark.parametrize(("type_name", "key"), IMPORTABLE)
async def test_every_field_declared_importable_is_read_and_checked(engine, type_name, key):
    """The import format's keys are the declared fields' (models/fields.py): a line giving any
    of them a value of the wrong kind is rejected, naming the key; a field declared
    importable that the importer ignored would be stored as its default instead."""
    wrong = "not a number" if key in ("token_budget", "tokens_used", "duration_ms", "cost_usd") else {"not": ["a", "scalar"]}
    if key in ("metadata", "payload"):
        wrong = "\x00"  # JSON, where a string holding NUL is what no database stores alike
    if key == "red_team_settings":
        wrong = [1, 2]
    report, errors = await import_bytes(engine, _line_with(type_name, key, wrong))
    assert report.rejected == 1, errors
    assert f"`{key}`" in errors, errors
