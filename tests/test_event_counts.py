"""Counts kept by the writer (issue 21, defect 7): `totalCount` of a session's or a turn's
events, with or without `types` and `includePartial`, is a sum of the counts the one writer
keeps per (session, type) and per (turn, type), not a count of the events; the counts equal
the events after any mix of writes, and migration 0006 computes them for events stored
before it. On SQLite and PostgreSQL."""

import random
import uuid

import pytest
from sqlalchemy import func, select, text

from sessiongraph.migrations import upgrade_async
from sessiongraph.models import Event, create_engine
from sessiongraph.models.tables import SessionEventCount, TurnEventCount
from sessiongraph.resolvers.context import Viewer
from tests.conftest import BACKENDS, T0, count_statements, execute, fresh_database, ok
from tests.test_import import import_bytes, line, new_session, turn
from tests.test_import import event as import_event
from tests.test_recording import append, complete, create, start

TYPES = ("LLM_PROMPT", "LLM_OUTPUT", "LLM_PARTIAL", "TOOL_INVOKED", "OUTPUT")
TOTALS = """query($id: ID!) { session(id: $id) {
  all: events(includePartial: true) { totalCount }
  default: events { totalCount }
  tools: events(types: ["TOOL_INVOKED", "OUTPUT"]) { totalCount }
  partial: events(types: ["LLM_PARTIAL"]) { totalCount }
  none: events(types: []) { totalCount }
  turns(first: 100) { nodes { all: events(includePartial: true) { totalCount } default: events { totalCount }
                             tools: events(types: ["TOOL_INVOKED"]) { totalCount } } }
} }"""


async def kept_and_counted(engine) -> tuple:
    """(the kept counts, the events counted) per session and type and per turn and type."""
    async with engine.connect() as connection:
        async def pairs(statement):
            return sorted((str(a), b, c) for a, b, c in (await connection.execute(statement)).all())

        return (
            await pairs(select(SessionEventCount.session_id, SessionEventCount.type, SessionEventCount.count)),
            await pairs(select(TurnEventCount.turn_id, TurnEventCount.type, TurnEventCount.count)),
        ), (
            await pairs(select(Event.session_id, Event.type, func.count()).group_by(Event.session_id, Event.type)),
            await pairs(select(Event.turn_id, Event.type, func.count()).where(Event.turn_id.is_not(None)).group_by(Event.turn_id, Event.type)),
        )


async def expected_totals(engine, session_id: str) -> dict:
    """TOTALS' answer, counted from the events themselves."""
    async with engine.connect() as connection:
        rows = (await connection.execute(
            text("SELECT e.type, t.position FROM events e LEFT JOIN turns t ON t.id = e.turn_id"
                 " JOIN sessions s ON s.id = e.session_id WHERE s.external_id = :x"),
            {"x": session_id},
        )).all()
        turns = (await connection.scalar(text("SELECT turn_count FROM sessions WHERE external_id = :x"), {"x": session_id}))

    def totals(types):
        return {"all": {"totalCount": len(types)}, "default": {"totalCount": sum(t != "LLM_PARTIAL" for t in types)}}

    every = [t for t, _ in rows]
    return {"session": {
        **totals(every),
        "tools": {"totalCount": sum(t in ("TOOL_INVOKED", "OUTPUT") for t in every)},
        "partial": {"totalCount": every.count("LLM_PARTIAL")},
        "none": {"totalCount": 0},
        "turns": {"nodes": [
            {**totals(of := [t for t, p in rows if p == position]), "tools": {"totalCount": of.count("TOOL_INVOKED")}}
            for position in range(1, turns + 1)
        ]},
    }}


async def test_the_kept_counts_equal_the_events_after_a_random_mix_of_writes(engine, org):
    generator = random.Random(21)
    sessions, turns = [], []
    for _ in range(3):  # mutations: sessions, turns, events with and without a turn, retries
        session = await create(engine, org.alice, externalId=f"live-{len(sessions)}")
        sessions.append(session["externalId"])
        for task in range(generator.randint(1, 3)):
            turns.append((session["id"], (await start(engine, org.alice, session["id"], f"task-{task}"))["id"]))
    for step in range(40):
        session_id, turn_id = generator.choice(turns)
        events = [
            {"type": generator.choice(TYPES), "message": str(step),
             **({"dedupKey": f"k{generator.randint(0, 30)}"} if generator.random() < 0.3 else {})}
            for _ in range(generator.randint(1, 6))
        ]
        await append(engine, org.alice, session_id, events, turn_id if generator.random() < 0.7 else None)
    await complete(engine, org.alice, turns[0][1], status="COMPLETED", tokensUsed=5)
    # the importer: new sessions in one batch, then turns added to a stored session
    lines = []
    for n in range(4):
        events = [import_event(generator.choice(TYPES), "x") for _ in range(generator.randint(0, 5))]
        lines.append(line(new_session(external_id=f"imported-{n}", user_id=str(org.alice.user_id), org_id=str(org.id),
                                      events=events, turns=[turn("t1", 1, *events[:2])])))
        sessions.append(f"imported-{n}")
    await import_bytes(engine, *lines)
    more = new_session(external_id="imported-0", user_id=str(org.alice.user_id), org_id=str(org.id),
                       turns=[turn("t2", 2, import_event("LLM_PARTIAL", "p"), import_event("TOOL_INVOKED", "q"))])
    report, _ = await import_bytes(engine, line(more))
    assert report.sessions_updated == 1

    kept, counted = await kept_and_counted(engine)
    assert kept == counted and sum(c for _, _, c in kept[0]) > 100
    for external_id in sessions:
        answer = await ok(engine, org.alice, TOTALS, {"id": external_id})
        assert answer == await expected_totals(engine, external_id), external_id


