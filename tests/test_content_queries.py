"""`Event.content(encoding: QUERIES)`: the INPUT events of a TERMINAL session through a
`postgres` resource rendered as the SQL their PostgreSQL wire-protocol messages carry; any
other event, session or resource as UTF8, planned or not."""

import struct

import pytest
from sqlalchemy import update

from sessiongraph.models import Session
from tests.conftest import event_, execute, store


def query_message(sql: str) -> bytes:
    body = sql.encode() + b"\x00"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


WIRE = query_message("SELECT 1; SELECT 'a;b'")
QUERY = """query($id: ID!) { session(id: $id) { events { nodes { type
  q: content(encoding: QUERIES) u: content(encoding: UTF8) } } } }"""


@pytest.mark.parametrize(
    ("kind", "subtype", "expected"),
    [
        ("TERMINAL", "postgres", "SELECT 1\nSELECT 'a;b'"),
        ("TERMINAL", "mysql", WIRE.decode("utf-8", "replace")),  # not a postgres resource: UTF8
        ("AGENT", None, WIRE.decode("utf-8", "replace")),
    ],
)
async def test_queries_are_rendered_only_for_a_postgres_terminal_session(engine, org, both_executions, kind, subtype, expected):
    session_id = await store(
        engine, org.alice, 0, external_id="pg",
        events=[event_("INPUT", 1, WIRE), event_("OUTPUT", 2, WIRE), event_("INPUT", 3, b"ls -la\n")],
    )
    async with engine.begin() as connection:
        await connection.execute(
            update(Session).where(Session.id == session_id).values(
                kind=kind, resource_name="pgdemo" if kind == "TERMINAL" else None, resource_type="database", resource_subtype=subtype, verb="CONNECT"
            )
        )
    result = await execute(engine, org.alice, QUERY, {"id": "pg"})
    assert result.errors is None
    nodes = result.data["session"]["events"]["nodes"]
    assert [n["q"] for n in nodes] == [expected, WIRE.decode("utf-8", "replace"), "ls -la\n"]
    assert [n["u"] for n in nodes] == [WIRE.decode("utf-8", "replace"), WIRE.decode("utf-8", "replace"), "ls -la\n"]
