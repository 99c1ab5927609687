"""The object types of the read API. Their fields that a row holds follow from the field
declarations (models/fields.py): each is a plain attribute, set from the row by `from_row`;
the fields that do I/O (connections, relations) are resolvers written here."""

import uuid
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from sessiongraph.models import fields as declared
from sessiongraph.resolvers import queries
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.connections import Connection
from sessiongraph.schema.export import download_field

TurnStatus = strawberry.enum(declared.TurnStatus)
IdentityType = strawberry.enum(declared.IdentityType)
SessionKind = strawberry.enum(declared.SessionKind)
SessionStatus = strawberry.enum(declared.SessionStatus)
TerminalVerb = strawberry.enum(declared.TerminalVerb)
ReviewStatus = strawberry.enum(declared.ReviewStatus)

# The object types made from declarations, by name (filled as they are made, each after
# those its fields name).
DECLARED_TYPES: dict[str, type] = {}


def graphql_annotation(annotation):
    """The GraphQL side of a declared Python type: `Json` is the JSON scalar, a `Nested`
    the declared type it names."""
    if annotation is declared.Json:
        return JSON
    if annotation == declared.Json | None:
        return JSON | None
    if isinstance(annotation, declared.Nested):
        named = DECLARED_TYPES[annotation.name]
        named = list[named] if annotation.many else named
        return named | None if annotation.nullable else named
    return annotation


def _converter(annotation):
    """A declared value -> the GraphQL object it stands for (None: the value as it is)."""
    if not isinstance(annotation, declared.Nested):
        return None
    build = DECLARED_TYPES[annotation.name].from_row
    if annotation.many:
        return lambda values: [build(v) for v in values]
    return lambda value: None if value is None else build(value)


def _value_of(f: declared.Field):
    get, convert = f.getter, _converter(f.annotation)
    return get if convert is None else (lambda row: convert(get(row)))


def with_declared_fields(type_name: str, node: bool = True):
    """Gives a class, before `strawberry.type` makes it a type, an attribute for each exposed
    field `type_name` declares (its type and description), after `id` for a node type, in
    declared order, and `from_row`: a row (or a stored JSON object) -> the object, each
    value as its declaration says."""
    fields = declared.exposed(type_name)
    getters = tuple((f.name, _value_of(f)) for f in fields)

    def decorate(cls):
        annotations = {f.name: graphql_annotation(f.annotation) for f in fields}
        cls.__annotations__ = {**annotations, **cls.__annotations__}
        for f in fields:
            setattr(cls, f.name, strawberry.field(description=f.description))

        if node:
            def from_row(row):
                values = {name: get(row) for name, get in getters}
                return cls(id=to_global_id(type_name, row.id), row=row, **values)
        else:
            def from_row(row):
                return cls(row=row, **{name: get(row) for name, get in getters})

        cls.from_row = staticmethod(from_row)
        DECLARED_TYPES[type_name] = cls
        return cls

    return decorate


def declared_type(type_name: str) -> type:
    """An object type with only the fields `type_name` declares."""
    cls = type(type_name, (), {"__annotations__": {"row": strawberry.Private[Any]}, "__module__": __name__})
    return strawberry.type(with_declared_fields(type_name, node=False)(cls), description=declared.NESTED_DESCRIPTIONS.get(type_name))


Resource = declared_type("Resource")
DataMasking = declared_type("DataMasking")
GuardrailMatch = declared_type("GuardrailMatch")
ReviewDecision = declared_type("ReviewDecision")
Review = declared_type("Review")
RedTeamSettings = declared_type("RedTeamSettings")
TerminalDetails = declared_type("TerminalDetails")


@strawberry.enum
class Role(Enum):
    USER = "USER"
    ADMIN = "ADMIN"


ContentEncoding = strawberry.enum(declared.ContentEncoding)


@strawberry.interface(description="Relay Global Object Identification: every id is opaque and resolves through `node`.")
class Node:
    id: strawberry.ID


