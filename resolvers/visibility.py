"""Who may see and write which session, and which session or turn an id a caller gives
names: the one place of these rules for every way in (queries, mutations, subscriptions, the
broker, and later ingests). No GraphQL here: a caller turns a None into its own error.

- See (read, subscribe, rename, delete): a USER its own sessions, an ADMIN its
  organisation's; nobody a deleted one.
- Write (record turns and events): as for seeing, and a MACHINE key for any user of its
  organisation too.
- What a caller may not see or write is answered exactly like what does not exist
  (`no_session`).
- A session id is tried as a global id, then as a UUID, then as the caller's own external id.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, case, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sessiongraph.models import Session
from sessiongraph.models.recording import lock_session

# A sessions row, every column (as loaders.SESSION_COLUMNS; that module brings Strawberry).
SESSION_COLUMNS = tuple(Session.__table__.c)
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.resolvers.ids import from_global_id, parse_uuid
from sessiongraph.resolvers.rules import RuleBroken, check_external_id

# -- the rules, for a session known by its owner or its row


def writes_for_others(viewer: Viewer) -> bool:
    """Whether the caller may record (create sessions, write turns and events) for other users
    of its organisation."""
    return viewer.is_admin or viewer.identity_type == "MACHINE"


def may_see_owner(viewer: Viewer, org_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """`can_see` for a session known only by its owner (a deleted one included)."""
    return org_id == viewer.org_id and (viewer.is_admin or user_id == viewer.user_id)


def can_see(viewer: Viewer, session) -> bool:
    """Whether `viewer` may see the session row (None: there is none)."""
    return session is not None and session.deleted_at is None and may_see_owner(viewer, session.org_id, session.user_id)


def may_write(viewer: Viewer, session) -> bool:
    """Whether `viewer` may record into the session row (None: there is none)."""
    return (
        session is not None
        and session.deleted_at is None
        and session.org_id == viewer.org_id
        and (session.user_id == viewer.user_id or writes_for_others(viewer))
    )


def no_session(id_: str) -> str:
    """The one answer for a session that is missing, deleted, or not the caller's to see."""
    return f"No session {id_!r}."


# -- the same rules as SQL conditions


def changeable_sessions(viewer: Viewer):
    """The sessions `viewer` may see, deleted ones included: a mutation must find the
    caller's deleted session to answer a repeated delete."""
    scope = Session.org_id == viewer.org_id
    if not viewer.is_admin:
        scope = and_(scope, Session.user_id == viewer.user_id)
    return scope


def visible_sessions(admin: bool):
    """The live sessions a viewer may see, for a statement built once and run for many
    viewers: the viewer's ids are the parameters `org_id` and (not for an ADMIN) `user_id`."""
    scope = Session.org_id == bindparam("org_id", type_=Session.org_id.type)
    if not admin:
        scope = and_(scope, Session.user_id == bindparam("user_id", type_=Session.user_id.type))
    return and_(scope, Session.deleted_at.is_(None))


# The caller's own sessions with an external id: the viewer and the id bound at execution
# (`_own`), so a statement using it is built once.
OWN_EXTERNAL_ID = and_(
    Session.org_id == bindparam("own_org_id", type_=Session.org_id.type),
    Session.user_id == bindparam("own_user_id", type_=Session.user_id.type),
    Session.external_id == bindparam("own_external_id", type_=Session.external_id.type),
)


def _own(viewer: Viewer, external_id: str) -> dict:
    return {"own_org_id": viewer.org_id, "own_user_id": viewer.user_id, "own_external_id": external_id}


# -- ids


@dataclass(frozen=True, slots=True)
class SessionName:
    """What a caller's id for a session may name: session ids (from a global id, then a
    UUID), then one of the caller's own external ids (None: the text cannot be one)."""

    ids: tuple[uuid.UUID, ...]
    external_id: str | None


def name_session(id_: str) -> SessionName:
    ids = []
    parsed = from_global_id(id_)
    if parsed is not None and parsed[0] == "Session":
        ids.append(parsed[1])
    if (as_uuid := parse_uuid(id_)) is not None and as_uuid not in ids:
        ids.append(as_uuid)
    try:
        external_id = check_external_id(id_)
    except RuleBroken:
        external_id = None  # no stored session has it
    return SessionName(tuple(ids), external_id)


def turn_key(id_: str) -> int | None:
    """The key of a turn's global id; None when `id_` is not one."""
    parsed = from_global_id(id_)
    return parsed[1] if parsed is not None and parsed[0] == "Turn" else None


# -- finding sessions


async def visible_session(ctx: RequestContext, session_id: uuid.UUID):
    """The session row, if the caller may see it; else None."""
    session = await ctx.loaders.session.load(session_id)
    return session if can_see(ctx.viewer, session) else None


async def find_session(ctx: RequestContext, id_: str):
    """The session `id_` names among those the caller may see; None when there is none."""
    named = name_session(id_)
    for session_id in named.ids:
        if (session := await visible_session(ctx, session_id)) is not None:
            return session
    if named.external_id is None:
        return None
    rows = await ctx.rows(_OWN_LIVE_SESSION, _own(ctx.viewer, named.external_id))
    return rows[0] if rows else None


# Built once (a select of every column built anew was a tenth of a small page's time).
_OWN_LIVE_SESSION = select(*SESSION_COLUMNS).where(OWN_EXTERNAL_ID, Session.deleted_at.is_(None))


def changeable_session_statement(viewer: Viewer, id_: str):
    """The statement finding the session `id_` names among those `viewer` may see, deleted
    ones included (rename, delete). A live session comes before any deleted one, so an
    external id names its live session while it has one, else the session deleted last
    under it. RuleBroken when `id_` can name no session at all."""
    named = name_session(id_)
    conditions = [Session.id == session_id for session_id in named.ids]
    if named.external_id is not None:
        conditions.append(OWN_EXTERNAL_ID)
    if not conditions:
        raise RuleBroken(f"{id_!r} is neither a global id, a UUID nor an external id.")
    rank = case(*((condition, i) for i, condition in enumerate(conditions)), else_=len(conditions))
    statement = (
        select(*SESSION_COLUMNS)
        .where(changeable_sessions(viewer), or_(*conditions))
        .order_by(Session.deleted_at.is_not(None), rank, Session.deleted_at.desc().nulls_first())
        .limit(1)
    )
    return statement if named.external_id is None else statement.params(_own(viewer, named.external_id))


async def lock_writable_session(connection: AsyncConnection, viewer: Viewer, id_: str):
    """The session `id_` names, locked (`lock_session`), if `viewer` may write it; else None."""
    named = name_session(id_)
    for session_id in named.ids:
        session = await lock_session(connection, session_id)
        if may_write(viewer, session):
            return session
    if named.external_id is None:
        return None
    own = await connection.scalar(
        select(Session.id).where(OWN_EXTERNAL_ID, Session.deleted_at.is_(None)), _own(viewer, named.external_id)
    )
    if own is None:
        return None
    session = await lock_session(connection, own)
    return session if may_write(viewer, session) else None
