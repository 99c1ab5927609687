"""renameSession, deleteSession, updateSession and endSession.

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
from sessiongraph.models.search_text import title_columns
from sessiongraph.live.broker import publishing, session_changed
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import BadUserInput, NotFound
from sessiongraph.loaders import SESSION_COLUMNS
from sessiongraph.resolvers.rules import (
    at,
    check_count,
    check_detail,
    check_end,
    check_metadata,
    check_name,
    check_settings,
    data_masking_of,
    guardrail_list,
    review_columns,
    sanitize_title,
)
from sessiongraph.resolvers.visibility import changeable_session_statement, lock_writable_session, no_session

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
                .values(**title_columns(title), updated_at=datetime.now(UTC))
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


# -- updateSession and endSession: the recording side's (a gateway sets a review, an analysis
# or the exit code of the sessions it records), so who may is who may record
# (`lock_writable_session`: a MACHINE key for any user of its organisation too).

TERMINAL_UPDATES = ("terminal_review", "terminal_guardrails", "terminal_data_masking", "terminal_ai_analysis")


def updated_columns(changes: dict, now: datetime) -> dict:
    """The columns updateSession's `changes` (the given fields by snake_case name, None for
    a field given as null) set, every rule that needs no stored row checked. The red-team
    settings are merged over the stored ones later (`red_team_settings` is kept as given)."""
    columns: dict = {}
    for name, value in changes.items():
        if name == "title":
            columns |= title_columns(None if value is None else sanitize_title(value))
        elif name == "token_budget":
            columns["token_budget"] = check_count(value, "token budget")
        elif name == "metadata":
            columns["metadata"] = check_metadata(value)
        elif name in ("batch_id", "correlation_id"):
            columns[name] = check_name(value, name.replace("_", " "))
        elif name == "terminal_review":
            with at("terminalReview"):
                columns |= review_columns(value, now)
        elif name == "terminal_guardrails":
            with at("terminalGuardrails"):
                columns["guardrails"] = guardrail_list(value)
            columns["guardrail_count"] = len(columns["guardrails"])
        elif name == "terminal_data_masking":
            with at("terminalDataMasking"):
                columns["data_masking"] = data_masking_of(value)
        elif name == "terminal_ai_analysis":
            columns["ai_analysis"] = check_detail(value, "AI analysis")
        elif name == "red_team_settings":
            with at("redTeamSettings"):
                check_settings(value, {})
        else:  # pragma: no cover - the schema gives no other field
            raise ValueError(name)
    return columns


async def update_session(ctx: RequestContext, id_: str, changes: dict):
    """The session's row with `changes` applied, whole or not at all; announced UPDATED.
    Allowed on a DONE session (reviews, analyses and masking figures come after the end)."""
    now = datetime.now(UTC)
    columns = updated_columns(changes, now)
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session = await lock_writable_session(connection, ctx.viewer, id_)
        if session is None:
            raise NotFound(no_session(id_))
        if session.kind != "TERMINAL" and (given := [n for n in TERMINAL_UPDATES if n in changes]):
            raise BadUserInput(f"{_camel(given[0])}: only a TERMINAL session has terminal details; this one is {session.kind}.")
        if "red_team_settings" in changes:
            if session.kind != "RED_TEAM":
                raise BadUserInput(f"redTeamSettings: only a RED_TEAM session has red-team settings; this one is {session.kind}.")
            # null clears every setting; an object changes the settings it gives
            given = changes["red_team_settings"]
            columns["red_team_settings"] = {} if given is None else check_settings(given, session.red_team_settings or {})
        updated = (await connection.execute(
            update(SESSIONS).where(SESSIONS.c.id == session.id).values(updated_at=now, **columns).returning(*SESSION_COLUMNS)
        )).one()
        publication.announce(session_changed("UPDATED", updated))
    ctx.loaders.session.prime(updated.id, updated, force=True)
    return updated


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def end_session(ctx: RequestContext, id_: str, ended_at: datetime | None, exit_code: int | None):
    """The ended session's row: status DONE, its end time (now when not given) and a
    TERMINAL session's exit code; announced ENDED. Ending it again with the same given
    values answers the same and changes nothing; with other values, BAD_USER_INPUT."""
    async with publishing(ctx.engine) as publication:
        connection = publication.connection
        session = await lock_writable_session(connection, ctx.viewer, id_)
        if session is None:
            raise NotFound(no_session(id_))
        if exit_code is not None and session.kind != "TERMINAL":
            raise BadUserInput(f"exitCode: only a TERMINAL session has an exit code; this one is {session.kind}.")
        if session.status == "DONE":
            if (ended_at is None or ended_at == session.ended_at) and (exit_code is None or exit_code == session.exit_code):
                return session
            raise BadUserInput("The session has ended already, with another end time or exit code.")
        with at("endedAt"):
            check_end(session.created_at, ended_at)
        now = datetime.now(UTC)
        values: dict = {"status": "DONE", "ended_at": ended_at or max(now, session.created_at), "updated_at": now}
        if exit_code is not None:
            values["exit_code"] = exit_code
        ended = (await connection.execute(
            update(SESSIONS).where(SESSIONS.c.id == session.id).values(values).returning(*SESSION_COLUMNS)
        )).one()
        publication.announce(session_changed("ENDED", ended))
    ctx.loaders.session.prime(ended.id, ended, force=True)
    return ended
