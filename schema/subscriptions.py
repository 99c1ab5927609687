"""The Subscription root: sessionEvents and sessionUpdates (served over graphql-transport-ws
by server/websocket.py). Each resolver checks what it must before it returns its stream, so
a refusal (NOT_FOUND, a limit) is the operation's error before anything is sent."""

from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum

import strawberry

from sessiongraph.resolvers import live_streams
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.types import Event, Session, Turn


@strawberry.enum
class SessionUpdateKind(Enum):
    CREATED = "CREATED"
    RENAMED = "RENAMED"
    DELETED = "DELETED"
    TURN_STARTED = "TURN_STARTED"
    TURN_COMPLETED = "TURN_COMPLETED"
    UPDATED = "UPDATED"
    ENDED = "ENDED"


@strawberry.type
class SessionUpdate:
    kind: SessionUpdateKind
    session_id: strawberry.ID = strawberry.field(description="The session's global id (still given for DELETED).")
    session: Session | None = strawberry.field(description="The session as it is now; null for DELETED.")
    turn: Turn | None

    @classmethod
    def of(cls, change: live_streams.SessionChange) -> "SessionUpdate":
        return cls(
            kind=SessionUpdateKind(change.notice.kind),
            session_id=to_global_id("Session", change.notice.session_id),
            session=None if change.session is None else Session.from_row(change.session),
            turn=None if change.turn is None else Turn.from_row(change.turn),
        )


async def _mapped(rows: AsyncIterator, build) -> AsyncGenerator:
    try:
        async for row in rows:
            yield build(row)
    finally:
        await rows.aclose()


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A session's events as they are appended, over graphql-transport-ws. With "
        "`afterSeq`, the stored events after that seq come first, then the live ones, with no gap "
        "and no duplicate between the two, so a client that reconnects with the last seq it saw "
        "misses nothing; without it, only events appended from now on. Same `types` / "
        "`includePartial` rules as Session.events. Works across server processes. A session the "
        "caller cannot see: an error with code NOT_FOUND. Completes when the session is deleted. "
        "A subscriber that falls too far behind gets an error with code TOO_FAR_BEHIND (its "
        "extensions.afterSeq says where to resume) and is ended."
    )
    async def session_events(
        self,
        info: strawberry.Info,
        session_id: strawberry.ID,
        after_seq: int | None = None,
        types: list[str] | None = None,
        include_partial: bool | None = False,
    ) -> AsyncGenerator[Event, None]:
        rows = await live_streams.session_events(info.context, session_id, after_seq, types, include_partial)
        return _mapped(rows, Event.from_row)

    @strawberry.subscription(
        description="Changes to the caller's visible sessions: created, renamed, deleted, turn "
        "started or completed, updated (updateSession), ended (endSession)."
    )
    async def session_updates(self, info: strawberry.Info) -> AsyncGenerator[SessionUpdate, None]:
        changes = await live_streams.session_updates(info.context)
        return _mapped(changes, SessionUpdate.of)