@strawberry.type
class Viewer:
    user_id: uuid.UUID
    org_id: uuid.UUID
    role: Role
    identity_type: IdentityType

    @classmethod
    @lru_cache(maxsize=1024)
    def of(cls, viewer) -> "Viewer":
        """The caller's (a frozen resolvers.context.Viewer): made once per caller, not per
        request (its two enums cost more than the rest of `{ viewer { userId } }`)."""
        return cls(
            user_id=viewer.user_id,
            org_id=viewer.org_id,
            role=Role(viewer.role),
            identity_type=IdentityType(viewer.identity_type),
        )


@strawberry.type
class Chat:
    endpoint: str
    session: strawberry.Private[Any]  # the session's row

    @strawberry.field(description="The chat's turns, oldest first: same paging rules as Session.turns.")
    async def turns(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection["Turn"]:
        page = await queries.chat_turn_page(info.context, self.session, self.endpoint, first, after, last, before)
        return Connection.of(page, Turn.from_row)


@strawberry.type(description=declared.NESTED_DESCRIPTIONS["RedTeamDetails"])
@with_declared_fields("RedTeamDetails", node=False)
class RedTeamDetails:
    row: strawberry.Private[Any]

    @strawberry.field(description="One chat per endpoint, in the order of `endpoints`.")
    def chats(self) -> list[Chat]:
        return [Chat(endpoint=endpoint, session=self.row) for endpoint in self.endpoints]


@strawberry.federation.type(keys=["id", "sessionId"])
@with_declared_fields("Session")
class Session(Node):
    row: strawberry.Private[Any]
    download = download_field  # export.graphql (schema/export.py)

    @strawberry.field(description="The session's owner: the entity a supergraph's users subgraph adds to (name, email).")
    def user(self) -> Annotated["User", strawberry.lazy("sessiongraph.schema.federation")]:
        from sessiongraph.schema.federation import User

        return User(id=strawberry.ID(str(self.row.user_id)))

    @strawberry.field(description="The session's turns, oldest first. `first`/`last` take 0..100 and default to 10.")
    async def turns(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection["Turn"]:
        page = await queries.turn_page(info.context, self.row, first, after, last, before)
        return Connection.of(page, Turn.from_row)

    @strawberry.field(
        description="The session's events in order (by seq). `types` keeps only those types. "
        "LLM_PARTIAL events are left out unless `includePartial` is true or `types` names "
        "LLM_PARTIAL. `first`/`last` take 0..100 and default to 20."
    )
    async def events(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        types: list[str] | None = None,
        include_partial: bool | None = False,
    ) -> Connection["Event"]:
        page = await queries.event_page(
            info.context, "session", self.row.id, first, after, last, before, types, include_partial
        )
        return Connection.of(page, Event.from_row)


@strawberry.federation.type(keys=["id"], description="One task of a session: a user query and everything the agents did to answer it.")
@with_declared_fields("Turn")
class Turn(Node):
    row: strawberry.Private[Any]

    @strawberry.field
    async def session(self, info: strawberry.Info) -> Session:
        return Session.from_row(await info.context.loaders.session.load(self.row.session_id))

    @strawberry.field(description="Same rules as Session.events, for this turn's events.")
    async def events(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        types: list[str] | None = None,
        include_partial: bool | None = False,
    ) -> Connection["Event"]:
        page = await queries.event_page(
            info.context, "turn", self.row.id, first, after, last, before, types, include_partial
        )
        return Connection.of(page, Event.from_row)


@strawberry.federation.type(keys=["id"])
@with_declared_fields("Event")
class Event(Node):
    row: strawberry.Private[Any]

    @strawberry.field(description="The content as stored, rendered in the given encoding.")
    def content(self, encoding: ContentEncoding = ContentEncoding.UTF8) -> str | None:
        return declared.content_as(encoding)(self.row)

    @strawberry.field
    async def turn(self, info: strawberry.Info) -> Turn | None:
        if self.row.turn_id is None:
            return None
        return Turn.from_row(await info.context.loaders.turn.load(self.row.turn_id))

    @strawberry.field
    async def session(self, info: strawberry.Info) -> Session:
        return Session.from_row(await info.context.loaders.session.load(self.row.session_id))


NODE_TYPES = {"Session": Session, "Turn": Turn, "Event": Event}
