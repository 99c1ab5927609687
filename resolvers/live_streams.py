"""The subscriptions' streams: a session's events (stored ones after `afterSeq`, then live
ones) and the changes to the caller's visible sessions.

The seam between stored and live events: the stream subscribes to the broker first, so
every event committed from then on is queued for it, then reads the stored ones, then
takes the queue, skipping what it has passed already (seq <= the last one). Nothing
committed in between can fall through, and nothing comes twice.

Between two items a stream gives back its database connection and forgets what its
DataLoaders cached: a subscriber holds no connection while it waits, and each item is
resolved from fresh rows.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select

from sessiongraph.models import Event, Session
from sessiongraph.live.broker import Notice, Subscriber, broker_for
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import BadUserInput, CodedError, NotFound, ServiceUnavailable
from sessiongraph.loaders import EVENT_COLUMNS, EVENTS_WITH_SESSION, EventFilter
from sessiongraph.resolvers.visibility import can_see, find_session, no_session

REPLAY_PAGE = 500


class TooFarBehind(CodedError):
    code = "TOO_FAR_BEHIND"

    def __init__(self, message: str, after_seq: int | None = None) -> None:
        super().__init__(message)
        if after_seq is not None:
            self.extensions["afterSeq"] = after_seq


class LiveFeedLost(ServiceUnavailable):
    # The server stopped receiving notices (its database connection dropped, or it is
    # shutting down): resubscribing picks up where the stream stopped.
    pass


async def session_events(
    ctx: RequestContext, id_: str, after_seq: int | None, types: list[str] | None, include_partial: bool
) -> AsyncIterator:
    """The event rows of a visible session, from after `after_seq` (None: from now on);
    NOT_FOUND before anything is sent when the caller cannot see the session."""
    if after_seq is not None and after_seq < 0:
        raise BadUserInput("afterSeq must be 0 or more.")
    session = await find_session(ctx, id_)
    if session is None:
        raise NotFound(no_session(id_))
    subscriber = await broker_for(ctx.engine).subscribe_events(ctx.viewer, session.id)
    # Read after subscribing: whatever is committed later reaches the subscriber's queue.
    async with ctx.engine.connect() as connection:
        now = (await connection.execute(
            select(Session.event_count, Session.deleted_at).where(Session.id == session.id)
        )).one()
    await ctx.release()
    if now.deleted_at is not None:  # deleted in between: a stream that ends at once
        subscriber.end()
    events = EventFilter.of(types, include_partial)
    replay = after_seq is not None and after_seq < now.event_count
    start = now.event_count if after_seq is None else after_seq
    return _session_events(ctx, subscriber, session.id, start, replay, events)


async def _session_events(
    ctx: RequestContext, subscriber: Subscriber, session_id: uuid.UUID, last: int, replay: bool, events: EventFilter
) -> AsyncIterator:
    try:
        if replay:
            async for row in _stored_events(ctx, session_id, last, events):
                last = row.seq
                yield row
                await ctx.release()
        while (row := await subscriber.next()) is not None:
            if row.seq <= last:
                continue
            last = row.seq
            if events.matches(row.type):
                yield row
                await ctx.release()
        _raise_failure(subscriber, last)
    finally:
        subscriber.close()
        await ctx.release()


async def _stored_events(ctx: RequestContext, session_id: uuid.UUID, after_seq: int, events: EventFilter):
    """The stored events after `after_seq`, read a page at a time, each page on a
    connection held only while it is read."""
    condition = events.condition()
    while True:
        statement = (
            select(*EVENT_COLUMNS)
            .select_from(EVENTS_WITH_SESSION)
            .where(Event.session_id == session_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(REPLAY_PAGE)
        )
        if condition is not None:
            statement = statement.where(condition)
        async with ctx.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        for row in rows:
            yield row
        if len(rows) < REPLAY_PAGE:
            return
        after_seq = rows[-1].seq


def _raise_failure(subscriber: Subscriber, last: int | None) -> None:
    """Ends a stream with the reason its subscriber was ended for, if any."""
    if subscriber.failure == "TOO_FAR_BEHIND":
        raise TooFarBehind(
            f"The subscriber fell {subscriber.limit} items behind and was ended; subscribe again "
            f"with afterSeq: {last} to continue where it stopped.",
            last,
        )
    if subscriber.failure is not None:
        where = "" if last is None else f" with afterSeq: {last}"
        raise LiveFeedLost(f"The live feed was interrupted; subscribe again{where}.")


@dataclass(frozen=True, slots=True)
class SessionChange:
    """One item of sessionUpdates: the notice, the session as it is now (None when
    DELETED) and the turn the change is about."""

    notice: Notice
    session: object
    turn: object


async def session_updates(ctx: RequestContext) -> AsyncIterator[SessionChange]:
    subscriber = await broker_for(ctx.engine).subscribe_updates(ctx.viewer)
    await ctx.release()
    return _session_updates(ctx, subscriber)


async def _session_updates(ctx: RequestContext, subscriber: Subscriber) -> AsyncIterator[SessionChange]:
    try:
        while (notice := await subscriber.next()) is not None:
            if notice.kind == "DELETED":
                yield SessionChange(notice, None, None)
            else:
                session = await ctx.loaders.session.load(notice.session_id)
                # Deleted since (its DELETED follows) or no longer visible: nothing to show.
                if not can_see(ctx.viewer, session):
                    continue
                turn = None if notice.turn_id is None else await ctx.loaders.turn.load(notice.turn_id)
                yield SessionChange(notice, session, turn)
            await ctx.release()
        _raise_failure(subscriber, None)
    finally:
        subscriber.close()
        await ctx.release()
