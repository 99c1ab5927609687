"""Writing sessions: users, sessions, turns and events, with the figures kept on the rows
(turn count, tokens, last activity, seq numbers, a turn's fallback output and agents).

Used by the importer and the write mutations alike; every function runs inside the
caller's transaction, so what it writes lands whole or not at all.
"""

import asyncio
import contextlib
import json
import re
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import datetime
from itertools import chain
from operator import attrgetter, itemgetter

from sqlalchemy import JSON, LargeBinary, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sessiongraph.models.new_sessions import (
    NewEvent,
    NewSession,
    NewTurn,
    Stored,
    batch_keys,
    fallback_output,
    new_session_rows,
    new_users,
    turn_row,
    unique_tasks,
)
from sessiongraph.models.tables import Event, Session, Turn, User
from sessiongraph.models.database import sqlite_time_text
from sessiongraph.models.types import UTCDateTime
from sessiongraph.observability.metrics import events_written


class OrganisationConflict(Exception):
    """The user was first seen in another organisation."""


class OwnerConflict(Exception):
    """The session id is taken by a session of another owner."""


def _insert_ignoring_conflicts(connection: AsyncConnection, table):
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def ensure_user(connection: AsyncConnection, user_id: uuid.UUID, org_id: uuid.UUID, now: datetime) -> bool:
    """Records the user in `org_id` if never seen; False if it belongs to another one."""
    find = select(User.org_id).where(User.id == user_id)
    stored = await connection.scalar(find)  # nearly always there already: one round trip
    if stored is None:
        await connection.execute(
            _insert_ignoring_conflicts(connection, User.__table__).values(id=user_id, org_id=org_id, created_at=now)
        )
        stored = await connection.scalar(find)
    return stored == org_id


async def store_session(connection: AsyncConnection, new: NewSession) -> Stored:
    """Stores a session, or adds to the one stored under the same id (or the same owner
    and external id) the turns whose task id it lacks; nothing else of it changes."""
    if not await ensure_user(connection, new.user_id, new.org_id, new.created_at):
        raise OrganisationConflict(f"user {new.user_id} belongs to another organisation")
    existing = await _stored_session(connection, new)
    if existing is not None:
        known = set((await connection.scalars(select(Turn.task_id).where(Turn.session_id == existing.id))).all())
        turns = [t for t in unique_tasks(new.turns) if t.task_id not in known]
        added = await add_turns(connection, existing.id, turns)
        return Stored(existing.id, False, len(turns), added)

    return await _insert_session(connection, new)


async def _stored_session(connection: AsyncConnection, new: NewSession):
    """The stored session `new` names: the one with its id, else the owner's live one with
    its external id; None when neither exists. One statement for both lookups."""
    conditions = []
    if new.session_id is not None:
        conditions.append(Session.id == new.session_id)
    if new.external_id is not None:
        conditions.append(and_(
            Session.user_id == new.user_id, Session.external_id == new.external_id, Session.deleted_at.is_(None)
        ))
    if not conditions:
        return None
    rows = (await connection.execute(
        select(Session.id, Session.user_id, Session.org_id).where(or_(*conditions))
    )).all()
    by_id = next((r for r in rows if r.id == new.session_id), None)
    if by_id is not None:
        if (by_id.user_id, by_id.org_id) != (new.user_id, new.org_id):
            raise OwnerConflict(f"session {new.session_id} belongs to another owner")
        return by_id
    return rows[0] if rows else None


async def store_new_sessions(connection: AsyncConnection, news: list[NewSession]) -> list[Stored] | None:
    """Stores sessions that are all new, with their users when never seen, in a few
    statements for the lot; None, having written nothing, when any of them is not that
    simple case (an existing session, an id twice, a user of another organisation):
    `store_session` then takes them one by one."""
    keys = batch_keys(news)
    if keys is None:
        return None
    ids, owned = keys
    users = new_users(news, dict((await connection.execute(
        select(User.id, User.org_id).where(User.id.in_({n.user_id for n in news}))
    )).all()))
    if users is None:
        return None
    if ids and (await connection.execute(select(Session.id).where(Session.id.in_(ids)).limit(1))).first():
        return None
    if owned:
        # Every live session of these users with any of these external ids, the pairs then
        # matched here: two lists of values make one statement SQLAlchemy compiles once,
        # where a condition a pair made a new statement (compiled anew) for every batch.
        taken = (await connection.execute(
            select(Session.user_id, Session.external_id).where(
                Session.user_id.in_({user_id for user_id, _ in owned}),
                Session.external_id.in_({external_id for _, external_id in owned}),
                Session.deleted_at.is_(None),
            )
        )).all()
        if not set(owned).isdisjoint(map(tuple, taken)):
            return None
    if users:
        await connection.execute(User.__table__.insert(), users)
    return await _insert_sessions(connection, news)


