"""Writing sessions: users, sessions, turns and events, with the figures kept on the rows
(turn count, tokens, last activity, seq numbers, a turn's fallback output and agents).

Used by the importer and the write mutations alike; every function runs inside the
caller's transaction, so what it writes lands whole or not at all.
"""

import asyncio
import contextlib
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter

from sqlalchemy import JSON, LargeBinary, and_, bindparam, case, or_, select, update
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
    stream_bytes,
    turn_row,
    turns_cost,
    unique_tasks,
)
from sessiongraph.models.database import json_dumps
from sessiongraph.models.fields import MAX_INT
from sessiongraph.models.search import queue_new_events
from sessiongraph.models.search_text import fold
from sessiongraph.models.tables import Event, Session, SessionEventCount, Turn, TurnEventCount, User
from sessiongraph.observability.metrics import events_written


class OrganisationConflict(Exception):
    """The user was first seen in another organisation."""


class OwnerConflict(Exception):
    """The session id is taken by a session of another owner."""


class SessionEnded(Exception):
    """Turns or events for a DONE session."""


class TokensOver(Exception):
    """The session's tokens used would pass MAX_TOKENS; nothing of the write is kept (the
    caller's transaction is rolled back by this exception)."""


# A session's tokens used, the sum of its turns', is held to GraphQL's Int on every database
# (SQLite's integers would take more, PostgreSQL's INTEGER not), as resolvers/rules.MAX_TOKENS.
MAX_TOKENS = MAX_INT


# A write of turns or events makes a READY session OPEN.
_OPENED = case((Session.status == "READY", "OPEN"), else_=Session.status)


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
        if turns and existing.status == "DONE":
            raise SessionEnded(f"session {existing.id} has ended (DONE): no more turns")
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
        select(Session.id, Session.user_id, Session.org_id, Session.status).where(or_(*conditions))
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
        event_turn_ids = rows.event_turn_ids(turn_ids)
        await _count_events(connection, _runs_of_types(rows.runs, turn_ids, columns["type"]), new=True)
        bound = {}
        if connection.dialect.name == "sqlite":  # the text the importer has, where it has it
            to_text = _bind_processor(Event.__table__.c.timestamp.type, connection.dialect)
            bound["timestamp"] = [
                text or to_text(timestamp) for text, timestamp in zip(map(_sqlite_timestamp, events), columns.pop("timestamp"))
            ]
        await _insert_many(connection, Event.__table__, {
            "session_id": rows.session_ids,
            "turn_id": event_turn_ids,
            "seq": rows.seqs,
            "workflow_id": rows.workflow_ids,
            **columns,
        }, bound)
        await queue_new_events(connection, rows.session_ids, rows.seqs, events)
    return rows.stored


# The fields of a new event that are columns of the events table.
_EVENT_FIELDS = ("type", "agent_id", "content", "timestamp", "payload", "dedup_key")


_sqlite_timestamp = attrgetter("sqlite_timestamp")

# Rows a statement: one INSERT of many rows costs PostgreSQL less than as many one-row
# INSERTs. 999 bound values at the most, the lowest limit SQLite was ever built with.
_VALUES_A_STATEMENT = 999


