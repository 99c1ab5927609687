"""One rule for U+0000 (NUL) on both databases: stored text may not hold it (PostgreSQL's text
and jsonb cannot; SQLite could). A payload, metadata, user query or result holding it is
BAD_USER_INPUT through the mutations and a rejected line in the import (as the importer
already did), and nothing is stored; raw bytes holding NUL come as a base64 message."""

import base64
import uuid

import pytest
from sqlalchemy import select

from sessiongraph.models import Session
from tests.conftest import execute, ok, store
from tests.test_import import counts, event, import_bytes, line, new_session, turn
from tests.test_recording import APPEND, COMPLETE, CREATE, START

NUL = "\u0000"


def codes(result) -> list[str]:
    assert result.errors, result.data
    return [e.extensions["code"] for e in result.errors]


@pytest.mark.parametrize(
    "payload", [{"text": f"a{NUL}b"}, {f"key{NUL}": 1}, {"deep": [{"list": ["ok", NUL]}]}], ids=["string", "key", "nested"]
)
async def test_a_payload_holding_nul_is_bad_user_input_and_stores_nothing(engine, org, payload):
    session_id = str(await store(engine, org.admin))
    before = await counts(engine)
    result = await execute(engine, org.admin, APPEND, {"input": {"sessionId": session_id, "events": [{"type": "log", "payload": payload}]}})
    assert codes(result) == ["BAD_USER_INPUT"]
    assert "U+0000" in result.errors[0].message
    assert await counts(engine) == before


async def test_metadata_a_user_query_or_a_result_holding_nul_is_bad_user_input(engine, org):
    assert codes(await execute(engine, org.admin, CREATE, {"input": {"title": "t", "metadata": {"m": NUL}}})) == ["BAD_USER_INPUT"]
    session_id = str(await store(engine, org.admin))
    started = await execute(engine, org.admin, START, {"input": {"sessionId": session_id, "taskId": "t1", "userQuery": f"q{NUL}"}})
    assert codes(started) == ["BAD_USER_INPUT"] and "user query" in started.errors[0].message
    turn_id = (await ok(engine, org.admin, START, {"input": {"sessionId": session_id, "taskId": "t2"}}))["startTurn"]["turn"]["id"]
    completed = await execute(engine, org.admin, COMPLETE, {"input": {"turnId": turn_id, "status": "COMPLETED", "result": f"r{NUL}"}})
    assert codes(completed) == ["BAD_USER_INPUT"] and "result" in completed.errors[0].message
    # Nothing changed: the turn still runs.
    done = await ok(engine, org.admin, COMPLETE, {"input": {"turnId": turn_id, "status": "COMPLETED", "result": "r"}})
    assert done["completeTurn"]["turn"]["status"] == "COMPLETED"


async def test_a_message_holding_nul_is_bad_user_input_and_its_base64_form_is_stored(engine, org):
    session_id = str(await store(engine, org.admin))
    result = await execute(engine, org.admin, APPEND, {"input": {"sessionId": session_id, "events": [{"type": "log", "message": f"a{NUL}b"}]}})
    assert codes(result) == ["BAD_USER_INPUT"]
    raw = {"type": "log", "messageBase64": base64.b64encode(b"a\x00b").decode()}
    data = await ok(engine, org.admin, APPEND, {"input": {"sessionId": session_id, "events": [raw]}})
    assert data["appendEvents"]["events"][0]["base64"] == raw["messageBase64"]


@pytest.mark.parametrize(
    "bad",
    [
        new_session(metadata={"m": f"x{NUL}"}),
        new_session(turns=[turn("t1", 1, user_query=f"q{NUL}")]),
        new_session(turns=[turn("t1", 1, result=f"r{NUL}")]),
        new_session(turns=[turn("t1", 1, event("log", "m", payload={f"k{NUL}": 1}))]),
    ],
    ids=["metadata", "user_query", "result", "payload key"],
)
async def test_an_imported_line_holding_nul_is_rejected_and_the_others_stored(engine, bad):
    before = await counts(engine)
    report, errors = await import_bytes(engine, line(new_session()), line(bad), line(new_session()))
    assert (report.rejected, report.sessions_created) == (1, 2)
    assert errors.startswith("line 2: rejected:") and "NUL" in errors, errors
    assert (await counts(engine))[1] == before[1] + 2


async def test_a_title_holding_nul_loses_it_by_the_title_rule_on_every_way_in(engine, org):
    """The title rule removes control characters, NUL among them: the mutations and the
    import store the same title (the import used to reject the line)."""
    created = await ok(engine, org.admin, CREATE, {"input": {"title": f"a{NUL}b"}})
    imported = new_session(title=f"a{NUL}b")
    report, errors = await import_bytes(engine, line(imported))
    assert (report.rejected, errors) == (0, "")
    async with engine.connect() as connection:
        stored = await connection.scalar(select(Session.title).where(Session.id == uuid.UUID(imported["session_id"])))
    assert stored == created["createSession"]["session"]["title"] == "ab"
