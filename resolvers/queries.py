"""The read side: the session list, lookups by id, and the nested connections."""

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache

from sqlalchemy import Boolean, String, bindparam, false, func, literal_column, or_, select, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sessiongraph.models import Session
from sessiongraph.models.database import json_dumps
from sessiongraph.models.fields import SESSION_FILTERS
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import BadUserInput
from sessiongraph.resolvers.ids import from_global_id
from sessiongraph.loaders import SESSION_COLUMNS, EventFilter, OwnedKey, PageKey
from sessiongraph.resolvers.pagination import Page, PageArgs, cut_page, decode_cursor, encode_cursor
# find_session: the read side's lookup by id, used by the schema's `session` field.
from sessiongraph.resolvers.visibility import find_session, visible_session, visible_sessions  # noqa: F401

# No stored text holds U+0000 (PostgreSQL cannot store it, SQLite's LIKE stops at it), so a
# value with one matches nothing; sent to the database it would fail the statement.
NUL = "\x00"

SESSIONS_PAGE = 20
TURNS_PAGE = 10
EVENTS_PAGE = 20

ORDER_COLUMNS = {
    "CREATED_AT": Session.created_at,
    "UPDATED_AT": Session.updated_at,
    "LAST_ACTIVITY_AT": Session.last_activity_at,
    "TOKENS_USED": Session.tokens_used,
}


@dataclass(frozen=True, slots=True)
class SessionListFilter:
    """The values given for the declared filters (models/fields.SESSION_FILTERS), by name,
    as they are bound (an Enum by its value, a JSON value as its text); a filter left out or
    null keeps every session."""

    values: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, given: dict) -> "SessionListFilter":
        found = []
        for f in SESSION_FILTERS:
            value = given.get(f.name)
            if value is None or (f.how == "substring" and not value):
                continue  # an empty substring keeps every session
            if f.how == "contains":
                value = _json_object_text(f.name, value)
            elif f.how == "holds":
                value = _json_text([value])
            elif isinstance(value, list):
                value = tuple(v.value if isinstance(v, Enum) else v for v in value)
            elif isinstance(value, Enum):
                value = value.value
            found.append((f.name, value))
        return cls(tuple(found))

    def shape(self) -> tuple:
        """Which conditions the filter makes: what the statement's text depends on."""
        return tuple((name, _shape_of(_FILTERS[name].how, value)) for name, value in self.values)

    def parameters(self) -> dict:
        """The values of those conditions, bound as `filter_<name>`."""
        found = {}
        for name, value in self.values:
            how = _FILTERS[name].how
            if how == "substring":
                if NUL not in value:
                    found[f"filter_{name}"] = "%" + value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            elif how == "in":
                found[f"filter_{name}"] = [v for v in value if not _holds_nul(v)]
            elif how != "nonzero" and value is not UNSTORABLE and not _holds_nul(value):
                found[f"filter_{name}"] = value
        return found


_FILTERS = {f.name: f for f in SESSION_FILTERS}
# A JSON filter value no stored JSON can hold (a string with U+0000, which PostgreSQL's
# jsonb refuses, or one that is not Unicode text): it matches nothing.
UNSTORABLE = object()
DEEPEST_JSON_FILTER = 32


def _holds_nul(value) -> bool:
    return isinstance(value, str) and NUL in value


def _shape_of(how: str, value) -> str:
    if how == "nonzero":
        return "true" if value else "false"
    if value is UNSTORABLE or (how != "in" and _holds_nul(value)):
        return "nothing"
    return ""


def _json_object_text(name: str, value) -> object:
    """A JSON object filter's value as the JSON text bound to the statement."""
    if not isinstance(value, dict):
        raise BadUserInput(f"The {name} filter must be a JSON object, e.g. {{\"team\": \"banking\"}}; got {json_dumps(value)[:100]}.")
    if _depth(value) > DEEPEST_JSON_FILTER:
        raise BadUserInput(f"The {name} filter nests deeper than {DEEPEST_JSON_FILTER} levels.")
    return _json_text(value)


def _json_text(value) -> object:
    return json_dumps(value) if _storable(value) else UNSTORABLE


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _storable(value) -> bool:
    """Whether a JSON column could hold the value: no U+0000 in a string or key, every
    string Unicode text, every number finite."""
    if isinstance(value, str):
        return NUL not in value and _is_unicode_text(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_storable, value))
    return True


def _is_unicode_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


