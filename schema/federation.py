"""sessiongraph as an Apollo Federation v2 subgraph: the `User` entity it contributes to a
supergraph (a user's sessions), the `_entities` and `_service` fields a gateway calls, and the
public SDL (the schema without any of the federation machinery).

`_entities` and `_service` are written here rather than left to Strawberry's own: Strawberry's
resolve the representations one by one outside the planner's reach; these are plain async
resolvers, so a gateway's entity fetch is planned like any query, and its representations
are looked up together through the DataLoaders (100 sessions: one statement; 100 users'
sessions: one statement for their pages).

The SDL a gateway reads carries the demand-control directives (`@cost`, `@listSize`), derived
from the server's own cost estimate (`with_costs`, at the end)."""

import asyncio
import re
import uuid
from dataclasses import replace
from typing import Annotated

import strawberry
from graphql import (
    ArgumentNode,
    BooleanValueNode,
    ConstDirectiveNode,
    DocumentNode,
    FieldDefinitionNode,
    GraphQLObjectType,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    NameNode,
    ObjectTypeDefinitionNode,
    SchemaDefinitionNode,
    StringValueNode,
    get_named_type,
    is_list_type,
    is_non_null_type,
    parse,
    print_ast,
)
from strawberry.federation.schema import FederationAny

from sessiongraph.gate.limits import PAGE_SIZE_ARGUMENTS, default_page_size
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
        # Every user's page is loaded together (loaders.OwnedKey): a fixed number of statements.
        given = {} if filter is None else {**vars(filter), "user_id": None}
        return await session_list(info, first, after, last, before, given, order_by, owner=uuid.UUID(self.id))


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


# -- demand control: @cost and @listSize (Federation v2.9, the IBM cost spec) -----------------
# The server's own estimate (gate/limits.py, `extensions.cost.requestedQueryCost`) counts the
# nodes a document can return: each connection's page size (`first`/`last`, else its default)
# times one plus what is counted under it. The directives say the same to a gateway: a
# connection field is sized by its slicing arguments (its default page size assumed), each
# node on its page weighs 1 (the connection's `nodes` and its edges' `node`), and every
# object type weighs 0 (the spec's default for an object is 1; the server counts none).
ROOT_TYPES = {"Query", "Mutation", "Subscription"}
COST_DIRECTIVES = ("@cost", "@listSize")


def _directive(name: str, **arguments) -> ConstDirectiveNode:
    def value(v):
        if isinstance(v, bool):
            return BooleanValueNode(value=v)
        if isinstance(v, int):
            return IntValueNode(value=str(v))
        if isinstance(v, (list, tuple)):
            return ListValueNode(values=tuple(value(i) for i in v))
        return StringValueNode(value=v)

    return ConstDirectiveNode(
        name=NameNode(value=name),
        arguments=tuple(ArgumentNode(name=NameNode(value=k), value=value(v)) for k, v in arguments.items()),
    )


def _list_fields(type_: GraphQLObjectType) -> list[str]:
    return [name for name, field in type_.fields.items() if is_list_type(_nullable(field.type))]


def _nullable(type_):
    return type_.of_type if is_non_null_type(type_) else type_


def cost_directives(schema: GraphQLSchema) -> tuple[dict, dict]:
    """The directives the gateway's demand control reads, from the schema and the server's
    page sizes: {type name: [directive]} and {(type name, field name): [directive]}."""
    on_types, on_fields = {}, {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("_"):
            continue
        if type_.name not in ROOT_TYPES:
            on_types[type_.name] = [_directive("cost", weight=0)]
        for name, field in type_.fields.items():
            assumed = default_page_size(field)
            if assumed is None:
                continue
            connection = get_named_type(field.type)
            sized = _list_fields(connection)
            on_fields[type_.name, name] = [_directive(
                "listSize", assumedSize=assumed, slicingArguments=list(PAGE_SIZE_ARGUMENTS),
                sizedFields=sized, requireOneSlicingArgument=False,
            )]
            for list_field in sized:
                item = get_named_type(connection.fields[list_field].type)
                # An edge holds its node; a list of nodes is the nodes.
                weighed = (item.name, "node") if "node" in getattr(item, "fields", {}) else (connection.name, list_field)
                on_fields[weighed] = [_directive("cost", weight=1)]
    return on_types, on_fields


def with_costs(schema: GraphQLSchema, sdl: str) -> str:
    """The subgraph SDL `sdl` (printed from `schema`) with the cost directives applied and
    imported by its federation @link."""
    on_types, on_fields = cost_directives(schema)
    document: DocumentNode = parse(sdl)
    definitions = []
    for definition in document.definitions:
        if isinstance(definition, SchemaDefinitionNode):
            definition = replace(definition, directives=tuple(_importing(d, COST_DIRECTIVES) for d in definition.directives or ()))
        elif isinstance(definition, ObjectTypeDefinitionNode):
            name = definition.name.value
            definition = replace(
                definition,
                directives=(*(definition.directives or ()), *on_types.get(name, ())),
                fields=tuple(_with_field_directives(f, on_fields.get((name, f.name.value), ())) for f in definition.fields),
            )
        definitions.append(definition)
    return print_ast(DocumentNode(definitions=tuple(definitions)))


def _with_field_directives(field: FieldDefinitionNode, directives) -> FieldDefinitionNode:
    return replace(field, directives=(*(field.directives or ()), *directives)) if directives else field


def _importing(link: ConstDirectiveNode, names) -> ConstDirectiveNode:
    """The federation @link, importing `names` too."""
    if link.name.value != "link":
        return link
    arguments = []
    for argument in link.arguments:
        if argument.name.value == "import" and isinstance(argument.value, ListValueNode):
            have = [v.value for v in argument.value.values if isinstance(v, StringValueNode)]
            added = tuple(StringValueNode(value=n) for n in names if n not in have)
            argument = ArgumentNode(name=argument.name, value=ListValueNode(values=(*argument.value.values, *added)))
        arguments.append(argument)
    return replace(link, arguments=tuple(arguments))
