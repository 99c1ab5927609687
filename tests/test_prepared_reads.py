"""Page statements run on the driver's own connection (PostgreSQL: `RequestContext.rows`
with `reused=True`) give exactly the rows SQLAlchemy's execution gives: the same columns,
values and value types, for every kind of page the read API runs. On SQLite both ways are
SQLAlchemy's, so there the test only holds the flag harmless."""

from sqlalchemy import select

from sessiongraph.models import Event, Turn
from sessiongraph.resolvers import queries
from sessiongraph.resolvers.context import RequestContext, _prepared
from sessiongraph.loaders import (
    EVENT_COLUMNS,
    EVENTS_WITH_SESSION,
    TURN_COLUMNS,
    EventFilter,
    PageKey,
    _chosen_columns,
    page_statement,
)
from tests.conftest import count_statements, event_, store, turn_


async def test_driver_rows_are_sqlalchemy_rows(engine, org):
    sessions = []
    for n in range(3):
        turns = [
            turn_(f"t{k}", n * 10 + k, events=[event_("LLM_OUTPUT", n * 10 + k + 0.5, b"\xffbytes", agent="a", payload={"k": [k]})], result=" r ")
            for k in range(3)
        ]
        sessions.append(await store(engine, org.alice, minutes=n * 10, turns=turns, events=[event_("INPUT", n * 10 + 0.1, "hi")], metadata={"n": n}))
    context = RequestContext(engine, org.alice)
    try:
        statements = []
        where = queries.SessionListFilter()
        viewer = {"org_id": org.alice.org_id, "user_id": org.alice.user_id}
        page, counted, count = queries._list_statements(False, "CREATED_AT", True, True, False, False, where.shape())
        statements += [(page, {**viewer, "limit": 2}), (counted, {**viewer, "limit": 2}), (count, viewer)]
        last = (await context.rows(page, {**viewer, "limit": 2}))[-1]
        page, counted, _ = queries._list_statements(False, "CREATED_AT", True, True, True, False, where.shape())
        after = {**viewer, "limit": 2, "after_key": last.created_at, "after_id": last.id}
        statements += [(page, after), (counted, after)]
        turn_ids = [row.id for row in await context.rows(select(Turn.id))]
        dialect = engine.dialect.name
        for columns in (None, ("id", "position", "created_at", "agents")):
            chosen, _ = _chosen_columns(TURN_COLUMNS, columns, None, "session_id")
            keys = [PageKey(s, 2, True, None, None, None, columns) for s in sessions]
            statements.append(page_statement(keys, chosen, Turn.session_id, Turn.position, None, dialect))
        for columns in (None, ("id", "seq", "content", "timestamp", "session_created_at"), ("id", "seq", "payload")):
            for parent, ids, name in ((Event.turn_id, turn_ids, "turn_id"), (Event.session_id, sessions, "session_id")):
                chosen, joined = _chosen_columns(EVENT_COLUMNS, columns, EVENTS_WITH_SESSION, name)
                for forward in (True, False):
                    keys = [PageKey(i, 2, forward, None, None, EventFilter(None, False), columns) for i in ids]
                    statements.append(page_statement(keys, chosen, parent, Event.seq, joined, dialect))
                    statements.append(page_statement(keys[:1], chosen, parent, Event.seq, joined, dialect))
        for statement, parameters in statements:
            expected = await context.rows(statement, parameters)
            with count_statements(engine) as counter:  # what watches the engine sees it too
                found = await context.rows(statement, parameters, reused=True)
            assert counter.count == 1
            assert found == expected and expected, statement
            assert [type(row) for row in found] == [type(row) for row in expected]
            assert [[type(v) for v in row] for row in found] == [[type(v) for v in row] for row in expected]
            assert [row._fields for row in found] == [row._fields for row in expected]
        # Every one of them took the driver's way, on both databases.
        assert all(_prepared(s, engine.dialect) is not None for s, _ in statements)
    finally:
        await context.close()