class json_contains(FunctionElement):
    """`column` contains the bound JSON text's value, as PostgreSQL's jsonb `@>` says: the
    operator itself there (which a GIN index serves), the same rules in Python on SQLite
    (models/containment.py, registered by models/database.py)."""

    type = Boolean()
    name = "json_contains"
    inherit_cache = True


@compiles(json_contains)
def _json_contains_sqlite(element, compiler, **kw):
    return f"sg_json_contains({compiler.process(element.clauses, **kw)})"


@compiles(json_contains, "postgresql")
def _json_contains_postgresql(element, compiler, **kw):
    column, value = element.clauses
    return f"{compiler.process(column, **kw)} @> CAST({compiler.process(value, **kw)} AS JSONB)"


def _filter_conditions(shape: tuple) -> list:
    """The SQL of each filter given, as its declaration says; values are bound by name."""
    found = []
    for name, variant in shape:
        if variant == "nothing":
            found.append(false())
            continue
        f = _FILTERS[name]
        columns = [Session.__table__.c[c] for c in f.columns]
        bound = f"filter_{name}"
        if f.of_kind is not None:
            found.append(Session.__table__.c.kind == literal_column(f"'{f.of_kind}'"))
        if f.how == "substring":
            pattern = bindparam(bound)
            found.append(or_(*(func.lower(c).like(pattern, escape="\\") for c in columns)))
        elif f.how == "in":
            found.append(columns[0].in_(bindparam(bound, expanding=True)))
        elif f.how == "nonzero":
            found.append(columns[0] > 0 if variant == "true" else columns[0] == 0)
        elif f.how in ("contains", "holds"):
            found.append(json_contains(columns[0], bindparam(bound, type_=String())))
        else:
            value = bindparam(bound, type_=columns[0].type)
            found.append({"after": columns[0] > value, "before": columns[0] < value}.get(f.how, columns[0] == value))
    return found


@lru_cache(maxsize=512)
def _list_parts(admin: bool, order_field: str, descending: bool, forward: bool, after: bool, before: bool, shape: tuple):
    """A session list's conditions without and with its cursors, and the order it fetches in."""
    order_column = ORDER_COLUMNS[order_field]
    keys = tuple_(order_column, Session.id)
    conditions = [visible_sessions(admin), *_filter_conditions(shape)]
    counted = tuple(conditions)
    for name, present, comes_after in (("after", after, True), ("before", before, False)):
        if present:
            bound = tuple_(bindparam(f"{name}_key", type_=order_column.type), bindparam(f"{name}_id", type_=Session.id.type))
            conditions.append(keys < bound if descending == comes_after else keys > bound)
    fetch_descending = descending == forward
    ordering = (order_column.desc(), Session.id.desc()) if fetch_descending else (order_column, Session.id)
    return counted, tuple(conditions), ordering


def _selected(order_field: str, columns: tuple | None, *always: str) -> tuple:
    """The columns a list page fetches: `columns` by name besides the id, the sort key and
    `always` (None: all)."""
    if columns is None:
        return SESSION_COLUMNS
    table = Session.__table__.c
    return tuple(table[name] for name in dict.fromkeys(("id", ORDER_COLUMNS[order_field].name, *always, *columns)))


@lru_cache(maxsize=512)
def _list_statements(shape: tuple, columns: tuple | None):
    """The page and count statements of one shape of session list, built once: building and
    keying them anew took most of a list page's time. Values are bound at execution.
    `columns`: the names of those to fetch (None: all)."""
    counted_conditions, conditions, ordering = _list_parts(*shape)
    count = select(func.count()).select_from(Session).where(*counted_conditions)
    page = select(*_selected(shape[1], columns)).where(*conditions).order_by(*ordering).limit(bindparam("limit"))
    # The same page with the total on each row (counted once: the subquery is uncorrelated).
    counted = page.add_columns(count.correlate(None).scalar_subquery().label("total_count"))
    return page, counted, count


@lru_cache(maxsize=512)
def _owned_list_statements(shape: tuple, columns: tuple | None):
    """The page and count statements of `_list_statements` for all the owners in the
    parameter `owners` at once (User.sessions of a gateway's users): rows numbered per owner
    and cut at the page size; the totals counted per owner."""
    counted_conditions, conditions, ordering = _list_parts(*shape)
    owned = Session.user_id.in_(bindparam("owners", expanding=True))
    number = func.row_number().over(partition_by=Session.user_id, order_by=ordering).label("page_row")
    inner = select(*_selected(shape[1], columns, "user_id"), number).where(*conditions, owned).subquery()
    page = (
        select(*(c for c in inner.c if c.name != "page_row"))
        .where(inner.c.page_row <= bindparam("limit"))
        .order_by(inner.c.user_id, inner.c.page_row)
    )
    count = select(Session.user_id, func.count().label("count")).where(*counted_conditions, owned).group_by(Session.user_id)
    return page, count


