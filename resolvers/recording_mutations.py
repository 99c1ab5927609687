"""createSession, startTurn, appendEvents and completeTurn: agents recording sessions as
they happen.

Every input is checked before anything is written. Each mutation is one short write
transaction that locks the session row first (`lock_session`), so the writers of one
session take turns: seqs stay gapless, a retried startTurn or dedupKey finds what the first
try stored, and no two writers take locks in different orders. What changed is announced
through the broker once the transaction commits.

Who may write for whom: a USER key for itself; a MACHINE or an ADMIN key for any user of
its organisation (a user id never seen before joins it). A session outside that reach, or a
deleted one, is NOT_FOUND, as if it did not exist.
"""

import base64
import binascii
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from sessiongraph.models import Event, Session, Turn
from sessiongraph.models.recording import (
    NewEvent,
    NewSession,
    NewTurn,
    append_events_once,
    end_turn,
    ensure_user,
    lock_session,
    start_turn as store_turn,
    store_session,
)
from sessiongraph.live.broker import events_appended, publishing, session_changed
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.resolvers.errors import BadUserInput, Forbidden, NotFound
from sessiongraph.resolvers.ids import from_global_id, parse_uuid
from sessiongraph.loaders import EVENT_COLUMNS, EVENTS_WITH_SESSION, SESSION_COLUMNS, TURN_COLUMNS
from sessiongraph.resolvers.rules import check_external_id, sanitize_title

MAX_EVENTS_PER_CALL = 1000
MAX_METADATA_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_CONTENT_BYTES = 1024 * 1024
MAX_NAME_LENGTH = 255  # task, workflow and agent ids, dedup keys
MAX_TYPE_LENGTH = 64


def writes_for_others(viewer: Viewer) -> bool:
    return viewer.is_admin or viewer.identity_type == "MACHINE"