async def _insert_session(connection: AsyncConnection, new: NewSession) -> Stored:
    return (await _insert_sessions(connection, [new]))[0]


async def _insert_sessions(connection: AsyncConnection, news: list[NewSession]) -> list[Stored]:
    """New sessions whole, in a few statements whatever their number and size."""
    rows = new_session_rows(news)
    await _insert_many(connection, Session.__table__, _columns(rows.sessions))
    turn_ids: dict = {}
    if rows.turns:
        # Read back by (session, position), as `_insert_read_back` does for one session.
        await _insert_many(connection, Turn.__table__, _columns(rows.turns))
        turn_ids = {
            (session_id, position): turn_id
            for session_id, position, turn_id in (await connection.execute(
                select(Turn.session_id, Turn.position, Turn.id).where(Turn.session_id.in_([s["id"] for s in rows.sessions]))
            )).all()
        }
    if events := rows.events:
        columns = {name: list(map(attrgetter(name), events)) for name in _EVENT_FIELDS}
        if connection.dialect.name == "sqlite":  # the text the importer has, where it has it
            columns["timestamp"] = [
                text or timestamp for text, timestamp in zip(map(_sqlite_timestamp, events), columns["timestamp"])
            ]
        await _insert_many(connection, Event.__table__, {
            "session_id": rows.session_ids,
            "turn_id": rows.event_turn_ids(turn_ids),
            "seq": rows.seqs,
            "workflow_id": rows.workflow_ids,
            **columns,
        })
    return rows.stored


_EVENT_FIELDS = ("type", "agent_id", "content", "timestamp", "payload", "dedup_key")
_sqlite_timestamp = attrgetter("sqlite_timestamp")

# Rows a statement: one INSERT of many rows costs the database less than as many one-row
# INSERTs. 999 bound values at the most, the lowest limit SQLite was ever built with.
_VALUES_A_STATEMENT = 999


async def _insert_many(connection: AsyncConnection, table, columns: dict[str, list]) -> None:
    """Inserts the rows whose values `columns` gives column by column (lists of one length),
    each value converted as the column type's own bind processor would, without the
    parameter dictionary SQLAlchemy builds for every row, which costs more than the insert
    itself for the events of a large import. Many rows a statement; the rows short of a
    whole statement, one a statement."""
    dialect = connection.dialect
    # for_executemany: no RETURNING of the new ids, which nobody reads here
    compiled = table.insert().compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
    values = {name: _bound(table.c[name].type, dialect, column) for name, column in columns.items()}
    ordered = [values[name] for name in compiled.positiontup]
    width = len(ordered)
    per_statement = _VALUES_A_STATEMENT // width
    flat = list(chain.from_iterable(zip(*ordered)))
    # The grouper idiom: zip over one iterator takes a statement's values at a time, and
    # leaves out the rows short of a whole statement.
    statements = list(zip(*[iter(flat)] * (per_statement * width)))
    if statements:
        head, row = compiled.string.split(" VALUES ")
        rows = ", ".join(
            # PostgreSQL's parameters are numbered ($1, $2): each row's its own; SQLite's (?) are not
            re.sub(r"\$(\d+)", lambda number: f"${int(number[1]) + i * width}", row)
            for i in range(per_statement)
        )
        await connection.exec_driver_sql(f"{head} VALUES {rows}", statements)
    if rest := flat[len(statements) * per_statement * width:]:
        await connection.exec_driver_sql(compiled.string, list(zip(*[iter(rest)] * width)))


def _columns(rows: list[dict]) -> dict[str, list]:
    """Rows of the same keys, column by column, for `_insert_many`."""
    return {name: list(map(itemgetter(name), rows)) for name in rows[0]}