def _frozen(parameters: dict) -> tuple:
    """Parameters as a loader's key: sorted pairs, lists as tuples."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in parameters.items()))


async def list_sessions(
    ctx: RequestContext,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    where: SessionListFilter,
    order_field: str,
    descending: bool,
    with_total: bool = False,
    owner: uuid.UUID | None = None,
    columns: tuple[str, ...] | None = None,
) -> Page:
    """One page of the caller's sessions. `with_total`: the total is fetched with the page,
    in its statement (when `totalCount` is selected), instead of by a statement of its own.
    `owner`: only that user's, loaded with the pages of the operation's other owners.
    `columns`: the names of the columns to fetch (None: all; a page of rows with only some
    columns is read by the planner's compiled selections, never made into Session objects)."""
    args = PageArgs.parse(first, after, last, before, SESSIONS_PAGE)
    order_name = ORDER_COLUMNS[order_field].name
    scope = f"{order_field}:{'DESC' if descending else 'ASC'}"
    is_time = order_field != "TOKENS_USED"

    def cursor_key(cursor: str) -> tuple:
        value, id_ = decode_cursor(cursor, "sessions", scope, (str if is_time else int, str))
        try:
            return (datetime.fromisoformat(value) if is_time else value), uuid.UUID(id_)
        except ValueError:
            raise BadUserInput(f"The cursor {cursor!r} was not issued by this connection.") from None

    viewer = ctx.viewer
    parameters = {"org_id": viewer.org_id, **where.parameters()}
    if not viewer.is_admin:
        parameters["user_id"] = viewer.user_id
    count_parameters = dict(parameters)
    for name, cursor in (("after", args.after), ("before", args.before)):
        if cursor is not None:
            parameters[f"{name}_key"], parameters[f"{name}_id"] = cursor_key(cursor)
    shape = (viewer.is_admin, order_field, descending, args.forward, args.after is not None, args.before is not None, where.shape())
    page, counted, count_statement = _list_statements(shape, columns)
    if owner is None:
        rows = await ctx.rows(counted if with_total else page, {**parameters, "limit": args.limit + 1})
    else:
        owned_page, owned_count = _owned_list_statements(shape, columns)
        rows = await ctx.loaders.owned_rows.load(OwnedKey(owner, owned_page, _frozen({**parameters, "limit": args.limit + 1})))

    def cursor(row) -> str:
        # A time is written as its isoformat(), by orjson itself (without the call).
        return encode_cursor("sessions", scope, getattr(row, order_name), row.id.hex)

    async def count() -> int:
        if owner is not None:
            counts = await ctx.loaders.owned_rows.load(OwnedKey(owner, owned_count, _frozen(count_parameters)))
            return counts[0].count if counts else 0
        if with_total and rows:
            return rows[0].total_count
        return (await ctx.rows(count_statement, count_parameters))[0][0]

    return cut_page(rows, args, cursor, count)


async def turn_page(ctx: RequestContext, session, first, after, last, before) -> Page:
    return (await turn_pages(ctx, [session], first, after, last, before))[0]


async def turn_pages(ctx: RequestContext, sessions: list, first, after, last, before, columns=None) -> list[Page]:
    """The turns page of each session, in one statement whatever their number. `columns`:
    those to fetch (None: all)."""
    args = PageArgs.parse(first, after, last, before, TURNS_PAGE)
    scopes = [str(session.id) for session in sessions]
    keys = [
        PageKey(session.id, args.limit, args.forward, *_cursor_keys(args, "turns", scope), None, columns)
        for session, scope in zip(sessions, scopes, strict=True)
    ]
    pages = await ctx.loaders.turn_page.load_many(keys)
    return [
        cut_page(rows, args, _position_cursor(scope), _stored_count(session.turn_count))
        for rows, session, scope in zip(pages, sessions, scopes, strict=True)
    ]


async def chat_turn_page(ctx: RequestContext, session, endpoint: str, first, after, last, before) -> Page:
    return (await chat_turn_pages(ctx, [(session, endpoint)], first, after, last, before))[0]


async def chat_turn_pages(ctx: RequestContext, chats: list[tuple], first, after, last, before, columns=None) -> list[Page]:
    """The turns page of each chat, a (session row, endpoint) pair, in one statement whatever
    their number; Session.turns' rules and cursors, each cursor scoped to its chat.
    `totalCount`: one grouped count for all the chats whose count is asked for."""
    args = PageArgs.parse(first, after, last, before, TURNS_PAGE)
    parents = [(session.id, endpoint) for session, endpoint in chats]
    scopes = [f"chat:{session_id}:{endpoint}" for session_id, endpoint in parents]
    keys = [
        PageKey(parent, args.limit, args.forward, *_cursor_keys(args, "turns", scope), None, columns)
        for parent, scope in zip(parents, scopes, strict=True)
    ]
    pages = await ctx.loaders.chat_turn_page.load_many(keys)
    return [
        cut_page(rows, args, _position_cursor(scope), _loaded_count(ctx.loaders.chat_turn_count, parent))
        for rows, parent, scope in zip(pages, parents, scopes, strict=True)
    ]


async def event_page(
    ctx: RequestContext, parent_kind: str, parent_id, first, after, last, before, types, include_partial
) -> Page:
    """The events of a session (`parent_kind` "session") or of a turn ("turn")."""
    return (await event_pages(ctx, parent_kind, [parent_id], first, after, last, before, types, include_partial))[0]


async def event_pages(
    ctx: RequestContext, parent_kind: str, parent_ids: list, first, after, last, before, types, include_partial, columns=None
) -> list[Page]:
    """`event_page` for each of `parent_ids`, in one statement whatever their number."""
    args = PageArgs.parse(first, after, last, before, EVENTS_PAGE)
    events = EventFilter.of(types, include_partial)
    scopes = [f"{parent_kind}:{parent_id}" for parent_id in parent_ids]
    keys = [
        PageKey(parent_id, args.limit, args.forward, *_cursor_keys(args, "events", scope), events, columns)
        for parent_id, scope in zip(parent_ids, scopes, strict=True)
    ]
    loader = ctx.loaders.session_event_page if parent_kind == "session" else ctx.loaders.turn_event_page
    counts = ctx.loaders.session_event_count if parent_kind == "session" else ctx.loaders.turn_event_count
    pages = await loader.load_many(keys)
    return [
        cut_page(rows, args, _seq_cursor(scope), _loaded_count(counts, (parent_id, events)))
        for rows, parent_id, scope in zip(pages, parent_ids, scopes, strict=True)
    ]


def _position_cursor(scope: str):
    return lambda row: encode_cursor("turns", scope, row.position)


def _seq_cursor(scope: str):
    return lambda row: encode_cursor("events", scope, row.seq)


def _stored_count(count: int):
    async def stored() -> int:
        return count

    return stored


def _loaded_count(loader, key):
    async def loaded() -> int:
        return await loader.load(key)

    return loaded


def _cursor_keys(args: PageArgs, connection: str, scope: str) -> tuple[int | None, int | None]:
    return tuple(
        None if cursor is None else decode_cursor(cursor, connection, scope, (int,))[0]
        for cursor in (args.after, args.before)
    )


def parse_node_id(id_: str) -> tuple[str, object]:
    """(type, key) of a global id; BAD_USER_INPUT when it is not one this server could have
    issued."""
    parsed = from_global_id(id_)
    if parsed is None:
        raise BadUserInput(f"{id_!r} is not a valid id.")
    return parsed


async def find_node(ctx: RequestContext, id_: str) -> tuple[str, object] | None:
    """(type, row) of a visible node, None when there is none."""
    return await _visible_node(ctx, *parse_node_id(id_))


async def find_nodes(ctx: RequestContext, ids: list[str]) -> list[tuple[str, object] | None]:
    """`find_node` for each id, batched. Every id is checked before any lookup starts, so a
    bad one fails the field without leaving lookups running on the request's connection."""
    parsed = [parse_node_id(i) for i in ids]
    return list(await asyncio.gather(*(_visible_node(ctx, *p) for p in parsed)))


async def _visible_node(ctx: RequestContext, type_name: str, key) -> tuple[str, object] | None:
    if type_name == "Session":
        row = await visible_session(ctx, key)
    else:
        loader = ctx.loaders.turn if type_name == "Turn" else ctx.loaders.event
        row = await loader.load(key)
        if row is not None and await visible_session(ctx, row.session_id) is None:
            row = None
    return None if row is None else (type_name, row)
