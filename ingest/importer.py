"""`sessiongraph import`: sessions from JSON Lines, one session a line, each stored whole
or not at all. The input is streamed line by line, so a file of any size runs in the memory
of its largest line."""

import base64
import contextlib
import gc
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

import orjson

from sessiongraph import migrations
from sessiongraph.models import create_engine
from sessiongraph.models.new_sessions import NewEvent, NewSession, NewTurn
from sessiongraph.resolvers import rules
from sessiongraph.resolvers.rules import RuleBroken

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

TURN_STATUSES = {"RUNNING", "COMPLETED", "FAILED", "CANCELLED"}
SESSION_KINDS = ("AGENT", "TERMINAL", "RED_TEAM")
SESSION_STATUSES = ("READY", "OPEN", "DONE")
IDENTITY_TYPES = ("USER", "MACHINE")
# What the columns hold on PostgreSQL (SQLite would take more): checked here so that a line
# is accepted or rejected alike on both databases.
INT_MAX = 2**31 - 1
# The input rules' lengths (resolvers/rules.py), which a test holds to the columns' (reading
# the tables here would load SQLAlchemy).
TASK_ID = WORKFLOW_ID = AGENT_ID = DEDUP_KEY = rules.MAX_NAME_LENGTH
EVENT_TYPE = rules.MAX_TYPE_LENGTH


class LineError(ValueError):
    """A line breaks a rule of the import format."""


def _rule(where: str, key: str, check, *values):
    """`check(*values)`, one of the input rules the mutations apply (resolvers/rules.py): a
    line is refused whenever a mutation would refuse the same values, with the mutation's
    message after the value's place in the line."""
    try:
        return check(*values)
    except RuleBroken as broken:
        raise LineError(f"{where}: `{key}`: {broken}") from None


@dataclass(slots=True)
class ImportReport:
    lines: int = 0
    sessions_created: int = 0
    sessions_updated: int = 0
    turns: int = 0
    events: int = 0
    rejected: int = 0

    def summary(self) -> str:
        return (
            f"stored {self.sessions_created} new sessions, added to {self.sessions_updated} existing; "
            f"{self.turns} turns, {self.events} events; {self.rejected} of {self.lines} lines rejected"
        )