def _bound(column_type, dialect, values: list) -> list:
    """`values` as the column type's bind processor gives them to the driver."""
    if isinstance(column_type, LargeBinary):  # bytes are what both drivers take: its processor only wraps them
        return values
    process = column_type._cached_bind_processor(dialect)
    if process is None:
        return values
    if isinstance(column_type, UTCDateTime) and dialect.name == "sqlite":
        # A str is that text already (the importer's, cut from its input).
        return [value if type(value) is str else sqlite_time_text(value) for value in values]
    if isinstance(column_type, JSON) and dialect.name == "sqlite" and not column_type.none_as_null:
        # What the processor does with a plain value (not one of SQLAlchemy's NULL markers,
        # which nothing written here holds): the engine's serializer, called without it.
        return list(map(dialect._json_serializer or json.dumps, values))
    # A column of few distinct objects, such as the session id of every event, is converted
    # once an object (by identity: hashing a UUID runs in Python, and JSON values have no hash).
    distinct = dict(zip(map(id, values), values))
    if len(distinct) * 2 < len(values):
        converted = {key: process(value) for key, value in distinct.items()}
        return list(map(converted.__getitem__, map(id, values)))
    return list(map(process, values))


async def add_turns(connection: AsyncConnection, session_id: uuid.UUID, turns: list[NewTurn]) -> int:
    """Adds turns (after the session's last) with their events; returns the events added."""
    if not turns:
        return 0
    count = await connection.scalar(
        update(Session)
        .where(Session.id == session_id)
        .values(turn_count=Session.turn_count + len(turns), tokens_used=Session.tokens_used + sum(t.tokens_used for t in turns))
        .returning(Session.turn_count)
    )
    first_position = count - len(turns) + 1
    positions = range(first_position, first_position + len(turns))
    rows = [turn_row(session_id, position, t) for position, t in zip(positions, turns, strict=True)]
    ids = await _insert_read_back(connection, Turn, rows, Turn.position, session_id, positions)
    newest = max(max(t.created_at, t.completed_at or t.created_at) for t in turns)
    await _touch(connection, session_id, newest, updated=True)
    added = 0
    for turn_id, turn in zip(ids, turns, strict=True):
        # The turn's row has its figures from these events already (`_turn_row`).
        added += len(await insert_events(connection, session_id, turn_id, turn.events, turn.workflow_id, figures=False))
    return added


async def _insert_read_back(connection: AsyncConnection, model, rows: list[dict], key, session_id, keys) -> list[int]:
    """Inserts rows of one session and returns their ids in the order of `keys` (their
    position or seq), read back by that key: RETURNING in parameter order would make SQLite
    insert the rows one statement each."""
    await connection.execute(model.__table__.insert(), rows)
    found = dict((await connection.execute(
        select(key, model.id).where(model.session_id == session_id, key.between(min(keys), max(keys)))
    )).all())
    return [found[k] for k in keys]


async def append_events(
    connection: AsyncConnection,
    session_id: uuid.UUID,
    turn_id: int | None,
    events: list[NewEvent],
    workflow_id: str | None = None,
) -> int:
    """Appends events with the session's next seqs; returns how many."""
    return len(await insert_events(connection, session_id, turn_id, events, workflow_id))


async def insert_events(
    connection: AsyncConnection,
    session_id: uuid.UUID,
    turn_id: int | None,
    events: list[NewEvent],
    workflow_id: str | None = None,
    figures: bool = True,
) -> list[int]:
    """Appends events with the session's next seqs, gapless: the seqs are taken by one
    UPDATE of the session row, which holds its lock until the transaction ends. Returns
    the new events' ids, in order. `figures`: bring the turn's fallback output and agents
    up to date with the events (False where its row was written with them)."""
    if not events:
        return []
    events_written(len(events))
    last_seq = await connection.scalar(
        update(Session)
        .where(Session.id == session_id)
        .values(event_count=Session.event_count + len(events))
        .returning(Session.event_count)
    )
    seqs = range(last_seq - len(events) + 1, last_seq + 1)
    ids = await _insert_read_back(
        connection,
        Event,
        [
            {
                "session_id": session_id,
                "turn_id": turn_id,
                "seq": seq,
                "type": e.type,
                "workflow_id": workflow_id,
                "agent_id": e.agent_id,
                "content": e.content,
                "timestamp": e.timestamp,
                "payload": e.payload,
                "dedup_key": e.dedup_key,
            }
            for seq, e in zip(seqs, events, strict=True)
        ],
        Event.seq,
        session_id,
        seqs,
    )
    await _touch(connection, session_id, max(e.timestamp for e in events))
    if turn_id is not None and figures:
        await _update_turn_figures(connection, turn_id, events)
    return ids


async def _touch(connection: AsyncConnection, session_id: uuid.UUID, when: datetime, updated: bool = False) -> None:
    values = {"last_activity_at": when}
    if updated:
        values["updated_at"] = when
    for column, value in values.items():
        await connection.execute(
            update(Session).where(Session.id == session_id, getattr(Session, column) < value).values({column: value})
        )


