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

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any, Callable

from sessiongraph.models.pg_wire import queries_text

MAX_INT = 2**31 - 1  # GraphQL's Int is 32 bits


class Json:
    """The annotation of a JSON value (any JSON the caller stored)."""


class Nested:
    """The annotation of a value of another declared type (`NESTED[name]`): `many` a list of
    them, `nullable` None allowed."""

    def __init__(self, name: str, nullable: bool = False, many: bool = False) -> None:
        self.name, self.nullable, self.many = name, nullable, many


class TurnStatus(Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class IdentityType(Enum):
    USER = "USER"
    MACHINE = "MACHINE"


class SessionKind(Enum):
    AGENT = "AGENT"
    TERMINAL = "TERMINAL"
    RED_TEAM = "RED_TEAM"


class SessionStatus(Enum):
    READY = "READY"
    OPEN = "OPEN"
    DONE = "DONE"


class TerminalVerb(Enum):
    EXEC = "EXEC"
    CONNECT = "CONNECT"


class ReviewStatus(Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    REVOKED = "REVOKED"


MICROS = 1_000_000  # costs are stored as whole millionths of a dollar: sums stay exact
DEFAULT_CONTEXT_PROMPT_COUNT = 5


@dataclass(frozen=True, slots=True)
class Stored:
    """A column: its SQL type (`text`, `string`, `int`, `bigint`, `uuid`, `time`, `json`,
    `bytes`), whether it may hold NULL, its default for a new row, the table it references,
    its name in the database when that is not the field's, and the one database that has it
    when not both."""

    sql: str
    nullable: bool = False
    length: int | None = None
    default: Any = None
    references: str | None = None
    primary_key: bool = False
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Imported:
    """How the import format (the contract README's "Import format") carries a field: under
    the field's name, parsed as its annotation says, `required` or not, kept as the new row's
    `into` (the field's name by default) after its rule in resolvers/rules.FIELD_RULES."""

    required: bool = False
    into: str | None = None


IMPORTED = Imported()
REQUIRED = Imported(required=True)


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
    imported: Imported | None = None

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


# What an event's row takes from its session's (through a join), by the name it has there.
EVENT_SESSION_COLUMNS = {"session_created_at": "created_at", "session_kind": "kind", "session_resource_subtype": "resource_subtype"}
# The QUERIES rendering of a chunk larger than this is its UTF8 one: parsing is linear, but a
# crafted 1 MiB chunk takes seconds, and a page may hold a hundred.
MAX_QUERIES_CHUNK = 64 * 1024


class ContentEncoding(Enum):
    UTF8 = "UTF8"
    BASE64 = "BASE64"
    QUERIES = "QUERIES"


def content_as(encoding: ContentEncoding) -> Callable[[Any], str | None]:
    """row -> the event's content rendered in `encoding`. QUERIES: the INPUT events of a
    TERMINAL session through a `postgres` resource hold PostgreSQL frontend messages, shown as
    their SQL (models/pg_wire.py); any other content as UTF8 is."""
    if encoding is ContentEncoding.BASE64:
        return lambda row: None if row.content is None else base64.b64encode(row.content).decode()
    if encoding is ContentEncoding.UTF8:
        return lambda row: message_of(row.content)
    return _queries


def _queries(row) -> str | None:
    content = row.content
    if (
        content is not None
        and len(content) <= MAX_QUERIES_CHUNK
        and row.type == "INPUT"
        and row.session_kind == "TERMINAL"
        and row.session_resource_subtype == "postgres"
    ):
        rendered = queries_text(content)
        if rendered is not None:
            return rendered
    return message_of(content)


def elapsed_ms(row) -> float:
    return (row.timestamp - row.session_created_at).total_seconds() * 1000


def _enum(enum: type[Enum], column: str) -> Callable:
    get = attrgetter(column)
    return lambda row: enum(get(row))


def _optional_enum(enum: type[Enum], column: str) -> Callable:
    get = attrgetter(column)
    return lambda row: None if (value := get(row)) is None else enum(value)


def _item(key: str, default=None) -> Callable:
    """A JSON object's value at `key` (the nested types stored as JSON)."""
    return lambda found: found.get(key, default)


def _item_enum(enum: type[Enum], key: str) -> Callable:
    return lambda found: enum(found[key])


def _item_time(key: str) -> Callable:
    return lambda found: None if (value := found.get(key)) is None else datetime.fromisoformat(value)


def _of_kind(kind: str) -> Callable:
    """The row itself when the session is of `kind` (its details are columns of the row)."""
    return lambda row: row if row.kind == kind else None


def session_cost(row) -> float:
    return row.cost_usd_micros / MICROS


def turn_cost(row) -> float | None:
    return None if row.cost_usd_micros is None else row.cost_usd_micros / MICROS


def settings_of(stored: dict | None) -> dict:
    """Red-teaming settings as read: the stored object, the prompt count 5 when not set."""
    return {"context_strategy_prompt_count": DEFAULT_CONTEXT_PROMPT_COUNT, **(stored or {})}


SESSION_FIELDS = (
    Field("id", uuid.UUID, stored=Stored("uuid", primary_key=True), exposed=False),
    Field("session_id", uuid.UUID, "The session's UUID, as stored.", reads=("id",), imported=IMPORTED),
    Field(
        "external_id",
        str | None,
        "A caller-chosen id such as 'user-123-chat', unique among the owner's live sessions.",
        stored=Stored("string", nullable=True, length=255),
        imported=IMPORTED,
    ),
    Field("title", str | None, stored=Stored("string", nullable=True, length=255), imported=IMPORTED),
    Field("user_id", uuid.UUID, stored=Stored("uuid", references="users.id"), imported=REQUIRED),
    Field("created_at", datetime, stored=Stored("time"), imported=REQUIRED),
    Field("updated_at", datetime, stored=Stored("time")),
    Field(
        "last_activity_at",
        datetime,
        "The newest of: creation, any turn's start or completion, any event.",
        stored=Stored("time"),
    ),
    Field("turn_count", int, "Number of turns (tasks) in the session.", stored=Stored("int", default=0)),
    Field("tokens_used", int, "Sum of the turns' tokens.", stored=Stored("int", default=0)),
    Field("token_budget", int | None, stored=Stored("int", nullable=True), imported=IMPORTED),
    Field("metadata", Json, stored=Stored("json", default=dict), imported=IMPORTED),
    Field("kind", SessionKind, stored=Stored("string", length=16, default="AGENT"), value=_enum(SessionKind, "kind"), imported=IMPORTED),
    Field("org_id", uuid.UUID, "The organisation the session belongs to.", stored=Stored("uuid"), imported=REQUIRED),
    Field(
        "cost_usd",
        float,
        "Sum of its turns' `costUsd`, exact to a millionth of a dollar; 0 when none was reported.",
        reads=("cost_usd_micros",),
        value=session_cost,
    ),
    Field("cost_usd_micros", int, stored=Stored("bigint", default=0), exposed=False),
    Field(
        "status",
        SessionStatus,
        "READY or OPEN until `endSession`, then DONE. Starting a turn or appending an event makes a "
        "READY session OPEN; on a DONE one, starting or completing a turn or appending an event is "
        "BAD_USER_INPUT and changes nothing.",
        stored=Stored("string", length=8, default="OPEN"),
        value=_enum(SessionStatus, "status"),
        imported=IMPORTED,
    ),
    Field("ended_at", datetime | None, stored=Stored("time", nullable=True), imported=IMPORTED),
    Field(
        "batch_id",
        str | None,
        "Groups sessions executed together, e.g. one command run on many hosts.",
        stored=Stored("string", nullable=True, length=255),
        imported=IMPORTED,
    ),
    Field(
        "correlation_id",
        str | None,
        "An external workflow or task id grouping the sessions of one logical run.",
        stored=Stored("string", nullable=True, length=255),
        imported=IMPORTED,
    ),
    Field(
        "identity_type",
        IdentityType,
        "Whether a person or a machine identity started the session: the identity type of the API key "
        "that created it; imported sessions say so on their line (USER when they do not).",
        stored=Stored("string", length=16, default="USER"),
        value=_enum(IdentityType, "identity_type"),
        imported=IMPORTED,
    ),
    Field(
        "terminal",
        Nested("TerminalDetails", nullable=True),
        "Details of a TERMINAL session; null for other kinds.",
        reads=("kind",),
        value=_of_kind("TERMINAL"),
    ),
    Field(
        "red_team",
        Nested("RedTeamDetails", nullable=True),
        "Details of a RED_TEAM session; null for other kinds.",
        reads=("kind",),
        value=_of_kind("RED_TEAM"),
    ),
    # The last seq given to an event of this session; writers take the next ones under the
    # row's lock, so seqs stay gapless.
    Field("event_count", int, stored=Stored("int", default=0), exposed=False),
    Field("deleted_at", datetime | None, stored=Stored("time", nullable=True), exposed=False),
    Field("deleted_by", uuid.UUID | None, stored=Stored("uuid", nullable=True), exposed=False),
    # The title folded for search (models/search.fold), kept by the writers.
    Field("search_title", str | None, stored=Stored("text", nullable=True), exposed=False),
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
    Field("task_id", str, stored=Stored("string", length=255), imported=REQUIRED),
    Field("workflow_id", str | None, stored=Stored("string", nullable=True, length=255), imported=IMPORTED),
    Field("user_query", str | None, stored=Stored("text", nullable=True), imported=IMPORTED),
    Field("result", str | None, stored=Stored("text", nullable=True), exposed=False, imported=IMPORTED),
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
    Field("status", TurnStatus, stored=Stored("string", length=16), value=_enum(TurnStatus, "status"), imported=IMPORTED),
    Field("created_at", datetime, stored=Stored("time"), imported=REQUIRED),
    Field("completed_at", datetime | None, stored=Stored("time", nullable=True), imported=IMPORTED),
    Field("tokens_used", int, stored=Stored("int", default=0), imported=IMPORTED),
    Field("duration_ms", int | None, stored=Stored("int", nullable=True), exposed=False, imported=IMPORTED),
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
    Field(
        "cost_usd",
        float | None,
        "What the turn cost in US dollars, as its writer reported it (0..1,000,000, at most 6 decimals).",
        reads=("cost_usd_micros",),
        value=turn_cost,
        imported=Imported(into="cost_usd_micros"),
    ),
    Field("cost_usd_micros", int | None, stored=Stored("bigint", nullable=True), exposed=False),
    Field(
        "endpoint",
        str | None,
        "The endpoint the prompt went to (RED_TEAM sessions).",
        stored=Stored("string", nullable=True, length=255),
        imported=IMPORTED,
    ),
    Field(
        "prepared_prompt",
        str | None,
        "The prompt as sent, after the template and context strategy.",
        stored=Stored("text", nullable=True),
        imported=IMPORTED,
    ),
    Field(
        "red_team_settings",
        Nested("RedTeamSettings", nullable=True),
        "The settings the prompt was sent with (RED_TEAM sessions).",
        stored=Stored("json", nullable=True),
        value=lambda row: None if row.red_team_settings is None else settings_of(row.red_team_settings),
        imported=IMPORTED,
    ),
    # The user query and the result folded for search (models/search.fold), kept by the writers.
    Field("search_query", str | None, stored=Stored("text", nullable=True), exposed=False),
    Field("search_result", str | None, stored=Stored("text", nullable=True), exposed=False),
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
        imported=REQUIRED,
    ),
    Field("workflow_id", str | None, stored=Stored("string", nullable=True, length=255)),
    Field("agent_id", str | None, stored=Stored("string", nullable=True, length=255), imported=IMPORTED),
    # Raw bytes: text is stored UTF-8 encoded, so every encoding can be rendered from it.
    Field("content", bytes | None, stored=Stored("bytes", nullable=True), exposed=False),
    Field(
        "message",
        str | None,
        "The content as text (invalid UTF-8 replaced).",
        reads=("content",),
        value=lambda row: message_of(row.content),
    ),
    Field("timestamp", datetime, stored=Stored("time"), imported=REQUIRED),
    Field(
        "elapsed_ms",
        float,
        "Milliseconds from the session's creation to this event.",
        reads=("timestamp", "session_created_at"),
        value=elapsed_ms,
    ),
    Field("payload", Json | None, stored=Stored("json", nullable=True), imported=IMPORTED),
    Field("dedup_key", str | None, stored=Stored("string", nullable=True, length=255), exposed=False, imported=IMPORTED),
    # No folded copy of the message: the search index and its queue hold it (models/search.py,
    # migration 0008).
)

# The details of TERMINAL and RED_TEAM sessions: columns of the session's row (the objects
# read from the row itself), and JSON objects stored in them (read by key).

TERMINAL_FIELDS = (
    Field("verb", TerminalVerb, stored=Stored("string", nullable=True, length=16), value=_enum(TerminalVerb, "verb")),
    Field("exit_code", int | None, "The Linux exit code, once known.", stored=Stored("int", nullable=True)),
    Field("resource", Nested("Resource"), reads=("resource_name",), value=lambda row: row),
    Field("input", str | None, "What was run, for EXEC sessions.", stored=Stored("text", nullable=True, name="terminal_input")),
    Field("input_size", int, "Bytes of `input`.", stored=Stored("int", default=0)),
    Field(
        "stream_size",
        int,
        "Bytes of the session's stored INPUT, OUTPUT and ERROR contents.",
        stored=Stored("bigint", default=0),
    ),
    Field("columns", int | None, "Terminal size, for replay.", stored=Stored("int", nullable=True, name="terminal_columns")),
    Field("rows", int | None, stored=Stored("int", nullable=True, name="terminal_rows")),
    Field(
        "user_email",
        str | None,
        "The person behind the session as the gateway's identity provider knows them.",
        stored=Stored("string", nullable=True, length=255),
    ),
    Field("user_display_name", str | None, stored=Stored("string", nullable=True, length=255)),
    Field("user_subject", str | None, stored=Stored("string", nullable=True, length=255)),
    Field(
        "machine_identity_id",
        str | None,
        "The machine identity, when `identityType` is MACHINE.",
        stored=Stored("string", nullable=True, length=255),
    ),
    Field("data_masking", Nested("DataMasking", nullable=True), stored=Stored("json", nullable=True)),
    Field(
        "guardrails",
        Nested("GuardrailMatch", many=True),
        "Guardrail rules that matched; non-empty means the session was blocked by at least one.",
        stored=Stored("json", default=list),
    ),
    # How many guardrail matches `guardrails` holds, kept by the writers: what the
    # `blockedByGuardrail` filter reads.
    Field("guardrail_count", int, stored=Stored("int", default=0), exposed=False),
    Field(
        "review",
        Nested("Review", nullable=True),
        reads=("review_status",),
        value=lambda row: row if row.review_status is not None else None,
    ),
    Field(
        "ai_analysis",
        Json | None,
        "An analysis of the session by a model, as the gateway stored it.",
        stored=Stored("json", nullable=True),
    ),
)

RESOURCE_FIELDS = (
    Field("name", str, "The connection's name, e.g. pgdemo.", stored=Stored("string", nullable=True, length=255, name="resource_name")),
    Field(
        "type",
        str,
        "database, application, custom, ...",
        stored=Stored("string", nullable=True, length=255, name="resource_type"),
    ),
    Field(
        "subtype",
        str | None,
        "postgres, mysql, ssh, tcp, ...",
        stored=Stored("string", nullable=True, length=255, name="resource_subtype"),
    ),
    Field(
        "resource_name",
        str | None,
        "The resource behind the connection.",
        stored=Stored("string", nullable=True, length=255, name="resource_resource_name"),
    ),
    Field(
        "tags",
        Json,
        'A JSON object of string values, e.g. {"team": "banking"}.',
        stored=Stored("json", nullable=True, name="resource_tags"),
        value=lambda row: row.resource_tags or {},
    ),
)

REVIEW_FIELDS = (
    Field("status", ReviewStatus, stored=Stored("string", nullable=True, length=16, name="review_status"), value=_enum(ReviewStatus, "review_status")),
    Field("created_at", datetime, stored=Stored("time", nullable=True, name="review_created_at")),
    Field(
        "decisions",
        Nested("ReviewDecision", many=True),
        stored=Stored("json", nullable=True, name="review_decisions"),
        value=lambda row: row.review_decisions or [],
    ),
)

RED_TEAM_FIELDS = (
    Field(
        "runner_id",
        str,
        "The runner's id. A RED_TEAM session created or imported without an external id takes the "
        "runner id as its external id, so `session(id: runnerId)` finds it.",
        stored=Stored("string", nullable=True, length=255),
    ),
    Field("endpoints", list[str], "The endpoints under test, in the runner's order.", stored=Stored("json", nullable=True)),
    Field(
        "settings",
        Nested("RedTeamSettings"),
        "The settings in force now; each turn keeps those it was sent with.",
        stored=Stored("json", nullable=True, name="red_team_settings"),
        value=lambda row: settings_of(row.red_team_settings),
    ),
)

DATA_MASKING_FIELDS = (
    Field("error_count", int, value=_item("error_count")),
    Field("info_types", Json, 'Redactions by info type, e.g. {"EMAIL_ADDRESS": 1}.', value=_item("info_types")),
    Field("total_redact_count", int, value=_item("total_redact_count")),
    Field("transformed_bytes", int, value=_item("transformed_bytes")),
)

GUARDRAIL_MATCH_FIELDS = (
    Field("rule", str, value=_item("rule")),
    Field("direction", str, "INPUT or OUTPUT: where it matched.", value=_item("direction")),
    Field("matched_words", list[str], value=_item("matched_words", [])),
)

REVIEW_DECISION_FIELDS = (
    Field("group", str, value=_item("group")),
    Field("status", ReviewStatus, value=_item_enum(ReviewStatus, "status")),
    Field("reviewer_email", str | None, value=_item("reviewer_email")),
    Field("decided_at", datetime | None, value=_item_time("decided_at")),
)

RED_TEAM_SETTINGS_FIELDS = (
    Field("attack_module", str | None, value=_item("attack_module")),
    Field("context_strategy", str | None, value=_item("context_strategy")),
    Field(
        "context_strategy_prompt_count",
        int,
        "How many earlier prompts of the chat the context strategy adds (0..100, default 5).",
        value=_item("context_strategy_prompt_count"),
    ),
    Field("prompt_template", str | None, value=_item("prompt_template")),
    Field("metric", str | None, value=_item("metric")),
    Field("system_prompt", str | None, value=_item("system_prompt")),
)

# The node types, each the fields of one table's rows.
FIELDS = {"Session": SESSION_FIELDS, "Turn": TURN_FIELDS, "Event": EVENT_FIELDS}
# The other object types, by GraphQL name, and what each is made from.
NESTED = {
    "TerminalDetails": TERMINAL_FIELDS,
    "Resource": RESOURCE_FIELDS,
    "Review": REVIEW_FIELDS,
    "RedTeamDetails": RED_TEAM_FIELDS,
    "DataMasking": DATA_MASKING_FIELDS,
    "GuardrailMatch": GUARDRAIL_MATCH_FIELDS,
    "ReviewDecision": REVIEW_DECISION_FIELDS,
    "RedTeamSettings": RED_TEAM_SETTINGS_FIELDS,
}
NESTED_DESCRIPTIONS = {
    "TerminalDetails": "A TERMINAL session as the access gateway recorded it.",
    "Resource": "The connection a TERMINAL session went through.",
    "RedTeamDetails": "A RED_TEAM session: a runner sending the same prompts to several endpoints.",
}
# Each table's columns: its node type's stored fields, then those of the details stored in
# its rows.
TABLE_FIELDS = {
    "Session": SESSION_FIELDS + TERMINAL_FIELDS + RESOURCE_FIELDS + REVIEW_FIELDS + RED_TEAM_FIELDS,
    "Turn": TURN_FIELDS,
    "Event": EVENT_FIELDS,
}


def exposed(type_name: str) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS.get(type_name) or NESTED[type_name] if f.exposed)


