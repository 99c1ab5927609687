"""renameSession and deleteSession.

Each is one short write transaction (`publishing`: subscribers hear RENAMED / DELETED once it
commits): find the target, then one conditional UPDATE that decides. The UPDATE re-checks
`deleted_at IS NULL` itself, so whatever ran in between, a rename never touches (or revives)
a deleted session and two renames never fail each other: the last to commit wins. The target
is found on the write connection, not the request's read connection, so a mutation holds one
pooled connection at a time.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy import and_, case, or_, select, update

from sessiongraph.models import Session
from sessiongraph.live.broker import publishing, session_changed
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.resolvers.errors import BadUserInput, NotFound
from sessiongraph.resolvers.ids import from_global_id, parse_uuid
from sessiongraph.loaders import SESSION_COLUMNS
from sessiongraph.resolvers.rules import RuleBroken, check_external_id, sanitize_title
from sessiongraph.resolvers.visibility import changeable_sessions

SESSIONS = Session.__table__


def target_statement(viewer: Viewer, id_: str):
    """The session `id_` names among those `viewer` may change, deleted ones included.

    Ids are tried as `queries.find_session` tries them: global id, UUID, then the caller's
    own external id; a live session comes before any deleted one, so an external id names its
    live session while it has one, else the session deleted last under it. An id that can be
    none of the three (empty, control characters, too long): BAD_USER_INPUT.
    """
    named = []
    parsed = from_global_id(id_)
    if parsed is not None and parsed[0] == "Session":
        named.append(Session.id == parsed[1])
    if (as_uuid := parse_uuid(id_)) is not None:
        named.append(Session.id == as_uuid)
    if not named:
        try:
            check_external_id(id_)
        except RuleBroken:
            raise BadUserInput(f"{id_!r} is neither a global id, a UUID nor an external id.") from None
    named.append(and_(Session.user_id == viewer.user_id, Session.external_id == id_))
    rank = case(*((condition, i) for i, condition in enumerate(named)), else_=len(named))
    return (
        select(*SESSION_COLUMNS)
        .where(changeable_sessions(viewer), or_(*named))
        .order_by(Session.deleted_at.is_not(None), rank, Session.deleted_at.desc().nulls_first())
        .limit(1)
    )


def _not_found(id_: str) -> NotFound:
    # The same answer for a missing, an invisible and a deleted session.
    return NotFound(f"No session {id_!r}.")


async def rename_session(ctx: RequestContext, id_: str, title: str):
    """The renamed session's row; BAD_USER_INPUT (title, id) before anything is read."""
    title = sanitize_title(title)
    find = target_statement(ctx.viewer, id_)
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        target = (await connection.execute(find)).first()
        if target is None or target.deleted_at is not None:
            raise _not_found(id_)
        renamed = (
            await connection.execute(
                update(SESSIONS)
                .where(SESSIONS.c.id == target.id, SESSIONS.c.deleted_at.is_(None))
                .values(title=title, updated_at=datetime.now(UTC))
                .returning(*SESSION_COLUMNS)
            )
        ).first()
        if renamed is None:  # deleted since it was found
            raise _not_found(id_)
        publication.announce(session_changed("RENAMED", renamed))
    # Later fields of this operation must see the new title, not a row cached before.
    ctx.loaders.session.prime(renamed.id, renamed, force=True)
    return renamed


async def delete_session(ctx: RequestContext, id_: str) -> uuid.UUID:
    """Soft-deletes the session; the id of the deleted session, also when it already was
    (deleting is idempotent for whoever may change the session)."""
    find = target_statement(ctx.viewer, id_)
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        target = (await connection.execute(find)).first()
        if target is None:
            raise _not_found(id_)
        deleted = target
        if target.deleted_at is None:
            deleted = (
                await connection.execute(
                    update(SESSIONS)
                    .where(SESSIONS.c.id == target.id, SESSIONS.c.deleted_at.is_(None))
                    .values(deleted_at=datetime.now(UTC), deleted_by=ctx.viewer.user_id)
                    .returning(*SESSION_COLUMNS)
                )
            ).first()
            if deleted is None:
                # A concurrent delete came first (and announced it): this one succeeds all
                # the same, deleting being idempotent, and the first deleter stays recorded.
                deleted = (await connection.execute(select(*SESSION_COLUMNS).where(Session.id == target.id))).one()
            else:
                publication.announce(session_changed("DELETED", deleted))
    # Later fields of this operation must not find the session live in a cached row.
    ctx.loaders.session.prime(deleted.id, deleted, force=True)
    return deleted.id