async def _update_turn_figures(connection: AsyncConnection, turn_id: int, events: list[NewEvent]) -> None:
    turn = (await connection.execute(select(Turn.fallback_output, Turn.agents).where(Turn.id == turn_id))).one()
    agents = sorted(set(turn.agents) | {e.agent_id for e in events if e.agent_id})
    fallback = turn.fallback_output
    if fallback is None:
        fallback = fallback_output(events)
    if agents != turn.agents or fallback != turn.fallback_output:
        await connection.execute(update(Turn).where(Turn.id == turn_id).values(agents=agents, fallback_output=fallback))


# The live write path (the write mutations): short transactions, one writer per session at
# a time, the session row locked first.

_SQLITE_WRITERS: "weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock]" = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction for a write that reads first. On SQLite it takes the write lock up
    front (BEGIN IMMEDIATE): a deferred transaction that has read fails with "database is
    locked" at its first write when another writer got in between, instead of waiting. The
    writers of this process queue on an asyncio lock before that, so they wait without
    polling; writers of other processes are waited for by the busy timeout. On PostgreSQL
    the session row's lock (`lock_session`) orders the writers of one session."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as connection:
            yield connection
        return
    lock = _SQLITE_WRITERS.setdefault(engine, asyncio.Lock())
    async with lock, engine.begin() as connection:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


async def lock_session(connection: AsyncConnection, session_id: uuid.UUID):
    """The session's row, locked until the transaction ends (on SQLite the transaction
    holds the database's write lock already); None when there is no such session."""
    statement = select(*Session.__table__.c).where(Session.id == session_id).with_for_update()
    return (await connection.execute(statement)).first()


async def append_events_once(
    connection: AsyncConnection,
    session_id: uuid.UUID,
    turn_id: int | None,
    events: list[NewEvent],
    workflow_id: str | None = None,
) -> list[int]:
    """Appends the events whose dedup key the session does not have yet (a key twice in
    `events`: the first); returns, for each of `events` in order, the id of its stored
    event, old or new. Call with the session locked: a concurrent retry then waits and
    finds the key instead of failing on the unique index."""
    keys = {e.dedup_key for e in events if e.dedup_key is not None}
    stored: dict[str, int] = {}
    if keys:
        stored = dict((await connection.execute(
            select(Event.dedup_key, Event.id).where(Event.session_id == session_id, Event.dedup_key.in_(keys))
        )).all())
    new: list[NewEvent] = []
    slots: list[tuple[bool, int]] = []  # (is new, id or index into `new`)
    first_of_key: dict[str, int] = {}
    for e in events:
        key = e.dedup_key
        if key is not None and key in stored:
            slots.append((False, stored[key]))
        elif key is not None and key in first_of_key:
            slots.append((True, first_of_key[key]))
        else:
            if key is not None:
                first_of_key[key] = len(new)
            slots.append((True, len(new)))
            new.append(e)
    ids = await insert_events(connection, session_id, turn_id, new, workflow_id)
    return [ids[i] if is_new else i for is_new, i in slots]


async def start_turn(connection: AsyncConnection, session_id: uuid.UUID, turn: NewTurn) -> tuple[int, bool]:
    """(the id of the session's turn with `turn.task_id`, whether it was added now): the
    turn is added only when the session has none with that task id. Call with the session
    locked."""
    find = select(Turn.id).where(Turn.session_id == session_id, Turn.task_id == turn.task_id)
    if (existing := await connection.scalar(find)) is not None:
        return existing, False
    await add_turns(connection, session_id, [turn])
    return await connection.scalar(find), True


async def end_turn(
    connection: AsyncConnection,
    turn,
    status: str,
    completed_at: datetime,
    result: str | None = None,
    tokens_used: int | None = None,
) -> None:
    """Ends a running turn (a row of `turns`) with its status and completion time, and the
    result and token count when given (None: kept). The session's tokens follow the turn's;
    the completion counts as the session's activity. Call with the session locked."""
    values: dict = {"status": status, "completed_at": completed_at}
    if result is not None:
        values["result"] = result
    if tokens_used is not None:
        values["tokens_used"] = tokens_used
    await connection.execute(update(Turn).where(Turn.id == turn.id).values(values))
    if tokens_used is not None and tokens_used != turn.tokens_used:
        await connection.execute(
            update(Session)
            .where(Session.id == turn.session_id)
            .values(tokens_used=Session.tokens_used + (tokens_used - turn.tokens_used))
        )
    await _touch(connection, turn.session_id, completed_at, updated=True)
