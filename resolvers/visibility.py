"""Who may see which session: a USER its own, an ADMIN its organisation's, nobody a
deleted one. What a caller may not see is answered exactly like what does not exist."""

from sqlalchemy import and_, bindparam

from sessiongraph.models import Session
from sessiongraph.resolvers.context import Viewer


def changeable_sessions(viewer: Viewer):
    """The SQL condition selecting the sessions `viewer` may change, deleted ones included:
    a mutation must find the caller's deleted session to answer a repeated delete."""
    scope = Session.org_id == viewer.org_id
    if not viewer.is_admin:
        scope = and_(scope, Session.user_id == viewer.user_id)
    return scope


def visible_sessions(admin: bool):
    """The SQL condition selecting the live sessions a viewer may see, for a statement built
    once and run for many viewers: the viewer's ids are the parameters `org_id` and (not for
    an ADMIN) `user_id`."""
    scope = Session.org_id == bindparam("org_id", type_=Session.org_id.type)
    if not admin:
        scope = and_(scope, Session.user_id == bindparam("user_id", type_=Session.user_id.type))
    return and_(scope, Session.deleted_at.is_(None))


def can_see(viewer: Viewer, session) -> bool:
    """The same rule as `visible_sessions`, for a session row already loaded."""
    return (
        session is not None
        and session.deleted_at is None
        and session.org_id == viewer.org_id
        and (viewer.is_admin or session.user_id == viewer.user_id)
    )
