"""The object types of the read API. Built from database rows; plain attributes wherever a
field needs no I/O, DataLoader-backed resolvers where it does."""

import base64
import uuid
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from sessiongraph.resolvers import queries
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.connections import Connection


MAX_INT = 2**31 - 1  # GraphQL's Int is 32 bits


# How the computed fields follow from a row's columns; the planner's compiled selections
# (planner/compiled.py) call the same functions.


def final_output(result: str | None, fallback_output: str | None) -> str | None:
    return (result or "").strip() or fallback_output


def execution_time_ms(duration_ms: int | None, created_at: datetime, completed_at: datetime | None) -> int | None:
    if duration_ms is None and completed_at is not None:
        duration_ms = round((completed_at - created_at).total_seconds() * 1000)
        if duration_ms > MAX_INT:  # a turn of over 24.8 days: GraphQL's Int cannot say it
            return None
    return duration_ms


def message_of(content: bytes | None) -> str | None:
    return None if content is None else content.decode("utf-8", "replace")


def elapsed_ms(timestamp: datetime, session_created_at: datetime) -> float:
    return (timestamp - session_created_at).total_seconds() * 1000


@strawberry.enum
class Role(Enum):
    USER = "USER"
    ADMIN = "ADMIN"


@strawberry.enum
class IdentityType(Enum):
    USER = "USER"
    MACHINE = "MACHINE"


@strawberry.enum
class TurnStatus(Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class ContentEncoding(Enum):
    UTF8 = "UTF8"
    BASE64 = "BASE64"


@strawberry.interface(description="Relay Global Object Identification: every id is opaque and resolves through `node`.")
class Node:
    id: strawberry.ID


@strawberry.type
class Viewer:
    user_id: uuid.UUID
    org_id: uuid.UUID
    role: Role
    identity_type: IdentityType

    @classmethod
    @lru_cache(maxsize=1024)
    def of(cls, viewer) -> "Viewer":
        """The caller's (a frozen resolvers.context.Viewer): made once per caller, not per
        request (its two enums cost more than the rest of `{ viewer { userId } }`)."""
        return cls(
            user_id=viewer.user_id,
            org_id=viewer.org_id,
            role=Role(viewer.role),
            identity_type=IdentityType(viewer.identity_type),
        )


@strawberry.type
class Session(Node):
    session_id: uuid.UUID = strawberry.field(description="The session's UUID, as stored.")
    external_id: str | None = strawberry.field(
        description="A caller-chosen id such as 'user-123-chat', unique among the owner's live sessions."
    )
    title: str | None
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime = strawberry.field(
        description="The newest of: creation, any turn's start or completion, any event."
    )
    turn_count: int = strawberry.field(description="Number of turns (tasks) in the session.")
    tokens_used: int = strawberry.field(description="Sum of the turns' tokens.")
    token_budget: int | None
    metadata: JSON
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row) -> "Session":
        return cls(
            id=to_global_id("Session", row.id),
            session_id=row.id,
            external_id=row.external_id,
            title=row.title,
            user_id=row.user_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_activity_at=row.last_activity_at,
            turn_count=row.turn_count,
            tokens_used=row.tokens_used,
            token_budget=row.token_budget,
            metadata=row.metadata,
            row=row,
        )

    @strawberry.field(description="The session's turns, oldest first. `first`/`last` take 0..100 and default to 10.")
    async def turns(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection["Turn"]:
        page = await queries.turn_page(info.context, self.row, first, after, last, before)
        return Connection.of(page, Turn.from_row)

    @strawberry.field(
        description="The session's events in order (by seq). `types` keeps only those types. "
        "LLM_PARTIAL events are left out unless `includePartial` is true or `types` names "
        "LLM_PARTIAL. `first`/`last` take 0..100 and default to 20."
    )
    async def events(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        types: list[str] | None = None,
        include_partial: bool | None = False,
    ) -> Connection["Event"]:
        page = await queries.event_page(
            info.context, "session", self.row.id, first, after, last, before, types, include_partial
        )
        return Connection.of(page, Event.from_row)


@strawberry.type(description="One task of a session: a user query and everything the agents did to answer it.")
class Turn(Node):
    turn: int = strawberry.field(
        description="1-based position of the turn in its session, the same whatever page it is read from."
    )
    task_id: str
    workflow_id: str | None
    user_query: str | None
    final_output: str | None = strawberry.field(
        description="The task's result, trimmed; when that is empty, the message of the first "
        "non-blank LLM_OUTPUT event of the turn; else null."
    )
    status: TurnStatus
    created_at: datetime
    completed_at: datetime | None
    tokens_used: int
    execution_time_ms: int | None = strawberry.field(
        description="The stored duration; else completedAt - createdAt (null beyond Int's 2^31-1 ms); else null."
    )
    agents_involved: list[str] = strawberry.field(description="Distinct agent ids of the turn's events, sorted.")
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row) -> "Turn":
        return cls(
            id=to_global_id("Turn", row.id),
            turn=row.position,
            task_id=row.task_id,
            workflow_id=row.workflow_id,
            user_query=row.user_query,
            final_output=final_output(row.result, row.fallback_output),
            status=TurnStatus(row.status),
            created_at=row.created_at,
            completed_at=row.completed_at,
            tokens_used=row.tokens_used,
            execution_time_ms=execution_time_ms(row.duration_ms, row.created_at, row.completed_at),
            agents_involved=row.agents,
            row=row,
        )

    @strawberry.field
    async def session(self, info: strawberry.Info) -> Session:
        return Session.from_row(await info.context.loaders.session.load(self.row.session_id))

    @strawberry.field(description="Same rules as Session.events, for this turn's events.")
    async def events(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        types: list[str] | None = None,
        include_partial: bool | None = False,
    ) -> Connection["Event"]:
        page = await queries.event_page(
            info.context, "turn", self.row.id, first, after, last, before, types, include_partial
        )
        return Connection.of(page, Event.from_row)