async def _insert_many(connection: AsyncConnection, table, columns: dict[str, list], bound: dict[str, list] | None = None) -> None:
    """Inserts the rows whose values `columns` gives column by column (lists of one length),
    each value converted by its column type's bind processor, and hands them to the driver
    as they are (`exec_driver_sql`: one executemany a statement text), without the parameter
    dictionary SQLAlchemy builds for every row, which costs more than the insert itself for
    the events of a large import. On PostgreSQL many rows a statement, the rows short of a
    whole statement one a statement; on SQLite, whose executemany runs in the driver's
    thread without a round trip a row, one row a statement. `bound`: more columns, their
    values converted already. A column NULL in every row (and NULL by default) is left out:
    sqlite3 binds None through its adaptation lookup, a quarter of a microsecond a value."""
    dialect = connection.dialect
    converted = {name: _bound(table.c[name].type, dialect, values) for name, values in columns.items()} | (bound or {})
    names = tuple(  # in the statement's order
        name for name, column in table.c.items()
        if name in converted and not (
            converted[name].count(None) == len(converted[name]) and column.default is None and column.server_default is None
        )
    )
    rows = list(zip(*(converted[name] for name in names)))
    width = len(names)
    per_statement = _VALUES_A_STATEMENT // width if dialect.name == "postgresql" else 1
    if per_statement > 1:
        whole = len(rows) - len(rows) % per_statement
        # The grouper idiom: zip over one iterator takes a statement's values at a time.
        statements = list(zip(*[chain.from_iterable(rows[:whole])] * (per_statement * width)))
        if statements:
            await connection.exec_driver_sql(_insert_text(table, names, per_statement, dialect), statements)
        rows = rows[whole:]
    if rows:
        await connection.exec_driver_sql(_insert_text(table, names, 1, dialect), rows)


@lru_cache(maxsize=64)
def _insert_text(table, names: tuple[str, ...], rows: int, dialect) -> str:
    """The text of an INSERT of `rows` rows of the columns `names` (in the table's order),
    compiled by SQLAlchemy: its parameters come row by row, each row's in that order."""
    statement = table.insert().values([
        {name: bindparam(f"{name}_{row}", type_=table.c[name].type) for name in names} for row in range(rows)
    ])
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup != [f"{name}_{row}" for row in range(rows) for name in names]:
        raise AssertionError(f"an INSERT INTO {table.name} binds its values in another order")
    return compiled.string


def _columns(rows: list[dict]) -> dict[str, list]:
    """Rows of the same keys, column by column, for `_insert_many`."""
    return {name: list(map(itemgetter(name), rows)) for name in rows[0]}


@lru_cache(maxsize=64)
def _bind_processor(column_type, dialect):
    """The column type's bind processor on `dialect` (its variant there, if it has one). A
    JSON column's: the serializer `create_engine` gives the engine, which is what JSON's
    processor calls for a plain value (not one of SQLAlchemy's NULL markers, which nothing
    written here holds), at half the cost."""
    implementation = column_type.dialect_impl(dialect)
    if isinstance(implementation, JSON):
        return json_dumps
    if isinstance(implementation, LargeBinary) and dialect.name == "sqlite":
        # Its processor wraps bytes in a memoryview, which sqlite3 binds through its
        # adaptation lookup (a few microseconds a value, a tenth of an import's time); a
        # bytearray it binds at once, as the same BLOB.
        return _bytearray
    return implementation.bind_processor(dialect)


def _bytearray(value: bytes | None) -> bytearray | None:
    return value if value is None else bytearray(value)


def _bound(column_type, dialect, values: list) -> list:
    """`values` as the column type's bind processor gives them to the driver."""
    process = _bind_processor(column_type, dialect)
    if process is None:
        return values
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
    tokens = sum(t.tokens_used for t in turns)
    if tokens > MAX_TOKENS:
        raise TokensOver(f"{tokens} tokens")
    count = await connection.scalar(
        update(Session)
        .where(Session.id == session_id, Session.tokens_used <= MAX_TOKENS - tokens)
        .values(
            turn_count=Session.turn_count + len(turns),
            tokens_used=Session.tokens_used + tokens,
            cost_usd_micros=Session.cost_usd_micros + turns_cost(turns),
            status=_OPENED,
        )
        .returning(Session.turn_count)
    )
    if count is None:
        raise TokensOver(f"session {session_id}")
    first_position = count - len(turns) + 1
    positions = range(first_position, first_position + len(turns))
    rows = [turn_row(session_id, position, t) for position, t in zip(positions, turns, strict=True)]
    ids = await _insert_read_back(connection, Turn, rows, Turn.position, session_id, positions)
    newest = max(max(t.created_at, t.completed_at or t.created_at) for t in turns)
    await _touch(connection, session_id, newest, updated=True)
    # The turns' rows have their figures from these events already (`turn_row`).
    runs = [(turn_id, turn.workflow_id, turn.events) for turn_id, turn in zip(ids, turns, strict=True)]
    return len(await insert_event_runs(connection, session_id, runs, figures=False))


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
    """Appends events with the session's next seqs (`insert_event_runs`, one run)."""
    return await insert_event_runs(connection, session_id, [(turn_id, workflow_id, events)], figures)


