"""sessiongraph as an Apollo Federation v2 subgraph: the `User` entity it contributes to a
supergraph (a user's sessions), the `_entities` and `_service` fields a gateway calls, and the
public SDL (the schema without any of the federation machinery).

`_entities` and `_service` are written here rather than left to Strawberry's own: Strawberry's
resolve the representations one by one outside the planner's reach; these are plain async
resolvers, so a gateway's entity fetch is planned like any query, and its representations
are looked up together through the DataLoaders (100 sessions: one statement)."""

import asyncio
import re
import uuid
from typing import Annotated

import strawberry
from strawberry.federation.schema import FederationAny

from sessiongraph.resolvers import queries
from sessiongraph.resolvers.ids import from_global_id, parse_uuid
from sessiongraph.schema.connections import Connection
from sessiongraph.schema.inputs import SessionFilter, SessionOrder
from sessiongraph.schema.query import session_list
from sessiongraph.schema.types import NODE_TYPES, Event, Session, Turn


@strawberry.federation.type(
    keys=["id"],
    description="A user of the caller's organisation, the entity other subgraphs know by `id` "
    "(the user's UUID): sessiongraph contributes the user's sessions.",
)
class User:
    id: strawberry.ID

    @strawberry.field(
        description="The user's sessions the caller can see (a USER: only when it is this user; "
        "an ADMIN: its organisation's), with the arguments of `Query.sessions` (a `filter.userId` is "
        "this user's)."
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
        # The filter's own userId is this user's: another one would list nothing of this user.
        given = {} if filter is None else vars(filter)
        return await session_list(info, first, after, last, before, {**given, "user_id": uuid.UUID(self.id)}, order_by)


Entity = Annotated[Session | Turn | Event | User, strawberry.union("_Entity")]


@strawberry.type(name="_Service")
class Service:
    sdl: str


async def _entity(ctx, representation: dict):
    """The entity a representation names, if the caller may see it (else None, as `node`)."""
    type_name = representation.get("__typename")
    if type_name == "User":
        user_id = parse_uuid(str(representation.get("id")))
        return None if user_id is None else User(id=strawberry.ID(str(user_id)))
    if type_name == "Session" and "id" not in representation:
        session_id = parse_uuid(str(representation.get("sessionId")))
        row = None if session_id is None else await queries.visible_session(ctx, session_id)
        return None if row is None else Session.from_row(row)
    parsed = from_global_id(str(representation.get("id")))
    if type_name not in NODE_TYPES or parsed is None or parsed[0] != type_name:
        return None
    found = await queries.find_node(ctx, representation["id"])
    return None if found is None else NODE_TYPES[type_name].from_row(found[1])


@strawberry.type
class FederationFields:
    """The fields a gateway calls; mixed into Query when federation is on."""

    @strawberry.field(name="_entities")
    async def entities(self, info: strawberry.Info, representations: list[FederationAny]) -> list[Entity | None]:
        # Concurrently: the DataLoaders batch the lookups of all representations.
        return list(await asyncio.gather(*(_entity(info.context, r) for r in representations)))

    @strawberry.field(name="_service")
    def service(self) -> Service:
        return Service(sdl=SERVED_SDL["sdl"])


# The federated schema's SDL, printed when it is built (the same under any limits or switches).
SERVED_SDL = {"sdl": ""}


# The federation directives the types carry, as printed (none has a parenthesis in its
# arguments): the public SDL leaves them out.
_FEDERATION_DIRECTIVES = re.compile(r' @(key|cost|listSize)\([^()]*\)')


def public_sdl(printed: str) -> str:
    """The schema as frontends read it, from the printed schema without federation: no
    federation directives (their definitions are not in it: a tool could not build it)."""
    return _FEDERATION_DIRECTIVES.sub("", printed)