@pytest.mark.parametrize("parent", ["session", "turn"])
async def test_total_count_reads_the_kept_counts_never_the_events(engine, org, parent):
    session = await create(engine, org.alice)
    turn_ = await start(engine, org.alice, session["id"])
    await append(engine, org.alice, session["id"], [{"type": t} for t in TYPES * 3], turn_["id"])
    query = (
        'query($id: ID!) { node(id: $id) { ... on Session { events(types: ["OUTPUT", "LLM_PARTIAL"]) { totalCount } }'
        ' ... on Turn { events(includePartial: false) { totalCount } } } }'
    )
    with count_statements(engine) as counter:
        data = await ok(engine, org.alice, query, {"id": session["id"] if parent == "session" else turn_["id"]})
    assert data["node"]["events"]["totalCount"] == (6 if parent == "session" else 12)
    table = f"{parent}_event_counts"
    # One statement reads the kept counts: the page's own (a single parent's page brings
    # its count along), summing their rows.
    [counting] = [s for s in counter.statements if table in s]
    assert "sum(" in counting.lower()
    # The events are read only for the page itself (a few rows by index), never counted.
    assert not any("FROM events" in s and "count(" in s.lower() for s in counter.statements), counter.statements


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_0006_counts_the_events_stored_before_it(backend):
    org, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with fresh_database(backend, "0001") as url:
        engine = create_engine(url)
        try:
            ids = (lambda u: u.hex) if backend == "sqlite" else (lambda u: u)
            at = "2025-10-28 06:00:00.000000" if backend == "sqlite" else T0
            async with engine.begin() as connection:  # rows as a server before revision 0006 wrote them
                await connection.execute(text("INSERT INTO users (id, org_id, created_at) VALUES (:u, :o, :t)"), {"u": ids(user), "o": ids(org), "t": at})
                await connection.execute(
                    text("INSERT INTO sessions (id, org_id, user_id, external_id, metadata, created_at, updated_at,"
                         " last_activity_at, turn_count, tokens_used, event_count)"
                         " VALUES (:s, :o, :u, 'old-chat', '{}', :t, :t, :t, 2, :tokens, 7)"),
                    # SQLite took a sum beyond Int before the rule; PostgreSQL never could
                    {"s": ids(session), "o": ids(org), "u": ids(user), "t": at, "tokens": 3_000_000_000 if backend == "sqlite" else 150},
                )
                for position in (1, 2):
                    await connection.execute(
                        text("INSERT INTO turns (session_id, position, task_id, status, created_at, tokens_used, agents)"
                             " VALUES (:s, :p, :k, 'COMPLETED', :t, 0, '[]')"),
                        {"s": ids(session), "p": position, "k": f"task-{position}", "t": at},
                    )
                turn_ids = (await connection.execute(text("SELECT id FROM turns ORDER BY position"))).scalars().all()
                for seq, (kind, turn_id) in enumerate(
                    [("OUTPUT", None), ("LLM_PARTIAL", turn_ids[0]), ("LLM_OUTPUT", turn_ids[0]), ("LLM_OUTPUT", turn_ids[0]),
                     ("TOOL_INVOKED", turn_ids[1]), ("LLM_PARTIAL", turn_ids[1]), ("OUTPUT", None)], start=1,
                ):
                    await connection.execute(
                        text("INSERT INTO events (session_id, turn_id, seq, type, timestamp) VALUES (:s, :turn, :q, :k, :t)"),
                        {"s": ids(session), "turn": turn_id, "q": seq, "k": kind, "t": at},
                    )
            await upgrade_async(url)
            viewer = Viewer(user, org, "USER", "USER")
            result = await execute(engine, viewer, """{ session(id: "old-chat") { tokensUsed
              all: events(includePartial: true) { totalCount } default: events { totalCount }
              outputs: events(types: ["OUTPUT", "LLM_OUTPUT"]) { totalCount }
              turns { nodes { all: events(includePartial: true) { totalCount } default: events { totalCount } } } } }""")
            assert result.errors is None, result.errors
            assert result.data == {"session": {
                "tokensUsed": 2**31 - 1 if backend == "sqlite" else 150,
                "all": {"totalCount": 7}, "default": {"totalCount": 5}, "outputs": {"totalCount": 4},
                "turns": {"nodes": [{"all": {"totalCount": 3}, "default": {"totalCount": 2}},
                                    {"all": {"totalCount": 2}, "default": {"totalCount": 1}}]},
            }}
        finally:
            await engine.dispose()