async def insert_event_runs(
    connection: AsyncConnection,
    session_id: uuid.UUID,
    runs: list[tuple[int | None, str | None, list[NewEvent]]],
    figures: bool = True,
) -> list[int]:
    """Appends runs of events, each (its turn id or None, its workflow id, its events), with
    the session's next seqs, gapless, in the order given: the seqs are taken by one UPDATE
    of the session row, which holds its lock until the transaction ends; the same UPDATE
    adds the events' stream bytes to the session's and makes a READY session OPEN. One
    INSERT for every run. Returns the new events' ids, in order. `figures`: bring each
    run's turn's fallback output and agents up to date with its events (False where the
    turn's row was written with them)."""
    runs = [run for run in runs if run[2]]
    events = [e for _, _, run_events in runs for e in run_events]
    if not events:
        return []
    events_written(len(events))
    last_seq = await connection.scalar(
        update(Session)
        .where(Session.id == session_id)
        .values(
            event_count=Session.event_count + len(events),
            stream_size=Session.stream_size + stream_bytes(events),
            status=_OPENED,
        )
        .returning(Session.event_count)
    )
    seqs = range(last_seq - len(events) + 1, last_seq + 1)
    turn_of = [(turn_id, workflow_id) for turn_id, workflow_id, run_events in runs for _ in run_events]
    ids = await _insert_read_back(
        connection,
        Event,
        [
            {
                "session_id": session_id,
                "turn_id": turn_id,
                "seq": seq,
                "workflow_id": workflow_id,
                **{name: getattr(e, name) for name in _EVENT_FIELDS},
            }
            for seq, e, (turn_id, workflow_id) in zip(seqs, events, turn_of, strict=True)
        ],
        Event.seq,
        session_id,
        seqs,
    )
    await queue_new_events(connection, [session_id] * len(events), seqs, events)
    await _count_events(connection, [(session_id, turn_id, [e.type for e in run_events]) for turn_id, _, run_events in runs])
    await _touch(connection, session_id, max(e.timestamp for e in events))
    if figures:
        for turn_id, _, run_events in runs:
            if turn_id is not None:
                await _update_turn_figures(connection, turn_id, run_events)
    return ids


def _runs_of_types(runs, turn_ids: dict, types: list[str]):
    """(session id, turn id or None, the types of its events) for each run of a new batch's
    events (models/new_sessions: the events of one session and turn are consecutive)."""
    start = 0
    for session_id, position, count in runs:
        yield session_id, None if position is None else turn_ids[session_id, position], types[start:start + count]
        start += count


async def _count_events(
    connection: AsyncConnection, runs: Iterable[tuple[uuid.UUID, int | None, list[str]]], new: bool = False
) -> None:
    """Adds events, given as runs of (session id, turn id or None, the events' types), to
    the counts kept per session and type and per turn and type (models/tables.
    SessionEventCount and TurnEventCount), in the caller's transaction: a row a (session or
    turn, type), whatever the number of events. Every writer of events comes through here.
    `new`: the sessions and turns are new, so none has a count yet: plain INSERTs, at the
    importer's speed."""
    by_session: Counter = Counter()
    by_turn: Counter = Counter()
    for session_id, turn_id, types in runs:
        for kind, n in Counter(types).items():  # counted in C; a run's few types in Python
            by_session[session_id, kind] += n
            if turn_id is not None:
                by_turn[turn_id, kind] += n
    for table, parent, counts in (
        (SessionEventCount.__table__, "session_id", by_session),
        (TurnEventCount.__table__, "turn_id", by_turn),
    ):
        if not counts:
            continue
        if new:
            keys = list(counts)
            await _insert_many(connection, table, {
                parent: [key for key, _ in keys], "type": [kind for _, kind in keys], "count": list(counts.values()),
            })
        else:
            await connection.execute(
                _count_upsert(table, parent, connection.dialect.name),
                [{parent: key, "type": kind, "count": n} for (key, kind), n in counts.items()],
            )