def may_write(viewer: Viewer, session) -> bool:
    return (
        session is not None
        and session.deleted_at is None
        and session.org_id == viewer.org_id
        and (session.user_id == viewer.user_id or writes_for_others(viewer))
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _name(value: str | None, what: str, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """A caller's identifier: None stays None; else non-empty, short, no control character."""
    if value is None:
        return None
    if not value.strip() or any(unicodedata.category(c) == "Cc" for c in value):
        raise BadUserInput(f"{what} must be non-empty and have no control character.")
    if len(value) > max_length:
        raise BadUserInput(f"{what} is longer than {max_length} characters.")
    return value


def _json_size(value) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:
        raise BadUserInput("The value is not JSON.") from None


def _not_found(id_: str) -> NotFound:
    return NotFound(f"No session {id_!r}.")


async def _writable_session(connection: AsyncConnection, viewer: Viewer, id_: str):
    """The session `id_` names (global id, UUID, then the caller's own external id, as
    `queries.find_session` tries them), locked; NOT_FOUND when the caller may not write it."""
    candidates: list[uuid.UUID] = []
    parsed = from_global_id(id_)
    if parsed is not None and parsed[0] == "Session":
        candidates.append(parsed[1])
    if (as_uuid := parse_uuid(id_)) is not None:
        candidates.append(as_uuid)
    for session_id in candidates:
        session = await lock_session(connection, session_id)
        if may_write(viewer, session):
            return session
    own = await connection.scalar(
        select(Session.id).where(
            Session.user_id == viewer.user_id,
            Session.org_id == viewer.org_id,
            Session.external_id == id_,
            Session.deleted_at.is_(None),
        )
    )
    if own is not None:
        session = await lock_session(connection, own)
        if may_write(viewer, session):
            return session
    raise _not_found(id_)


def _turn_key(id_: str) -> int:
    parsed = from_global_id(id_)
    if parsed is None or parsed[0] != "Turn":
        raise BadUserInput(f"{id_!r} is not a turn id.")
    return parsed[1]


async def _row(connection: AsyncConnection, columns, key, value, select_from=None):
    statement = select(*columns).where(key == value)
    if select_from is not None:
        statement = statement.select_from(select_from)
    return (await connection.execute(statement)).one()


# -- createSession


async def create_session(
    ctx: RequestContext,
    external_id: str | None,
    title: str | None,
    user_id: uuid.UUID | None,
    token_budget: int | None,
    metadata,
):
    """The new session's row."""
    viewer = ctx.viewer
    owner = user_id or viewer.user_id
    if owner != viewer.user_id and not writes_for_others(viewer):
        raise Forbidden("A USER key creates sessions only for its own user.")
    if title is not None:
        title = sanitize_title(title)
    if external_id is not None:
        check_external_id(external_id)
    if token_budget is not None and token_budget < 0:
        raise BadUserInput("tokenBudget must be 0 or more.")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadUserInput("metadata must be a JSON object.")
    if _json_size(metadata) > MAX_METADATA_BYTES:
        raise BadUserInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes.")
    now = _now()
    taken = BadUserInput(f"The external id {external_id!r} is in use on another live session of its owner.")
    try:
        async with publishing(ctx.engine) as publication:
            connection = publication.connection
            if not await ensure_user(connection, owner, viewer.org_id, now):
                raise NotFound(f"No user {owner} in this organisation.")
            new = NewSession(
                org_id=viewer.org_id,
                user_id=owner,
                created_at=now,
                session_id=uuid.uuid4(),
                external_id=external_id,
                title=title,
                token_budget=token_budget,
                metadata=metadata,
            )
            if not (await store_session(connection, new)).created:  # found the owner's session by external id
                raise taken
            row = await _row(connection, SESSION_COLUMNS, Session.id, new.session_id)
            publication.announce(session_changed("CREATED", row))
    except IntegrityError:  # a concurrent create took the external id first
        raise taken from None
    return row


# -- startTurn


async def start_turn(
    ctx: RequestContext, session_id: str, task_id: str, workflow_id: str | None, user_query: str | None
):
    """The turn's row: the new one, or the session's turn with that task id, unchanged."""
    _name(task_id, "taskId")
    _name(workflow_id, "workflowId")
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session = await _writable_session(connection, ctx.viewer, session_id)
        turn = NewTurn(
            task_id=task_id, created_at=_now(), workflow_id=workflow_id, user_query=user_query, status="RUNNING"
        )
        turn_id, added = await store_turn(connection, session.id, turn)
        if added:
            publication.announce(session_changed("TURN_STARTED", session, turn_id))
        return await _row(connection, TURN_COLUMNS, Turn.id, turn_id)


# -- appendEvents


@dataclass(slots=True)
class EventInput:
    type: str
    agent_id: str | None = None
    message: str | None = None
    message_base64: str | None = None
    timestamp: datetime | None = None
    payload: object = None
    dedup_key: str | None = None


def _new_event(index: int, given: EventInput, now: datetime) -> NewEvent:
    where = f"events[{index}]"
    if not given.type.strip() or len(given.type) > MAX_TYPE_LENGTH or not given.type.isprintable():
        raise BadUserInput(f"{where}.type must be 1 to {MAX_TYPE_LENGTH} printable characters.")
    _name(given.agent_id, f"{where}.agentId")
    _name(given.dedup_key, f"{where}.dedupKey")
    if given.message is not None and given.message_base64 is not None:
        raise BadUserInput(f"{where} has both message and messageBase64; give at most one.")
    content = None
    if given.message is not None:
        content = given.message.encode("utf-8", "surrogatepass")
    elif given.message_base64 is not None:
        try:
            content = base64.b64decode(given.message_base64, validate=True)
        except (binascii.Error, ValueError):
            raise BadUserInput(f"{where}.messageBase64 is not valid base64.") from None
    if content is not None and len(content) > MAX_CONTENT_BYTES:
        raise BadUserInput(f"{where} has more than {MAX_CONTENT_BYTES} bytes of content.")
    if given.payload is not None and _json_size(given.payload) > MAX_PAYLOAD_BYTES:
        raise BadUserInput(f"{where}.payload is larger than {MAX_PAYLOAD_BYTES} bytes.")
    return NewEvent(
        type=given.type,
        timestamp=given.timestamp or now,
        agent_id=given.agent_id,
        content=content,
        payload=given.payload,
        dedup_key=given.dedup_key,
    )


async def append_events(ctx: RequestContext, session_id: str, turn_id: str | None, events: list[EventInput]) -> list:
    """The event rows, one for each of `events` in order (an old one for a known dedupKey)."""
    if len(events) > MAX_EVENTS_PER_CALL:
        raise BadUserInput(f"At most {MAX_EVENTS_PER_CALL} events a call ({len(events)} given).")
    turn_key = None if turn_id is None else _turn_key(turn_id)
    now = _now()
    new_events = [_new_event(i, e, now) for i, e in enumerate(events)]
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session = await _writable_session(connection, ctx.viewer, session_id)
        workflow_id = None
        if turn_key is not None:
            turn = (await connection.execute(
                select(Turn.workflow_id).where(Turn.id == turn_key, Turn.session_id == session.id)
            )).first()
            if turn is None:
                raise BadUserInput(f"{turn_id!r} is not a turn of this session.")
            workflow_id = turn.workflow_id
        if not new_events:
            return []
        ids = await append_events_once(connection, session.id, turn_key, new_events, workflow_id)
        last_seq = await connection.scalar(select(Session.event_count).where(Session.id == session.id))
        if last_seq > session.event_count:
            publication.announce(events_appended(session, session.event_count + 1, last_seq))
        rows = {
            row.id: row
            for row in (await connection.execute(
                select(*EVENT_COLUMNS).select_from(EVENTS_WITH_SESSION).where(Event.id.in_(set(ids)))
            )).all()
        }
        return [rows[i] for i in ids]


# -- completeTurn


async def complete_turn(
    ctx: RequestContext,
    turn_id: str,
    status: str,
    result: str | None,
    tokens_used: int | None,
    completed_at: datetime | None,
):
    """The turn's row, ended; unchanged when it had ended already with the values given."""
    turn_key = _turn_key(turn_id)
    if status == "RUNNING":
        raise BadUserInput("A turn is completed with COMPLETED, FAILED or CANCELLED, not RUNNING.")
    if tokens_used is not None and tokens_used < 0:
        raise BadUserInput("tokensUsed must be 0 or more.")
    not_found = NotFound(f"No turn {turn_id!r}.")
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session_id = await connection.scalar(select(Turn.session_id).where(Turn.id == turn_key))
        session = None if session_id is None else await lock_session(connection, session_id)
        if not may_write(ctx.viewer, session):
            raise not_found
        turn = await _row(connection, TURN_COLUMNS, Turn.id, turn_key)
        if turn.status != "RUNNING":
            same = (
                status == turn.status
                and (result is None or result == turn.result)
                and (tokens_used is None or tokens_used == turn.tokens_used)
                and (completed_at is None or completed_at == turn.completed_at)
            )
            if not same:
                raise BadUserInput(f"The turn has ended already ({turn.status}) with other values.")
            return turn
        completed_at = completed_at or _now()
        if completed_at < turn.created_at:
            raise BadUserInput("completedAt is before the turn's start.")
        await end_turn(connection, turn, status, completed_at, result, tokens_used)
        publication.announce(session_changed("TURN_COMPLETED", session, turn.id))
        return await _row(connection, TURN_COLUMNS, Turn.id, turn.id)
