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

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

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
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import BadUserInput, Forbidden, NotFound
from sessiongraph.loaders import EVENT_COLUMNS, EVENTS_WITH_SESSION, SESSION_COLUMNS, TURN_COLUMNS
from sessiongraph.resolvers.rules import (
    ENDED,
    at,
    check_completion,
    check_count,
    check_event_type,
    check_external_id,
    check_kind,
    check_metadata,
    check_name,
    check_new_status,
    check_no_nul,
    check_not_ended,
    check_payload,
    check_runner_id,
    check_session_tokens,
    check_turn_endpoint,
    cost_micros,
    event_content,
    red_team_columns,
    sanitize_title,
    terminal_columns,
    text_size,
)
from sessiongraph.resolvers.visibility import lock_writable_session, may_write, no_session, turn_key, writes_for_others

MAX_EVENTS_PER_CALL = 1000


def _now() -> datetime:
    return datetime.now(UTC)


async def _writable_session(connection: AsyncConnection, viewer, id_: str):
    session = await lock_writable_session(connection, viewer, id_)
    if session is None:
        raise NotFound(no_session(id_))
    return session


def _turn_key(id_: str) -> int:
    key = turn_key(id_)
    if key is None:
        raise BadUserInput(f"{id_!r} is not a turn id.")
    return key


async def _row(connection: AsyncConnection, columns, key, value, select_from=None):
    statement = select(*columns).where(key == value)
    if select_from is not None:
        statement = statement.select_from(select_from)
    return (await connection.execute(statement)).one()


# -- createSession


@dataclass(slots=True)
class KindInput:
    """What createSession says of the session's kind (kinds.graphql), the details as plain
    snake_case dictionaries (an import line's form)."""

    kind: str = "AGENT"
    status: str = "OPEN"
    batch_id: str | None = None
    correlation_id: str | None = None
    terminal: dict | None = None
    red_team: dict | None = None


def kind_columns(given: KindInput, now: datetime) -> dict:
    """The new session's columns of kinds.graphql, every rule checked."""
    check_kind(given.kind, given.terminal is not None, given.red_team is not None)
    columns = {
        "kind": given.kind,
        "status": check_new_status(given.status),
        "batch_id": check_name(given.batch_id, "batch id"),
        "correlation_id": check_name(given.correlation_id, "correlation id"),
    }
    if given.terminal is not None:
        with at("terminal"):
            columns |= terminal_columns(given.terminal, now)
    if given.red_team is not None:
        with at("redTeam"):
            columns |= red_team_columns(given.red_team)
    return columns


async def create_session(
    ctx: RequestContext,
    external_id: str | None,
    title: str | None,
    user_id: uuid.UUID | None,
    token_budget: int | None,
    metadata,
    kind: KindInput | None = None,
):
    """The new session's row. A RED_TEAM session without an external id takes its runner
    id as one (so that `session(id: runnerId)` finds it); when the owner has a live session
    with that id already, BAD_USER_INPUT names it, as for an external id given."""
    viewer = ctx.viewer
    owner = user_id or viewer.user_id
    if owner != viewer.user_id and not writes_for_others(viewer):
        raise Forbidden("A USER key creates sessions only for its own user.")
    if title is not None:
        title = sanitize_title(title)
    if external_id is not None:
        check_external_id(external_id)
    check_count(token_budget, "token budget")
    metadata = check_metadata(metadata)
    now = _now()
    columns = kind_columns(kind or KindInput(), now)
    taken = BadUserInput(f"The external id {external_id!r} is in use on another live session of its owner.")
    if external_id is None and columns.get("runner_id") is not None:
        external_id = check_runner_id(columns["runner_id"])
        taken = BadUserInput(
            f"The runner id {external_id!r}, the session's external id, is in use on another live session of "
            "its owner: give the session an external id of its own."
        )
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
                identity_type=viewer.identity_type,
                **columns,
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
    ctx: RequestContext,
    session_id: str,
    task_id: str,
    workflow_id: str | None,
    user_query: str | None,
    endpoint: str | None = None,
    prepared_prompt: str | None = None,
):
    """The turn's row: the new one, or the session's turn with that task id, unchanged (a
    retry: answered as before, even once the session has ended). A new turn of a RED_TEAM
    session keeps the session's settings as they are now."""
    check_name(task_id, "task id")
    check_name(workflow_id, "workflow id")
    check_no_nul(user_query, "user query")
    text_size(prepared_prompt, "prepared prompt")
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session = await _writable_session(connection, ctx.viewer, session_id)
        existing = await connection.scalar(select(Turn.id).where(Turn.session_id == session.id, Turn.task_id == task_id))
        if existing is not None:
            return await _row(connection, TURN_COLUMNS, Turn.id, existing)
        check_not_ended(session.status)
        check_turn_endpoint(session.kind, session.endpoints, endpoint)
        turn = NewTurn(
            task_id=task_id,
            created_at=_now(),
            workflow_id=workflow_id,
            user_query=user_query,
            status="RUNNING",
            endpoint=endpoint,
            prepared_prompt=prepared_prompt,
            red_team_settings=dict(session.red_team_settings or {}) if session.kind == "RED_TEAM" else None,
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
    with at(f"events[{index}]"):
        check_event_type(given.type)
        check_name(given.agent_id, "agent id")
        check_name(given.dedup_key, "dedup key")
        content = event_content(given.message, given.message_base64)
        check_payload(given.payload)
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
        if session.status == "DONE" and not await _all_stored(connection, session.id, new_events):
            raise BadUserInput(ENDED)
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


async def _all_stored(connection: AsyncConnection, session_id: uuid.UUID, events: list[NewEvent]) -> bool:
    """Whether every one of `events` has a dedup key the session has stored: a retry, which
    writes nothing."""
    keys = {e.dedup_key for e in events}
    if None in keys:
        return False
    stored = await connection.scalars(select(Event.dedup_key).where(Event.session_id == session_id, Event.dedup_key.in_(keys)))
    return set(stored.all()) == keys


# -- completeTurn


async def complete_turn(
    ctx: RequestContext,
    turn_id: str,
    status: str,
    result: str | None,
    tokens_used: int | None,
    completed_at: datetime | None,
    cost_usd: float | None = None,
):
    """The turn's row, ended; unchanged when it had ended already with the values given
    (also once the session has ended: a retry)."""
    turn_key = _turn_key(turn_id)
    if status == "RUNNING":
        raise BadUserInput("A turn is completed with COMPLETED, FAILED or CANCELLED, not RUNNING.")
    check_count(tokens_used, "tokens used")
    check_no_nul(result, "result")
    cost = cost_micros(cost_usd)
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
                and (cost is None or cost == turn.cost_usd_micros)
            )
            if not same:
                raise BadUserInput(f"The turn has ended already ({turn.status}) with other values.")
            return turn
        check_not_ended(session.status)
        completed_at = check_completion(turn.created_at, completed_at or _now())
        if tokens_used is not None:
            check_session_tokens(session.tokens_used, tokens_used - turn.tokens_used)
        await end_turn(connection, turn, status, completed_at, result, tokens_used, cost)
        publication.announce(session_changed("TURN_COMPLETED", session, turn.id))
        return await _row(connection, TURN_COLUMNS, Turn.id, turn.id)
