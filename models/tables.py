"""The tables: users and their API keys, sessions, turns and events.

Figures a read would otherwise aggregate (a session's turn count, tokens and last activity,
a turn's fallback output and agents) are kept on the row by the code that writes, so that
every read is one indexed range scan.
"""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, Uuid, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessiongraph.models.types import BigId, JSONValue, UTCDateTime

LIVE = text("deleted_at IS NULL")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, uuid.UUID: Uuid}


class User(Base):
    """A user belongs to the organisation it was first seen in, for good."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # sha256 of the key: keys are 256 random bits, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    org_id: Mapped[uuid.UUID]
    role: Mapped[str] = mapped_column(String(16))  # USER | ADMIN
    identity_type: Mapped[str] = mapped_column(String(16))  # USER | MACHINE
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


# Keyset orders of the session list: each is served, per visibility scope, by an index on
# (scope, key, id) over live sessions.
SESSION_ORDER_COLUMNS = ("created_at", "updated_at", "last_activity_at", "tokens_used")


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    token_budget: Mapped[int | None]
    meta: Mapped[dict] = mapped_column("metadata", JSONValue, default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
    turn_count: Mapped[int] = mapped_column(default=0)
    tokens_used: Mapped[int] = mapped_column(default=0)
    # The last seq given to an event of this session; writers take the next ones under
    # the row's lock, so seqs stay gapless.
    event_count: Mapped[int] = mapped_column(default=0)
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[uuid.UUID | None]

    __table_args__ = (
        Index(
            "sessions_owner_external_id",
            "user_id",
            "external_id",
            unique=True,
            sqlite_where=text("deleted_at IS NULL AND external_id IS NOT NULL"),
            postgresql_where=text("deleted_at IS NULL AND external_id IS NOT NULL"),
        ),
        *(
            Index(
                f"sessions_{scope}_{column}",
                scope,
                column,
                "id",
                sqlite_where=LIVE,
                postgresql_where=LIVE,
            )
            for scope in ("user_id", "org_id")
            for column in SESSION_ORDER_COLUMNS
        ),
    )


class Turn(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"))
    position: Mapped[int]  # 1-based, the turn's number in its session
    task_id: Mapped[str] = mapped_column(String(255))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    user_query: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    tokens_used: Mapped[int] = mapped_column(default=0)
    duration_ms: Mapped[int | None]
    # The message of the turn's first non-blank LLM_OUTPUT event, kept by the writers.
    fallback_output: Mapped[str | None] = mapped_column(Text)
    # Distinct agent ids of the turn's events, sorted, kept by the writers.
    agents: Mapped[list] = mapped_column(JSONValue, default=list)

    __table_args__ = (
        Index("turns_session_position", "session_id", "position", unique=True),
        Index("turns_session_task", "session_id", "task_id", unique=True),
    )


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"))
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id"))
    seq: Mapped[int]  # 1-based position in the session
    type: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    agent_id: Mapped[str | None] = mapped_column(String(255))
    # Raw bytes: text is stored UTF-8 encoded, so every encoding can be rendered from it.
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    timestamp: Mapped[datetime]
    payload: Mapped[dict | list | None] = mapped_column(JSONValue)
    dedup_key: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("events_session_seq", "session_id", "seq", unique=True),
        Index("events_turn_seq", "turn_id", "seq"),
        Index(
            "events_session_dedup_key",
            "session_id",
            "dedup_key",
            unique=True,
            sqlite_where=text("dedup_key IS NOT NULL"),
            postgresql_where=text("dedup_key IS NOT NULL"),
        ),
    )
