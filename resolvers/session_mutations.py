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

from sqlalchemy import select, update

from sessiongraph.models import Session
from sessiongraph.live.broker import publishing, session_changed
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import NotFound
from sessiongraph.loaders import SESSION_COLUMNS
from sessiongraph.resolvers.rules import sanitize_title
from sessiongraph.resolvers.visibility import changeable_session_statement, no_session

SESSIONS = Session.__table__


async def rename_session(ctx: RequestContext, id_: str, title: str):
    """The renamed session's row; BAD_USER_INPUT (title, id) before anything is read."""
    title = sanitize_title(title)
    find = changeable_session_statement(ctx.viewer, id_)
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        target = (await connection.execute(find)).first()
        if target is None or target.deleted_at is not None:
            raise NotFound(no_session(id_))
        renamed = (
            await connection.execute(
                update(SESSIONS)
                .where(SESSIONS.c.id == target.id, SESSIONS.c.deleted_at.is_(None))
                .values(title=title, updated_at=datetime.now(UTC))
                .returning(*SESSION_COLUMNS)
            )
        ).first()
        if renamed is None:  # deleted since it was found
            raise NotFound(no_session(id_))
        publication.announce(session_changed("RENAMED", renamed))
    # Later fields of this operation must see the new title, not a row cached before.
    ctx.loaders.session.prime(renamed.id, renamed, force=True)
    return renamed


async def delete_session(ctx: RequestContext, id_: str) -> uuid.UUID:
    """Soft-deletes the session; the id of the deleted session, also when it already was
    (deleting is idempotent for whoever may change the session)."""
    find = changeable_session_statement(ctx.viewer, id_)
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        target = (await connection.execute(find)).first()
        if target is None:
            raise NotFound(no_session(id_))
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
