"""The tables: users and their API keys, sessions, turns and events (whose columns follow
from the field declarations of models/fields.py).

Figures a read would otherwise aggregate (a session's turn count, tokens and last activity,
a turn's fallback output and agents) are kept on the row by the code that writes, so that
every read is one indexed range scan.
"""

import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String, Table, Text, Uuid, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessiongraph.models.fields import Stored, stored
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


_SQL_TYPES = {
    "text": lambda s: Text(),
    "string": lambda s: String(s.length),
    "int": lambda s: Integer(),
    "bigint": lambda s: BigId,
    "uuid": lambda s: Uuid(),
    "time": lambda s: UTCDateTime(),
    "json": lambda s: JSONValue,
    "bytes": lambda s: LargeBinary(),
}


def _column(name: str, stored: Stored) -> Column:
    arguments = [ForeignKey(stored.references)] if stored.references else []
    return Column(
        name,
        _SQL_TYPES[stored.sql](stored),
        *arguments,
        primary_key=stored.primary_key,
        nullable=stored.nullable,
        default=stored.default,
        autoincrement=stored.sql == "bigint" and stored.primary_key,
    )


def declared_table(name: str, type_name: str, *indexes) -> Table:
    """The table whose columns the declarations of `type_name` store, in their order."""
    columns = [_column(f.column_name, f.stored) for f in stored(type_name)]
    return Table(name, Base.metadata, *columns, *indexes)


# Keyset orders of the session list: each is served, per visibility scope, by an index on
# (scope, key, id) over live sessions.
SESSION_ORDER_COLUMNS = ("created_at", "updated_at", "last_activity_at", "tokens_used")
# Filters of the session list served, per visibility scope, by an index on (scope, column,
# created_at, id) over live sessions (the default order within each value), and the rows
# each index holds (those where the column is set). Migration 0003.
SESSION_FILTER_INDEXES = {"kind": LIVE, "resource_name": text("deleted_at IS NULL AND resource_name IS NOT NULL"),
                          "review_status": text("deleted_at IS NULL AND review_status IS NOT NULL")}


def session_filter_indexes() -> list[Index]:
    """Those indexes, and on PostgreSQL a GIN index on metadata for the `metadata`
    filter's `@>` (jsonb_path_ops: containment only, smaller and faster than the default).
    SQLite cannot index containment: there the index of that name is partial over no row
    (WHERE 0, nothing to keep up), so that both databases have the indexes declared here."""
    found = [
        Index(f"sessions_{scope}_{column}_created_at", scope, column, "created_at", "id",
              sqlite_where=where, postgresql_where=where)
        for scope in ("user_id", "org_id")
        for column, where in SESSION_FILTER_INDEXES.items()
    ]
    found.append(
        Index("sessions_metadata_path_ops", "metadata", postgresql_using="gin",
              postgresql_ops={"metadata": "jsonb_path_ops"}, sqlite_where=text("0"))
    )
    return found


class Session(Base):
    __table__ = declared_table(
        "sessions",
        "Session",
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
        *session_filter_indexes(),
    )
    # `metadata` is the Declarative base's own attribute: the column is mapped as `meta`.
    meta = __table__.c.metadata


class Turn(Base):
    __table__ = declared_table(
        "turns",
        "Turn",
        Index("turns_session_position", "session_id", "position", unique=True),
        Index("turns_session_task", "session_id", "task_id", unique=True),
        Index("turns_session_endpoint_position", "session_id", "endpoint", "position"),
    )


class Event(Base):
    __table__ = declared_table(
        "events",
        "Event",
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
        # Full-text search: tables of its own, made by migrations (models/search.py).
    )


class DeploymentSecret(Base):
    """Secrets every process of a deployment shares, made once (the download links' signing
    key: downloads/signing.py; migration 0004)."""

    __tablename__ = "deployment_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


# How many events of each type a session and a turn have, kept by the one writer
# (models/recording.py) in the transaction that stores the events: `totalCount` of an events
# connection sums a few of these rows (one a type) instead of counting the events. Migration
# 0006 computes them for the events stored before.


class SessionEventCount(Base):
    """A session's events of one type, in a turn or not."""

    __tablename__ = "session_event_counts"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class TurnEventCount(Base):
    """A turn's events of one type."""

    __tablename__ = "turn_event_counts"

    turn_id: Mapped[int] = mapped_column(BigId, ForeignKey("turns.id"), primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