def columns_read(f: Field) -> tuple[str, ...]:
    """The columns a field's value follows from, the columns of the objects read from the
    row itself included (a TERMINAL session's details are its row's columns)."""
    columns = dict.fromkeys(f.columns)
    if isinstance(f.annotation, Nested) and f.stored is None:
        for g in NESTED[f.annotation.name]:
            if g.stored is not None or g.reads:
                columns.update(dict.fromkeys(columns_read(g)))
    return tuple(columns)


def imported(type_name: str) -> tuple[Field, ...]:
    """The fields of `type_name` the import format carries under their names."""
    return tuple(f for f in TABLE_FIELDS[type_name] if f.imported is not None)


def stored(type_name: str) -> tuple[Field, ...]:
    """The columns of the table of `type_name`'s rows."""
    return tuple(f for f in TABLE_FIELDS[type_name] if f.stored is not None)


@dataclass(frozen=True, slots=True)
class Filter:
    """One argument of the session list's filter: its Python type, the columns it looks at
    and how (`substring`: a case-insensitive substring of any of them; `after`, `before`:
    later or earlier than the value; `in`: among the values (an Enum's by value); `equals`;
    `nonzero`: true keeps the sessions whose column is above 0, false those where it is 0;
    `holds`: the column's JSON array holds the value; `contains`: the column's JSON value
    contains the given JSON object, as PostgreSQL's jsonb `@>` says, see
    models/containment.py; `text`: a search query, see models/search.py). `of_kind`: only
    sessions of that kind."""

    name: str
    annotation: Any
    columns: tuple[str, ...]
    how: str
    description: str | None = None
    of_kind: str | None = None


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
    Filter("kinds", list[SessionKind] | None, ("kind",), "in"),
    Filter("statuses", list[SessionStatus] | None, ("status",), "in"),
    Filter("batch_id", str | None, ("batch_id",), "equals"),
    Filter("correlation_id", str | None, ("correlation_id",), "equals"),
    Filter("identity_type", IdentityType | None, ("identity_type",), "equals"),
    Filter("ended_after", datetime | None, ("ended_at",), "after"),
    Filter("ended_before", datetime | None, ("ended_at",), "before"),
    Filter(
        "resource_names", list[str] | None, ("resource_name",), "in",
        "TERMINAL sessions through these connections (Resource.name).", of_kind="TERMINAL",
    ),
    Filter(
        "resource_types", list[str] | None, ("resource_type",), "in",
        "TERMINAL sessions of these resource types.", of_kind="TERMINAL",
    ),
    Filter("verbs", list[TerminalVerb] | None, ("verb",), "in", of_kind="TERMINAL"),
    Filter("review_statuses", list[ReviewStatus] | None, ("review_status",), "in"),
    Filter(
        "blocked_by_guardrail", bool | None, ("guardrail_count",), "nonzero",
        "Sessions blocked by a guardrail (true) or not (false).",
    ),
    Filter("runner_ids", list[str] | None, ("runner_id",), "in", of_kind="RED_TEAM"),
    Filter("endpoint", str | None, ("endpoints",), "holds", "RED_TEAM sessions testing this endpoint.", of_kind="RED_TEAM"),
    Filter(
        "metadata", Json | None, ("metadata",), "contains",
        "Sessions whose metadata contains this JSON object: every key present with an equal value, "
        'recursively for objects ({"team": "banking"} matches {"team": "banking", "env": "prod"}). '
        "As PostgreSQL's jsonb containment (@>), on every database: an array contains another when "
        "each of the other's elements is contained in one of its own, in any order, duplicates "
        'ignored ({"tags": ["a"]} matches {"tags": ["b", "a"]}); numbers are equal by value (1 and '
        '1.0), never equal to strings ("1") or booleans (true); null matches only a stored null; {} '
        "matches every session. Not an object: BAD_USER_INPUT. A value no metadata can hold (a "
        "string with U+0000) matches nothing.",
    ),
    Filter(
        "text", str | None, ("search_title",), "text",
        "Sessions where the title, a turn's user query or result, or an event's text content "
        "matches this search query (as `searchEvents` reads it).",
    ),
)