def _get(obj: dict, key: str, kind, where: str, required: bool = False):
    value = obj.get(key)
    if value is None:
        if required:
            raise LineError(f"{where}: `{key}` is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LineError(f"{where}: `{key}` must be {getattr(kind, '__name__', kind)}")
    if kind is str and "\x00" in value:  # the rule of every stored text (PostgreSQL's cannot hold NUL)
        _rule(where, key, rules.check_no_nul, value, key.replace("_", " "))
    return value


def _json(obj: dict, key: str, where: str):
    """A JSON value of the line: the rule of every stored JSON value (depth, no NUL)."""
    return _rule(where, key, rules.check_json, obj.get(key), key.replace("_", " "))


def _uuid(obj: dict, key: str, where: str, required: bool = False) -> uuid.UUID | None:
    value = _get(obj, key, str, where, required)
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise LineError(f"{where}: `{key}` is not a UUID") from None


def _time(obj: dict, key: str, where: str, required: bool = False) -> datetime | None:
    value = _get(obj, key, str, where, required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise LineError(f"{where}: `{key}` is not an ISO-8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _count(obj: dict, key: str, where: str) -> int | None:
    value = _get(obj, key, int, where)
    if value is not None and not 0 <= value <= INT_MAX:
        raise LineError(f"{where}: `{key}` must be between 0 and {INT_MAX}")
    return value


def parse_event(obj, where: str) -> NewEvent:
    if not isinstance(obj, dict):
        raise LineError(f"{where}: an event must be an object")
    if obj.get("message") is not None and obj.get("message_b64") is not None:
        raise LineError(f"{where}: an event has at most one of `message` and `message_b64`")
    message = _get(obj, "message", str, where)
    encoded = _get(obj, "message_b64", str, where)
    kind = _get(obj, "type", str, where, required=True)
    timestamp = _time(obj, "timestamp", where, required=True)
    agent_id = _get(obj, "agent_id", str, where)
    payload = _json(obj, "payload", where)
    dedup_key = _get(obj, "dedup_key", str, where)
    _rule(where, "type", rules.check_event_type, kind)
    _rule(where, "agent_id", rules.check_name, agent_id, "agent id")
    _rule(where, "dedup_key", rules.check_name, dedup_key, "dedup key")
    content = _rule(where, "message" if encoded is None else "message_b64", rules.event_content, message, encoded)
    _rule(where, "payload", rules.check_payload, payload)
    return NewEvent(type=kind, timestamp=timestamp, agent_id=agent_id, content=content, payload=payload, dedup_key=dedup_key)


def _events(obj: dict, where: str, clean: bool = False) -> list[NewEvent]:
    """`clean`: the line holds no escaped NUL, so no string in it can hold one."""
    events = _get(obj, "events", list, where) or []
    if clean:
        try:
            return [_plain_event(e) for e in events]
        except _NotPlain:
            pass  # the checks below find what it is, and say where
    return [parse_event(e, f"{where}.events[{i}]") for i, e in enumerate(events)]


class _NotPlain(Exception):
    """An event that `_plain_event` leaves to `parse_event`, to reject or to take."""


def _plain_event(obj) -> NewEvent:
    """`parse_event` for the common event, in one pass: what it takes, it takes as
    `parse_event` would; anything else (a wrong type, a long string, a second message, a
    timestamp it cannot read) raises `_NotPlain`. For a line without NUL characters only."""
    if type(obj) is not dict:
        raise _NotPlain
    get = obj.get
    kind, agent_id, dedup_key, message = get("type"), get("agent_id"), get("dedup_key"), get("message")
    if (
        type(kind) is not str or not is_event_type(kind)
        or (agent_id is not None and (type(agent_id) is not str or not is_name(agent_id)))
        or (dedup_key is not None and (type(dedup_key) is not str or not is_name(dedup_key)))
    ):
        raise _NotPlain
    encoded = get("message_b64")
    if message is None and encoded is None:
        content = None
    elif encoded is None and type(message) is str:
        content = message.encode()
    elif message is None and type(encoded) is str:
        try:
            content = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise _NotPlain from None
    else:
        raise _NotPlain
    payload = get("payload")
    if content is not None and len(content) > MAX_CONTENT_BYTES:
        raise _NotPlain
    if payload is not None:
        try:
            dumped = _dumps(payload)
        except TypeError:  # not JSON, or nested past what orjson writes
            raise _NotPlain from None
        # Nested no deeper than it has brackets, each level two bytes at least: one that
        # could pass the depth rule's limit is left to `parse_event`'s rules.
        if len(dumped) > MAX_PAYLOAD_BYTES or (
            len(dumped) > 2 * MAX_JSON_DEPTH and dumped.count(b"[") + dumped.count(b"{") > MAX_JSON_DEPTH
        ):
            raise _NotPlain
    stamp = get("timestamp")
    try:
        timestamp = _fromisoformat(stamp)
    except (TypeError, ValueError):
        raise _NotPlain from None
    if timestamp.tzinfo is not UTC:
        timestamp = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp.astimezone(UTC)
    # "2025-01-01T06:00:00.000000Z", which fromisoformat has just read (digits and ranges
    # included), is SQLite's text for its value with the T a space and the Z cut: cutting
    # it costs a fraction of formatting the datetime again.
    text = stamp[:26].replace("T", " ") if len(stamp) == 27 and stamp[26] == "Z" and stamp[4:20:3] == "--T::." else None
    return NewEvent(kind, timestamp, agent_id, content, payload, dedup_key, text)


_fromisoformat = datetime.fromisoformat
_dumps = orjson.dumps
is_event_type, is_name = rules.is_event_type, rules.is_name
MAX_CONTENT_BYTES, MAX_PAYLOAD_BYTES, MAX_JSON_DEPTH = rules.MAX_CONTENT_BYTES, rules.MAX_PAYLOAD_BYTES, rules.MAX_JSON_DEPTH


@dataclass(frozen=True, slots=True)
class _Kind:
    """What a line's turns are checked against: its session's kind, endpoints and settings."""

    kind: str = "AGENT"
    endpoints: tuple = ()
    settings: dict | None = None


AGENT = _Kind()


def parse_turn(obj, where: str, clean: bool = False, session: _Kind = AGENT) -> NewTurn:
    if not isinstance(obj, dict):
        raise LineError(f"{where}: a turn must be an object")
    status = _get(obj, "status", str, where) or "COMPLETED"
    if status not in TURN_STATUSES:
        raise LineError(f"{where}: `status` must be one of {', '.join(sorted(TURN_STATUSES))}")
    task_id = _get(obj, "task_id", str, where, required=True)
    created_at = _time(obj, "created_at", where, required=True)
    workflow_id = _get(obj, "workflow_id", str, where)
    completed_at = _time(obj, "completed_at", where)
    _rule(where, "task_id", rules.check_name, task_id, "task id")
    _rule(where, "workflow_id", rules.check_name, workflow_id, "workflow id")
    _rule(where, "completed_at", rules.check_completion, created_at, completed_at)
    endpoint = _get(obj, "endpoint", str, where)
    prepared_prompt = _get(obj, "prepared_prompt", str, where)
    settings = _json(obj, "red_team_settings", where)
    _rule(where, "endpoint", rules.check_turn_endpoint, session.kind, list(session.endpoints), endpoint)
    _rule(where, "prepared_prompt", rules.text_size, prepared_prompt, "prepared prompt")
    _rule(where, "red_team_settings", rules.check_turn_settings, session.kind, settings)
    if settings is not None and not isinstance(settings, dict):
        raise LineError(f"{where}: `red_team_settings` must be an object")
    if session.kind == "RED_TEAM":  # the session's, with what the turn gives over them
        settings = _rule(where, "red_team_settings", rules.check_settings, settings, session.settings)
    return NewTurn(
        task_id=task_id,
        created_at=created_at,
        workflow_id=workflow_id,
        user_query=_get(obj, "user_query", str, where),
        result=_get(obj, "result", str, where),
        status=status,
        completed_at=completed_at,
        tokens_used=_count(obj, "tokens_used", where) or 0,
        duration_ms=_count(obj, "duration_ms", where),
        cost_usd_micros=_rule(where, "cost_usd", rules.cost_micros, obj.get("cost_usd")),
        endpoint=endpoint,
        prepared_prompt=prepared_prompt,
        red_team_settings=settings,
        events=_events(obj, where, clean),
    )


def parse_session(line: bytes) -> NewSession:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise LineError(f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise LineError("a line must be a JSON object")
    where = "session"
    # JSON escapes a NUL in a string, so a line without that escape has none anywhere
    # (what looks like one may be an escaped backslash: then every value is checked).
    clean = b"\\u0000" not in line
    title = _get(obj, "title", str, where)
    external_id = _get(obj, "external_id", str, where)
    metadata = _json(obj, "metadata", where)
    if metadata is not None and not isinstance(metadata, dict):
        raise LineError(f"{where}: `metadata` must be an object")
    title = None if title is None else _rule(where, "title", rules.sanitize_title, title)
    external_id = None if external_id is None else _rule(where, "external_id", rules.check_external_id, external_id)
    metadata = _rule(where, "metadata", rules.check_metadata, metadata)
    created_at = _time(obj, "created_at", where, required=True)
    kinds = _kind_columns(obj, where, created_at)
    if kinds["kind"] == "RED_TEAM" and external_id is None:  # `session(id: runnerId)` finds it
        external_id = kinds["runner_id"]
    session = _Kind(kinds["kind"], tuple(kinds.get("endpoints") or ()), kinds.get("red_team_settings"))
    turns = _get(obj, "turns", list, where) or []
    new = NewSession(
        org_id=_uuid(obj, "org_id", where, required=True),
        user_id=_uuid(obj, "user_id", where, required=True),
        created_at=created_at,
        session_id=_uuid(obj, "session_id", where),
        external_id=external_id,
        title=title,
        token_budget=_count(obj, "token_budget", where),
        metadata=metadata,
        turns=[parse_turn(t, f"turns[{i}]", clean, session) for i, t in enumerate(turns)],
        events=_events(obj, where, clean),
        **kinds,
    )
    _rule(where, "turns", rules.check_session_tokens, 0, sum(t.tokens_used for t in new.turns))
    return new


def _one_of(obj: dict, key: str, allowed, where: str, default: str | None = None) -> str | None:
    value = _get(obj, key, str, where)
    if value is None:
        return default
    if value not in allowed:
        raise LineError(f"{where}: `{key}` must be one of {', '.join(allowed)}")
    return value


def _kind_columns(obj: dict, where: str, created_at: datetime) -> dict:
    """The session's columns of kinds.graphql: kind, status, end, grouping ids, identity
    type, and the TERMINAL or RED_TEAM details, through the mutations' rules."""
    ended_at = _time(obj, "ended_at", where)
    kind = _one_of(obj, "kind", SESSION_KINDS, where, "AGENT")
    status = _one_of(obj, "status", SESSION_STATUSES, where, "DONE" if ended_at else "OPEN")
    terminal = _json(obj, "terminal", where)
    red_team = _json(obj, "red_team", where)
    _rule(where, "kind", rules.check_kind, kind, terminal is not None, red_team is not None)
    _rule(where, "ended_at", rules.check_ended_status, status, ended_at)
    _rule(where, "ended_at", rules.check_end, created_at, ended_at)
    batch_id = _get(obj, "batch_id", str, where)
    correlation_id = _get(obj, "correlation_id", str, where)
    columns = {
        "kind": kind,
        "status": status,
        "ended_at": ended_at,
        "batch_id": _rule(where, "batch_id", rules.check_name, batch_id, "batch id"),
        "correlation_id": _rule(where, "correlation_id", rules.check_name, correlation_id, "correlation id"),
        "identity_type": _one_of(obj, "identity_type", IDENTITY_TYPES, where, "USER"),
    }
    if terminal is not None:
        columns |= _rule(where, "terminal", rules.terminal_columns, terminal, created_at)
    if red_team is not None:
        columns |= _rule(where, "red_team", rules.red_team_columns, red_team)
    return columns


# Lines are stored a batch at a time, so that the statements of a batch serve all of its
# sessions; a batch is bounded so that memory stays that of a few megabytes of input.
BATCH_LINES = 500
BATCH_BYTES = 4_000_000


async def import_file(url: str, stream: IO[bytes]) -> ImportReport:
    """The command: the schema brought to the newest version when it is behind, then the
    import."""
    engine = create_engine(url)
    try:
        await migrations.upgrade_if_behind(engine, url)
        return await import_lines(url, stream, engine=engine)
    finally:
        await engine.dispose()


async def import_lines(
    url: str,
    stream: IO[bytes],
    errors: IO[str] = sys.stderr,
    progress_every: float = 2.0,
    batch_lines: int = BATCH_LINES,
    engine: "AsyncEngine | None" = None,
) -> ImportReport:
    """Stores every valid line whole, reports the others on `errors` with their line number
    and reason. Lines go in batches of new sessions, one transaction a batch; a batch that is
    not that simple case, or that the database refuses, is stored again line by line, each in
    its own transaction, so that one bad line costs only itself. `engine`: the database's,
    when the caller has one; else one is made when the first batch is stored."""
    with _fewer_collections():
        importer = _Importer(url, engine, errors, progress_every)
        try:
            batch: list[tuple[int, NewSession]] = []
            size = 0
            for number, line in enumerate(stream, start=1):
                importer.report.lines = number
                if not line.strip():
                    continue
                try:
                    batch.append((number, parse_session(line)))
                except LineError as e:
                    importer.reject(number, str(e))
                    continue
                except Exception as e:  # noqa: BLE001 -- whatever fails reading one line costs that line only
                    importer.reject(number, f"could not be read ({_failure(e)})")
                    continue
                size += len(line)
                if len(batch) >= batch_lines or size >= BATCH_BYTES:
                    await importer.store(batch)
                    batch, size = [], 0
                    gc.collect(1)  # what a batch left in reference cycles, now that it is gone
            await importer.store(batch)
        finally:
            await importer.close()
        return importer.report


@contextlib.contextmanager
def _fewer_collections():
    """No automatic garbage collection while this runs: an import makes several objects an
    event (its dictionary and strings, a NewEvent), nearly none of them in a reference cycle,
    and collecting as they are made (every 700 new objects; even every 10,000) cost a sixth
    of its time, then about a twentieth. `import_lines` collects the young generations after
    each batch instead, when that batch's objects are gone: cycles are still collected, a
    batch later; the test of the import's memory holds it to that."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Importer:
    def __init__(self, url: str, engine: "AsyncEngine | None", errors: IO[str], progress_every: float) -> None:
        self.url, self.engine, self.errors, self.progress_every = url, engine, errors, progress_every
        self.own_engine = engine is None
        # The engine's connection, opened when first needed, then kept: checking one out of
        # the pool for every batch costs a round trip to reset it on return.
        self.connection = None
        self.report = ImportReport()
        self.last_progress = time.monotonic()

    async def _connection(self):
        if self.connection is None:
            if self.engine is None:
                self.engine = create_engine(self.url)
            self.connection = await self.engine.connect()
        return self.connection

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self.own_engine and self.engine is not None:
            await self.engine.dispose()

    async def store(self, batch: list[tuple[int, NewSession]]) -> None:
        if not batch:
            return
        stored = await self.store_new([new for _, new in batch])
        if stored is None:
            for number, new in batch:
                await self.store_line(number, new)
        else:
            for one in stored:
                self.count(one)
        self.progress(batch[-1][0])

    async def store_new(self, news: list[NewSession]):
        from sqlalchemy.exc import DBAPIError

        from sessiongraph.models.recording import store_new_sessions

        connection = await self._connection()
        try:
            async with connection.begin():
                return await store_new_sessions(connection, news)
        except Exception as e:  # noqa: BLE001 -- the lines are stored one by one: each failure costs only its line
            if isinstance(e, DBAPIError) and e.connection_invalidated:
                raise
            return None

    async def store_line(self, number: int, new: NewSession) -> None:
        # SQLAlchemy only now: a line that is not the simple case (few are, in most imports).
        from sqlalchemy.exc import DBAPIError, IntegrityError

        from sessiongraph.models.recording import OrganisationConflict, OwnerConflict, SessionEnded, TokensOver, store_session

        connection = await self._connection()
        try:
            async with connection.begin():
                stored = await store_session(connection, new)
        except OrganisationConflict:
            self.reject(number, f"user {new.user_id} belongs to another organisation than {new.org_id}")
        except OwnerConflict:
            self.reject(number, f"session {new.session_id} belongs to another owner")
        except SessionEnded:
            self.reject(number, f"session: `turns`: {rules.ENDED}")
        except TokensOver:
            self.reject(number, f"session: `turns`: {rules.TOKENS_OVER}")
        except IntegrityError as e:
            self.reject(number, f"conflicts with stored data ({e.orig.__class__.__name__})")
        except DBAPIError as e:
            if e.connection_invalidated:  # the database is gone: stop, rather than reject every line
                raise
            self.reject(number, f"the database refused it: {str(e.orig).splitlines()[0]}")
        except Exception as e:  # noqa: BLE001 -- rolled back; one line's failure ends nothing else
            self.reject(number, f"could not be stored ({_failure(e)})")
        else:
            self.count(stored)

    def count(self, stored) -> None:
        if stored.created:
            self.report.sessions_created += 1
        elif stored.turns:
            self.report.sessions_updated += 1
        self.report.turns += stored.turns
        self.report.events += stored.events

    def progress(self, number: int) -> None:
        if time.monotonic() - self.last_progress >= self.progress_every:
            self.last_progress = time.monotonic()
            print(f"... line {number}: {self.report.summary()}", file=self.errors, flush=True)

    def reject(self, number: int, reason: str) -> None:
        _reject(self.report, self.errors, number, reason)


def _failure(error: Exception) -> str:
    """An unexpected failure, in one line: its kind and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{error.__class__.__name__}: {text[0]}" if text else error.__class__.__name__


def _reject(report: ImportReport, errors: IO[str], number: int, reason: str) -> None:
    report.rejected += 1
    print(f"line {number}: rejected: {reason}", file=errors, flush=True)