@strawberry.type
class Event(Node):
    seq: int = strawberry.field(description="1-based position of the event in its session.")
    type: str = strawberry.field(
        description="LLM_PROMPT, LLM_OUTPUT, LLM_PARTIAL, TOOL_INVOKED, ... or INPUT / OUTPUT / ERROR for terminal streams."
    )
    workflow_id: str | None
    agent_id: str | None
    message: str | None = strawberry.field(description="The content as text (invalid UTF-8 replaced).")
    timestamp: datetime
    elapsed_ms: float = strawberry.field(description="Milliseconds from the session's creation to this event.")
    payload: JSON | None
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row) -> "Event":
        return cls(
            id=to_global_id("Event", row.id),
            seq=row.seq,
            type=row.type,
            workflow_id=row.workflow_id,
            agent_id=row.agent_id,
            message=message_of(row.content),
            timestamp=row.timestamp,
            elapsed_ms=elapsed_ms(row.timestamp, row.session_created_at),
            payload=row.payload,
            row=row,
        )

    @strawberry.field(description="The content as stored, rendered in the given encoding.")
    def content(self, encoding: ContentEncoding = ContentEncoding.UTF8) -> str | None:
        if encoding is ContentEncoding.UTF8 or self.row.content is None:
            return self.message
        return base64.b64encode(self.row.content).decode()

    @strawberry.field
    async def turn(self, info: strawberry.Info) -> Turn | None:
        if self.row.turn_id is None:
            return None
        return Turn.from_row(await info.context.loaders.turn.load(self.row.turn_id))

    @strawberry.field
    async def session(self, info: strawberry.Info) -> Session:
        return Session.from_row(await info.context.loaders.session.load(self.row.session_id))


NODE_TYPES = {"Session": Session, "Turn": Turn, "Event": Event}
