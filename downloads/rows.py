"""The rows of a download, read with a server-side cursor (SQLAlchemy's `stream` with
`yield_per`) a batch at a time, so that a download's memory is a batch's whatever the
session's size.

- `events`: the session's events by seq (CSV, TEXT, ASCIICAST), with their turn's position.
- `loose_events` then `turns_with_events`: the import format's order (JSON, JSON Lines): the
  events of no turn by seq, then each turn (by position) with its events (by seq); a turn's
  columns come on each of its event rows (one statement rather than one per turn).

`event_types` keeps only those types (None: all)."""

from collections.abc import AsyncIterator

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sessiongraph.models import Event, Session, Turn

BATCH_ROWS = 2000

SESSION_COLUMNS = tuple(Session.__table__.c)
_E, _T = Event.__table__.c, Turn.__table__.c
EVENT_COLUMNS = (_E.seq, _E.type, _E.agent_id, _E.content, _E.timestamp, _E.payload, _E.dedup_key)
# The turn's columns the import format writes, beside its event's (prefixed: both have a
# workflow_id).
TURN_COLUMNS = tuple(c for c in Turn.__table__.c if c.name not in ("session_id", "fallback_output", "agents"))


async def session_row(connection: AsyncConnection, session_id):
    """The session's row, deleted or not; None when there is none."""
    return (await connection.execute(select(*SESSION_COLUMNS).where(Session.id == session_id))).first()


def _types(condition, event_types):
    return condition if event_types is None else and_(condition, _E.type.in_(event_types))


async def _batches(connection: AsyncConnection, statement) -> AsyncIterator[list]:
    result = await connection.stream(statement.execution_options(yield_per=BATCH_ROWS))
    async for batch in result.partitions():
        yield batch


def events(connection: AsyncConnection, session_id, event_types=None) -> AsyncIterator[list]:
    statement = (
        select(*EVENT_COLUMNS, _T.position.label("turn"))
        .select_from(Event.__table__.outerjoin(Turn.__table__, _T.id == _E.turn_id))
        .where(_types(_E.session_id == session_id, event_types))
        .order_by(_E.seq)
    )
    return _batches(connection, statement)


def loose_events(connection: AsyncConnection, session_id, event_types=None) -> AsyncIterator[list]:
    statement = (
        select(*EVENT_COLUMNS)
        .where(_types(and_(_E.session_id == session_id, _E.turn_id.is_(None)), event_types))
        .order_by(_E.seq)
    )
    return _batches(connection, statement)


def turns_with_events(connection: AsyncConnection, session_id, event_types=None) -> AsyncIterator[list]:
    """Rows of a turn's columns (its own names) and an event's (`event_` and the column's
    name; None for a turn without events)."""
    statement = (
        select(*TURN_COLUMNS, *(c.label(f"event_{c.name}") for c in EVENT_COLUMNS))
        .select_from(Turn.__table__.outerjoin(Event.__table__, _types(_E.turn_id == _T.id, event_types)))
        .where(_T.session_id == session_id)
        .order_by(_T.position, _E.seq)
    )
    return _batches(connection, statement)
