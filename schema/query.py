"""The Query root."""

import strawberry

from sessiongraph.resolvers import queries
from sessiongraph.schema.connections import Connection, selects
from sessiongraph.schema.inputs import OrderDirection, SessionFilter, SessionOrder
from sessiongraph.schema.types import NODE_TYPES, Node, Session, Viewer


def _node(found: tuple[str, object] | None) -> Node | None:
    if found is None:
        return None
    type_name, row = found
    return NODE_TYPES[type_name].from_row(row)


async def session_list(info, first, after, last, before, filters: dict, order_by: "SessionOrder | None", owner=None) -> Connection[Session]:
    """A page of the caller's sessions, as `Query.sessions` and `User.sessions` list them
    (`owner`: that user's, loaded together with the other users' of the operation)."""
    order_by = order_by or SessionOrder()
    page = await queries.list_sessions(
        info.context,
        first,
        after,
        last,
        before,
        queries.SessionListFilter.of(filters),
        order_by.field.value,
        order_by.direction is OrderDirection.DESC,
        with_total=selects(info, "totalCount"),
        owner=owner,
        # Under the planner, only the columns the document reads (Strawberry's info has none).
        columns=getattr(info, "page_columns", {}).get("Session"),
    )
    return Connection.of(page, Session.from_row)


@strawberry.type
class Query:
    @strawberry.field(description="Who the caller is.")
    def viewer(self, info: strawberry.Info) -> Viewer:
        return Viewer.of(info.context.viewer)

    @strawberry.field(
        description="One session, by its global id, its UUID, or the caller's own external id, "
        "tried in that order. Null when it does not exist, is deleted, or is not visible to the "
        "caller: another user's or organisation's session is indistinguishable from a missing one."
    )
    async def session(self, info: strawberry.Info, id: strawberry.ID) -> Session | None:
        row = await queries.find_session(info.context, id)
        return None if row is None else Session.from_row(row)

    @strawberry.field(
        description="The sessions the caller can see (a USER: its own; an ADMIN: its "
        "organisation's), deleted ones left out, CREATED_AT DESC by default. `first`/`last` take "
        "0..100 and default to 20. Cursors are keyset cursors: a page deep in the list costs "
        "what the first page costs."
    )
    async def sessions(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: SessionFilter | None = None,
        order_by: SessionOrder | None = None,
    ) -> Connection[Session]:
        return await session_list(info, first, after, last, before, {} if filter is None else vars(filter), order_by)

    @strawberry.field
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        return _node(await queries.find_node(info.context, id))

    @strawberry.field
    async def nodes(self, info: strawberry.Info, ids: list[strawberry.ID]) -> list[Node | None]:
        return [_node(found) for found in await queries.find_nodes(info.context, ids)]