@lru_cache(maxsize=4)
def _count_upsert(table, parent: str, dialect: str):
    """INSERT of counts that adds each to the stored one of its (parent, type), if any."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return insert.on_conflict_do_update(index_elements=[parent, "type"], set_={"count": table.c.count + insert.excluded.count})


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
    cost_usd_micros: int | None = None,
    started_at: datetime | None = None,
    user_query: str | None = None,
) -> None:
    """Ends a running turn (a row of `turns`) with its status and completion time, and the
    result, token count and cost when given (None: kept); also its start time and user
    query when given (an OpenTelemetry trace's root span, which may come after the spans
    that started the turn). The session's tokens and cost follow the turn's; the completion
    counts as the session's activity. Call with the session locked."""
    values: dict = {"status": status, "completed_at": completed_at}
    if started_at is not None:
        values["created_at"] = started_at
    if user_query is not None:
        values["user_query"] = user_query
    if result is not None:
        values["result"] = result
        values["search_result"] = fold(result)
    if tokens_used is not None:
        values["tokens_used"] = tokens_used
    if cost_usd_micros is not None:
        values["cost_usd_micros"] = cost_usd_micros
    await connection.execute(update(Turn).where(Turn.id == turn.id).values(values))
    session_values: dict = {}
    guard = []
    if tokens_used is not None and tokens_used != turn.tokens_used:
        change = tokens_used - turn.tokens_used
        session_values["tokens_used"] = Session.tokens_used + change
        guard.append(Session.tokens_used <= MAX_TOKENS - change)
    if cost_usd_micros is not None and cost_usd_micros != (turn.cost_usd_micros or 0):
        session_values["cost_usd_micros"] = Session.cost_usd_micros + (cost_usd_micros - (turn.cost_usd_micros or 0))
    if session_values:
        changed = await connection.execute(update(Session).where(Session.id == turn.session_id, *guard).values(session_values))
        if changed.rowcount == 0:
            raise TokensOver(f"session {turn.session_id}")
    await _touch(connection, turn.session_id, completed_at, updated=True)


async def add_turn_tokens(connection: AsyncConnection, session_id: uuid.UUID, turn_id: int, tokens: int) -> None:
    """Adds `tokens` to a turn's tokens and its session's, whatever the turn's status (an
    OpenTelemetry trace's spans may come after its root completed the turn). Call with the
    session locked."""
    if not tokens:
        return
    if tokens > MAX_TOKENS:
        raise TokensOver(f"{tokens} tokens")
    # Both sums held to MAX_TOKENS, as every writer holds them: nothing is added past it.
    changed = await connection.execute(
        update(Session).where(Session.id == session_id, Session.tokens_used <= MAX_TOKENS - tokens)
        .values(tokens_used=Session.tokens_used + tokens)
    )
    if changed.rowcount == 0:
        raise TokensOver(f"session {session_id}")
    await connection.execute(update(Turn).where(Turn.id == turn_id).values(tokens_used=Turn.tokens_used + tokens))


async def session_started_by(connection: AsyncConnection, session_id: uuid.UUID, when: datetime) -> None:
    """Moves the session's creation back to `when` if it is later (an OpenTelemetry
    session created by spans that came before earlier ones of the same conversation)."""
    await connection.execute(update(Session).where(Session.id == session_id, Session.created_at > when).values(created_at=when))
