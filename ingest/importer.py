"""`sessiongraph import`: sessions from JSON Lines, one session a line, each stored whole
or not at all. The input is streamed line by line, so a file of any size runs in the memory
of its largest line."""

import base64
import contextlib
import gc
import sys
import time
import types
import typing
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import IO, TYPE_CHECKING

import orjson

from sessiongraph import migrations
from sessiongraph.models import create_engine
from sessiongraph.models import fields as declared
from sessiongraph.models.new_sessions import NewEvent, NewSession, NewTurn
from sessiongraph.resolvers import rules
from sessiongraph.resolvers.rules import RuleBroken

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# What the columns hold on PostgreSQL (SQLite would take more): checked here so that a line
# is accepted or rejected alike on both databases.
INT_MAX = declared.MAX_INT
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
    # Events waiting for the search index when the import ended (`import_file`).
    queued: int = 0

    def summary(self) -> str:
        return (
            f"stored {self.sessions_created} new sessions, added to {self.sessions_updated} existing; "
            f"{self.turns} turns, {self.events} events; {self.rejected} of {self.lines} lines rejected"
        )


def _get(obj: dict, key: str, kind, where: str, required: bool = False, no_nul: bool = True):
    value = obj.get(key)
    if value is None:
        if required:
            raise LineError(f"{where}: `{key}` is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LineError(f"{where}: `{key}` must be {getattr(kind, '__name__', kind)}")
    if no_nul and kind is str:
        _no_nul(value, key, where)
    return value


def _no_nul(value, key: str, where: str) -> None:
    if isinstance(value, str) and "\x00" in value:  # the rule of every stored text (PostgreSQL's cannot hold NUL)
        _rule(where, key, rules.check_no_nul, value, key.replace("_", " "))


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


def _one_of(obj: dict, key: str, allowed, where: str, default: str | None = None) -> str | None:
    value = _get(obj, key, str, where)
    if value is None:
        return default
    if value not in allowed:
        raise LineError(f"{where}: `{key}` must be one of {', '.join(allowed)}")
    return value


def _object(obj: dict, key: str, where: str):
    value = _json(obj, key, where)
    if value is not None and not isinstance(value, dict):
        raise LineError(f"{where}: `{key}` must be an object")
    return value


def _parser(f: declared.Field):
    """How a line's value of the declared field `f` is read, from its annotation."""
    kind = f.annotation
    if isinstance(kind, types.UnionType):  # `X | None`
        kind = next(a for a in typing.get_args(kind) if a is not types.NoneType)
    required = f.imported.required
    if kind is uuid.UUID:
        return lambda obj, where: _uuid(obj, f.name, where, required)
    if kind is datetime:
        return lambda obj, where: _time(obj, f.name, where, required)
    if kind is str:  # NUL checked after the field's own rule (the title rule removes it)
        return lambda obj, where: _get(obj, f.name, str, where, required, no_nul=False)
    if kind is int:
        return lambda obj, where: _count(obj, f.name, where)
    if kind is float:  # a number, as its rule reads it
        return lambda obj, where: obj.get(f.name)
    if isinstance(kind, type) and issubclass(kind, Enum):
        allowed = tuple(member.value for member in kind)
        return lambda obj, where: _one_of(obj, f.name, allowed, where)
    if (isinstance(kind, declared.Nested) and not kind.many) or (f.stored is not None and f.stored.default is dict):
        return lambda obj, where: _object(obj, f.name, where)
    if kind is declared.Json or isinstance(kind, declared.Nested):
        return lambda obj, where: _json(obj, f.name, where)
    raise TypeError(f"The import format cannot read {f.name}: {f.annotation}")  # at import: every test sees it


# What a line carries of each type under the declared fields' names: parsed as their
# annotations say, then held to their rules (resolvers/rules.FIELD_RULES).
PARSERS = {
    type_name: tuple((f, _parser(f), rules.FIELD_RULES.get((type_name, f.name))) for f in declared.imported(type_name))
    for type_name in ("Session", "Turn", "Event")
}


def _declared_values(obj: dict, type_name: str, where: str) -> dict:
    """The line's values of `type_name`'s importable fields, each checked as its own rule
    says, under the names the new row takes (None: absent, the row's default)."""
    parsed = [(f, parse(obj, where), rule) for f, parse, rule in PARSERS[type_name]]
    values = {}
    for f, value, rule in parsed:
        if rule is not None:
            value = _rule(where, f.name, rule, value)
        _no_nul(value, f.name, where)
        values[f.imported.into or f.name] = value
    return values


def _present(values: dict) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def parse_event(obj, where: str) -> NewEvent:
    if not isinstance(obj, dict):
        raise LineError(f"{where}: an event must be an object")
    values = _declared_values(obj, "Event", where)
    # `message` (text) or `message_b64` (bytes): the content, which no field shows as it is
    message = _get(obj, "message", str, where)
    encoded = _get(obj, "message_b64", str, where)
    content = _rule(where, "message" if encoded is None else "message_b64", rules.event_content, message, encoded)
    return NewEvent(content=content, **_present(values))


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
    if type(obj) is not dict or (_NOT_PLAIN_KEYS and not _NOT_PLAIN_KEYS.isdisjoint(obj)):
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


# The event fields `_plain_event` reads; a line with any other importable one takes
# `parse_event`'s way (a field declared importable later is never dropped by the fast path).
_PLAIN_KEYS = {"type", "agent_id", "dedup_key", "payload", "timestamp"}
_NOT_PLAIN_KEYS = frozenset(f.name for f in declared.imported("Event")) - _PLAIN_KEYS
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
    values = _declared_values(obj, "Turn", where)
    _rule(where, "completed_at", rules.check_completion, values["created_at"], values["completed_at"])
    _rule(where, "endpoint", rules.check_turn_endpoint, session.kind, list(session.endpoints), values["endpoint"])
    settings = values["red_team_settings"]
    _rule(where, "red_team_settings", rules.check_turn_settings, session.kind, settings)
    if session.kind == "RED_TEAM":  # the session's, with what the turn gives over them
        values["red_team_settings"] = _rule(where, "red_team_settings", rules.check_settings, settings, session.settings)
    return NewTurn(**_present(values), events=_events(obj, where, clean))


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
    values = _declared_values(obj, "Session", where)
    values.update(_kind_columns(obj, where, values))
    if values["kind"] == "RED_TEAM" and values["external_id"] is None:  # `session(id: runnerId)` finds it
        values["external_id"] = values["runner_id"]
    session = _Kind(values["kind"], tuple(values.get("endpoints") or ()), values.get("red_team_settings"))
    turns = _get(obj, "turns", list, where) or []
    new = NewSession(
        **_present(values),
        turns=[parse_turn(t, f"turns[{i}]", clean, session) for i, t in enumerate(turns)],
        events=_events(obj, where, clean),
    )
    _rule(where, "turns", rules.check_session_tokens, 0, sum(t.tokens_used for t in new.turns))
    return new


def _kind_columns(obj: dict, where: str, values: dict) -> dict:
    """The rules between the session's fields of kinds.graphql (kind, status, end) and its
    TERMINAL or RED_TEAM details, which become columns of its own, through the mutations'
    rules."""
    kind, ended_at = values["kind"] or "AGENT", values["ended_at"]
    status = values["status"] or ("DONE" if ended_at else "OPEN")
    terminal = _json(obj, "terminal", where)
    red_team = _json(obj, "red_team", where)
    _rule(where, "kind", rules.check_kind, kind, terminal is not None, red_team is not None)
    _rule(where, "ended_at", rules.check_ended_status, status, ended_at)
    _rule(where, "ended_at", rules.check_end, values["created_at"], ended_at)
    columns = {"kind": kind, "status": status}
    if terminal is not None:
        columns |= _rule(where, "terminal", rules.terminal_columns, terminal, values["created_at"])
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
    from sessiongraph.models.search import queued  # SQLAlchemy only now (see import_lines's store)

    engine = create_engine(url)
    try:
        await migrations.upgrade_if_behind(engine, url)
        report = await import_lines(url, stream, engine=engine)
        async with engine.connect() as connection:
            report.queued = await queued(connection)
        return report
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
