"""Every field of a session, a turn and an event, declared once: the column it is stored in
(if it is), how its value follows from a row, the Python type of that value and what it
means. Everything else follows from these lists: the tables (models/tables.py), the rows
the writers build (models/new_sessions.py), the GraphQL types (schema/types.py), the
planner's compiled readers and the pages' column lists (planner/compiled.py), the session
list's filters (resolvers/queries.py, schema/inputs.py) and the planner's differential test.

Knows nothing of GraphQL (and imports no SQLAlchemy): a type is a Python annotation the
schema turns into a GraphQL type (`Json` marks a JSON value), a column a `Stored` that
models/tables.py turns into SQLAlchemy's.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any, Callable

MAX_INT = 2**31 - 1  # GraphQL's Int is 32 bits


class Json:
    """The annotation of a JSON value (any JSON the caller stored)."""


class TurnStatus(Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Stored:
    """A column: its SQL type (`text`, `string`, `int`, `bigint`, `uuid`, `time`, `json`,
    `bytes`), whether it may hold NULL, its default for a new row, the table it references,
    and its name in the database when that is not the field's."""

    sql: str
    nullable: bool = False
    length: int | None = None
    default: Any = None
    references: str | None = None
    primary_key: bool = False
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One field. `name` is the Python name (GraphQL's is its camelCase); `stored` its
    column when it is one; `reads` the columns its value follows from (the field's own
    column by default) and `value` how (the column's value as it is by default). A field
    with `exposed` False is a column no API shows (an owner's organisation, a deletion)."""

    name: str
    annotation: Any
    description: str | None = None
    stored: Stored | None = None
    reads: tuple[str, ...] = ()
    value: Callable[[Any], Any] | None = None
    exposed: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return self.reads or (self.column_name,)

    @property
    def column_name(self) -> str:
        return (self.stored and self.stored.name) or self.name

    @property
    def getter(self) -> Callable[[Any], Any]:
        """row -> the field's value."""
        return self.value or attrgetter(self.columns[0])


# How the computed values follow from a row's columns.


def final_output(row) -> str | None:
    return (row.result or "").strip() or row.fallback_output


def execution_time_ms(row) -> int | None:
    duration_ms = row.duration_ms
    if duration_ms is None and row.completed_at is not None:
        duration_ms = round((row.completed_at - row.created_at).total_seconds() * 1000)
        if duration_ms > MAX_INT:  # a turn of over 24.8 days: GraphQL's Int cannot say it
            return None
    return duration_ms


def message_of(content: bytes | None) -> str | None:
    return None if content is None else content.decode("utf-8", "replace")


def elapsed_ms(row) -> float:
    return (row.timestamp - row.session_created_at).total_seconds() * 1000


def _status(row) -> TurnStatus:
    return TurnStatus(row.status)


SESSION_FIELDS = (
    Field("id", uuid.UUID, stored=Stored("uuid", primary_key=True), exposed=False),
    Field("session_id", uuid.UUID, "The session's UUID, as stored.", reads=("id",)),
    Field(
        "external_id",
        str | None,
        "A caller-chosen id such as 'user-123-chat', unique among the owner's live sessions.",
        stored=Stored("string", nullable=True, length=255),
    ),
    Field("title", str | None, stored=Stored("string", nullable=True, length=255)),
    Field("org_id", uuid.UUID, stored=Stored("uuid"), exposed=False),
    Field("user_id", uuid.UUID, stored=Stored("uuid", references="users.id")),
    Field("created_at", datetime, stored=Stored("time")),
    Field("updated_at", datetime, stored=Stored("time")),
    Field(
        "last_activity_at",
        datetime,
        "The newest of: creation, any turn's start or completion, any event.",
        stored=Stored("time"),
    ),
    Field("turn_count", int, "Number of turns (tasks) in the session.", stored=Stored("int", default=0)),
    Field("tokens_used", int, "Sum of the turns' tokens.", stored=Stored("int", default=0)),
    Field("token_budget", int | None, stored=Stored("int", nullable=True)),
    Field("metadata", Json, stored=Stored("json", default=dict)),
    # The last seq given to an event of this session; writers take the next ones under the
    # row's lock, so seqs stay gapless.
    Field("event_count", int, stored=Stored("int", default=0), exposed=False),
    Field("deleted_at", datetime | None, stored=Stored("time", nullable=True), exposed=False),
    Field("deleted_by", uuid.UUID | None, stored=Stored("uuid", nullable=True), exposed=False),
)

TURN_FIELDS = (
    Field("id", int, stored=Stored("bigint", primary_key=True), exposed=False),
    Field("session_id", uuid.UUID, stored=Stored("uuid", references="sessions.id"), exposed=False),
    Field(
        "turn",
        int,
        "1-based position of the turn in its session, the same whatever page it is read from.",
        stored=Stored("int", name="position"),
    ),
    Field("task_id", str, stored=Stored("string", length=255)),
    Field("workflow_id", str | None, stored=Stored("string", nullable=True, length=255)),
    Field("user_query", str | None, stored=Stored("text", nullable=True)),
    Field("result", str | None, stored=Stored("text", nullable=True), exposed=False),
    # The message of the turn's first non-blank LLM_OUTPUT event, kept by the writers.
    Field("fallback_output", str | None, stored=Stored("text", nullable=True), exposed=False),
    Field(
        "final_output",
        str | None,
        "The task's result, trimmed; when that is empty, the message of the first non-blank "
        "LLM_OUTPUT event of the turn; else null.",
        reads=("result", "fallback_output"),
        value=final_output,
    ),
    Field("status", TurnStatus, stored=Stored("string", length=16), value=_status),
    Field("created_at", datetime, stored=Stored("time")),
    Field("completed_at", datetime | None, stored=Stored("time", nullable=True)),
    Field("tokens_used", int, stored=Stored("int", default=0)),
    Field("duration_ms", int | None, stored=Stored("int", nullable=True), exposed=False),
    Field(
        "execution_time_ms",
        int | None,
        "The stored duration; else completedAt - createdAt (null beyond Int's 2^31-1 ms); else null.",
        reads=("duration_ms", "created_at", "completed_at"),
        value=execution_time_ms,
    ),
    # Distinct agent ids of the turn's events, sorted, kept by the writers.
    Field(
        "agents_involved",
        list[str],
        "Distinct agent ids of the turn's events, sorted.",
        stored=Stored("json", default=list, name="agents"),
    ),
)

EVENT_FIELDS = (
    Field("id", int, stored=Stored("bigint", primary_key=True), exposed=False),
    Field("session_id", uuid.UUID, stored=Stored("uuid", references="sessions.id"), exposed=False),
    Field("turn_id", int | None, stored=Stored("bigint", nullable=True, references="turns.id"), exposed=False),
    Field("seq", int, "1-based position of the event in its session.", stored=Stored("int")),
    Field(
        "type",
        str,
        "LLM_PROMPT, LLM_OUTPUT, LLM_PARTIAL, TOOL_INVOKED, ... or INPUT / OUTPUT / ERROR for terminal streams.",
        stored=Stored("string", length=64),
    ),
    Field("workflow_id", str | None, stored=Stored("string", nullable=True, length=255)),
    Field("agent_id", str | None, stored=Stored("string", nullable=True, length=255)),
    # Raw bytes: text is stored UTF-8 encoded, so every encoding can be rendered from it.
    Field("content", bytes | None, stored=Stored("bytes", nullable=True), exposed=False),
    Field(
        "message",
        str | None,
        "The content as text (invalid UTF-8 replaced).",
        reads=("content",),
        value=lambda row: message_of(row.content),
    ),
    Field("timestamp", datetime, stored=Stored("time")),
    Field(
        "elapsed_ms",
        float,
        "Milliseconds from the session's creation to this event.",
        reads=("timestamp", "session_created_at"),
        value=elapsed_ms,
    ),
    Field("payload", Json | None, stored=Stored("json", nullable=True)),
    Field("dedup_key", str | None, stored=Stored("string", nullable=True, length=255), exposed=False),
)

FIELDS = {"Session": SESSION_FIELDS, "Turn": TURN_FIELDS, "Event": EVENT_FIELDS}


def exposed(type_name: str) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS[type_name] if f.exposed)


def stored(type_name: str) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS[type_name] if f.stored is not None)


@dataclass(frozen=True, slots=True)
class Filter:
    """One argument of the session list's filter: its Python type, the columns it looks at
    and how (`substring`: a case-insensitive substring of any of them; `after`, `before`:
    later or earlier than the value; `in`: among the values; `equals`)."""

    name: str
    annotation: Any
    columns: tuple[str, ...]
    how: str
    description: str | None = None


SESSION_FILTERS = (
    Filter(
        "search", str | None, ("title", "external_id"), "substring",
        "Case-insensitive substring of the title or the external id.",
    ),
    Filter("created_after", datetime | None, ("created_at",), "after"),
    Filter("created_before", datetime | None, ("created_at",), "before"),
    Filter("external_ids", list[str] | None, ("external_id",), "in", "Only these external ids."),
    Filter(
        "user_id", uuid.UUID | None, ("user_id",), "equals",
        "Only this owner's sessions (an ADMIN's filter; a USER sees only its own anyway).",
    ),
)
