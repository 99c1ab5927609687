"""DataLoaders: every relation and nested connection is loaded for all parents at once.

A nested connection is one statement per distinct set of arguments, whatever the number of
parents: rows are numbered per parent with a window function and cut at the page size.
`totalCount` has loaders of its own, so it costs nothing unless it is selected.
"""

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

import orjson
from sqlalchemy import String, and_, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from strawberry.dataloader import DataLoader

from sessiongraph.models import Event, Session, Turn
from sessiongraph.models.tables import SessionEventCount, TurnEventCount
from sessiongraph.models.fields import EVENT_SESSION_COLUMNS
from sessiongraph.models.search_text import FOLDED_COLUMNS
from sessiongraph.models.types import JSONIds

SESSION_COLUMNS = tuple(Session.__table__.c)
# Not the folded copies of the texts, which only the search reads (models/search_text.py).
TURN_COLUMNS = tuple(c for c in Turn.__table__.c if c.name not in FOLDED_COLUMNS)
# An event's `elapsedMs` is measured from its session's creation: it comes with the row.
EVENT_COLUMNS = (
    *(c for c in Event.__table__.c if c.name not in FOLDED_COLUMNS),
    *(Session.__table__.c[column].label(name) for name, column in EVENT_SESSION_COLUMNS.items()),
)
EVENTS_WITH_SESSION = Event.__table__.join(Session.__table__, Event.session_id == Session.id)


class SharedLoader(DataLoader):
    """A DataLoader whose futures survive a cancelled caller. Several fields can await one
    cached future; graphql-core cancels the siblings of a failing field, and a cancelled
    waiter would otherwise cancel the future itself, and with it every other field's."""

    def load(self, key):
        return asyncio.shield(super().load(key))

    def load_many(self, keys):
        # One shield around them all: a nested page loads 200 pages at once.
        return asyncio.shield(asyncio.gather(*map(super().load, keys)))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`types` keeps only those types; LLM_PARTIAL is left out unless asked for."""

    types: tuple[str, ...] | None
    include_partial: bool

    @classmethod
    def of(cls, types, include_partial) -> "EventFilter":
        """From a field's arguments `types` and `includePartial`."""
        return cls(None if types is None else tuple(types), bool(include_partial))

    def condition(self, type_column=Event.type):
        """The filter in SQL, on `type_column` (an event's type, or a kept count's); None:
        every event."""
        if self.types is not None:
            # No stored type holds U+0000; PostgreSQL would refuse to compare with one.
            return type_column.in_([t for t in self.types if "\x00" not in t])
        if not self.include_partial:
            return type_column != "LLM_PARTIAL"
        return None

    def matches(self, event_type: str) -> bool:
        """The same filter as `condition`, for an event already read (a live one)."""
        if self.types is not None:
            return event_type in self.types
        return self.include_partial or event_type != "LLM_PARTIAL"


@dataclass(frozen=True, slots=True)
class PageKey:
    """One parent's page: rows after `after` and before `before` (sort keys), in the
    connection's order (`forward`) or from its end, `limit` + 1 of them at most."""

    parent: Hashable
    limit: int
    forward: bool
    after: int | None
    before: int | None
    events: EventFilter | None = None
    # The columns to fetch, by name (the parent's and the sort key always among them); None:
    # all of them, as the types' `from_row` needs.
    columns: tuple[str, ...] | None = None

    @property
    def batch(self) -> tuple:
        return (self.limit, self.forward, self.after, self.before, self.events, self.columns)


@dataclass(frozen=True, slots=True)
class OwnedKey:
    """One owner's rows of `statement`, a statement that selects the rows of all owners in
    its `owners` parameter at once (each row names its owner in `user_id`), run with the
    other `parameters` (name, value pairs; sequences as tuples)."""

    owner: Hashable
    statement: object
    parameters: tuple


class Loaders:
    """The operation's DataLoaders, each made on first use: most operations need one or two
    of them, and a small query none."""

    # loader -> the method that loads a batch of its keys
    BATCHES = {
        "session": "_sessions",
        "turn": "_turns",
        "event": "_events",
        "turn_page": "_turn_pages",
        "session_event_page": "_session_event_pages",
        "turn_event_page": "_turn_event_pages",
        "session_event_count": "_session_event_counts",
        "turn_event_count": "_turn_event_counts",
        "chat_turn_page": "_chat_turn_pages",
        "chat_turn_count": "_chat_turn_counts",
        "owned_rows": "_owned_rows",
    }

    def __init__(self, context) -> None:
        self.context = context

    def drop(self) -> None:
        """Forgets the loaders, and with them every row they cached. A loader and its batch
        function (a method of this object) refer to each other: left to the cycle collector,
        the rows of a finished operation would wait for a full collection (under load the
        server's memory doubled: 135 -> 280 MB); dropped here, they are freed at once. A loader asked
        for afterwards is made anew."""
        for name in self.BATCHES:
            self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> SharedLoader:
        # Called only for attributes not set yet: the loader is made and kept.
        batch = self.BATCHES.get(name)
        if batch is None:
            raise AttributeError(name)
        loader = SharedLoader(getattr(self, batch))
        setattr(self, name, loader)
        return loader

    async def _by_id(self, columns, id_column, ids, select_from=None) -> list:
        single = len(ids) == 1
        statement = _by_id_statement(columns, id_column, select_from, single, self.context.engine.dialect.name)
        found = {row.id: row for row in await self.context.rows(statement, {"ids": ids[0] if single else ids})}
        return [found.get(i) for i in ids]

    async def _sessions(self, ids: list[uuid.UUID]) -> list:
        return await self._by_id(SESSION_COLUMNS, Session.id, ids)

    async def _turns(self, ids: list[int]) -> list:
        return await self._by_id(TURN_COLUMNS, Turn.id, ids)

    async def _events(self, ids: list[int]) -> list:
        return await self._by_id(EVENT_COLUMNS, Event.id, ids, EVENTS_WITH_SESSION)

    async def _turn_pages(self, keys: list[PageKey]) -> list[list]:
        return await self._pages(keys, TURN_COLUMNS, Turn.session_id, Turn.position)

    async def _session_event_pages(self, keys: list[PageKey]) -> list[list]:
        return await self._pages(
            keys, EVENT_COLUMNS, Event.session_id, Event.seq, EVENTS_WITH_SESSION, (SessionEventCount.session_id, "session_event_count")
        )

    async def _turn_event_pages(self, keys: list[PageKey]) -> list[list]:
        return await self._pages(
            keys, EVENT_COLUMNS, Event.turn_id, Event.seq, EVENTS_WITH_SESSION, (TurnEventCount.turn_id, "turn_event_count")
        )

    async def _pages(self, keys, all_columns, parent, key, select_from=None, kept=None) -> list[list]:
        """`kept`: (the kept counts' parent column, the count loader): the page of a single
        parent brings its count along (`_with_kept_count`), which that loader is primed
        with, so that `totalCount` costs no statement of its own."""
        groups: dict[tuple, list[PageKey]] = defaultdict(list)
        for k in keys:
            groups[k.batch].append(k)
        pages: dict[PageKey, list] = {}
        for group in groups.values():
            columns, joined = _chosen_columns(all_columns, group[0].columns, select_from, parent.key)
            dialect = self.context.engine.dialect.name
            statement, parameters = page_statement(group, columns, parent, key, joined, dialect)
            counted = kept is not None and len(group) == 1 and group[0].events is not None
            if counted:
                statement = _with_kept_count(statement, kept[0], group[0].events)
            rows = await self.context.rows(statement, parameters)
            if counted and rows:
                getattr(self, kept[1]).prime((group[0].parent, group[0].events), int(rows[0].kept_count))
            by_parent = defaultdict(list)
            # By position, the fastest way into a row; the windowed statement keeps the order.
            parent_of = itemgetter([c.name for c in columns].index(parent.key))
            for row in rows:
                by_parent[parent_of(row)].append(row)
            for k in group:
                pages[k] = by_parent.get(k.parent, [])
        return [pages[k] for k in keys]

    async def _chat_turn_pages(self, keys: list[PageKey]) -> list[list]:
        """The turns pages of chats: each key's parent a (session id, endpoint) pair."""
        groups: dict[tuple, list[PageKey]] = defaultdict(list)
        for k in keys:
            groups[k.batch].append(k)
        pages: dict[PageKey, list] = {}
        dialect = self.context.engine.dialect.name
        for group in groups.values():
            names = None if group[0].columns is None else ("endpoint", *group[0].columns)
            columns, _ = _chosen_columns(TURN_COLUMNS, names, None, "session_id")
            statement = _chat_page_statement(columns, group[0].batch, len({k.parent for k in group}) == 1, dialect)
            by_chat = defaultdict(list)
            for row in await self.context.rows(statement, chat_parameters([k.parent for k in group], dialect)):
                by_chat[row.session_id, row.endpoint].append(row)
            for k in group:
                pages[k] = by_chat.get(k.parent, [])
        return [pages[k] for k in keys]

    async def _chat_turn_counts(self, chats: list[tuple]) -> list[int]:
        """How many turns each (session id, endpoint) has: one grouped count for them all."""
        dialect = self.context.engine.dialect.name
        statement = _chat_count_statement(len(set(chats)) == 1, dialect)
        counts = {(s, e): n for s, e, n in await self.context.rows(statement, chat_parameters(chats, dialect))}
        return [counts.get(chat, 0) for chat in chats]

    async def _owned_rows(self, keys: list[OwnedKey]) -> list[list]:
        """One statement per distinct statement and parameters, for all their owners."""
        groups: dict[tuple, list] = defaultdict(list)
        for k in keys:
            groups[k.statement, k.parameters].append(k.owner)
        found: dict[tuple, list] = defaultdict(list)
        for (statement, parameters), owners in groups.items():
            bound = {**dict(parameters), "owners": list(dict.fromkeys(owners))}
            for row in await self.context.rows(statement, bound):
                found[statement, parameters, row.user_id].append(row)
        return [found.get((k.statement, k.parameters, k.owner), []) for k in keys]

    async def _session_event_counts(self, keys: list[tuple]) -> list[int]:
        return await self._event_counts(keys, SessionEventCount.session_id, SessionEventCount)

    async def _turn_event_counts(self, keys: list[tuple]) -> list[int]:
        return await self._event_counts(keys, TurnEventCount.turn_id, TurnEventCount)

    async def _event_counts(self, keys: list[tuple[Hashable, EventFilter]], parent, kept) -> list[int]:
        """How many events each parent has that its filter keeps: the sum of the counts the
        writer keeps per (parent, type), a row a type, never a count of the events."""
        groups = defaultdict(list)
        for parent_id, events in keys:
            groups[events].append(parent_id)
        counts = {}
        for events, parents in groups.items():
            statement = (
                select(parent, func.sum(kept.count))
                .where(parent.in_(parents))
                .group_by(parent)
            )
            if (condition := events.condition(kept.type)) is not None:
                statement = statement.where(condition)
            for parent_id, count in await self.context.rows(statement):
                counts[parent_id, events] = int(count)
        return [counts.get(k, 0) for k in keys]


def _in_bound(column, name: str, dialect: str):
    """`column` is one of the values bound as `name`, bound as one value whatever their
    number (see page_statement): an array on PostgreSQL, a JSON array on SQLite."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    if dialect == "sqlite":
        return column.in_(select(func.json_each(bindparam(name, type_=JSONIds())).table_valued("value").c.value))
    return column.in_(bindparam(name, expanding=True))


@lru_cache(maxsize=32)
def _by_id_statement(columns, id_column, select_from, single: bool, dialect: str):
    # Built once, the ids bound at execution: building a select of a session's 48 columns
    # anew was about a tenth of a single-session page's time.
    condition = id_column == bindparam("ids", type_=id_column.type) if single else _in_bound(id_column, "ids", dialect)
    statement = select(*columns).where(condition)
    return statement if select_from is None else statement.select_from(select_from)


@lru_cache(maxsize=256)
def _chosen_columns(all_columns: tuple, names: tuple[str, ...] | None, select_from, parent: str) -> tuple[tuple, object]:
    """The columns of `names` and the parent's (all when None), and what to select them
    from: the events' join with their session only when a column of the session's
    (models/fields.EVENT_SESSION_COLUMNS) is among them."""
    if names is None:
        return all_columns, select_from
    by_name = {c.name: c for c in all_columns}
    columns = tuple(by_name[n] for n in dict.fromkeys((parent, *names)))
    return columns, select_from if not EVENT_SESSION_COLUMNS.keys().isdisjoint(names) else None


def page_statement(keys: list[PageKey], columns, parent, key, select_from=None, dialect: str = "") -> tuple:
    """One statement for the pages of all `keys`, which share their arguments, and its
    parameters (the parents' ids).

    A single parent is a plain index range scan with LIMIT; several are numbered per
    parent with row_number() and cut at the page size, still one statement. The parents
    are bound as one value -- an array on PostgreSQL (`= ANY(:parents)`), a JSON array read
    by json_each() on SQLite -- rather than as a list of parameters: one statement text
    whatever their number, compiled once (SQLAlchemy's compiled cache), and for 200 parents
    PostgreSQL ran the page in about half the time (5 against 9 ms for a nested page's
    events). Another `dialect`: a list of parameters.
    """
    first = keys[0]
    parents = [k.parent for k in keys]
    single = len(parents) == 1
    statement = _page_statement(columns, parent, key, select_from, first.batch, single, dialect)
    return statement, {"parent": parents[0]} if single else {"parents": parents}


@lru_cache(maxsize=512)
def _page_statement(columns, parent, key, select_from, batch: tuple, single: bool, dialect: str = ""):
    # Built once per shape and arguments, the parents bound at execution: building the
    # windowed statement anew took about a tenth of a nested page's time.
    limit, forward, after, before, events, _columns = batch
    order = key.asc() if forward else key.desc()
    conditions = []
    if after is not None:
        conditions.append(key > after)
    if before is not None:
        conditions.append(key < before)
    if events is not None and (condition := events.condition()) is not None:
        conditions.append(condition)
    if single:
        statement = select(*columns).where(parent == bindparam("parent"), *conditions)
        if select_from is not None:
            statement = statement.select_from(select_from)
        return statement.order_by(order).limit(limit + 1)
    number = func.row_number().over(partition_by=parent, order_by=order).label("page_row")
    inner = select(*columns, number).where(_in_bound(parent, "parents", dialect), *conditions)
    if select_from is not None:
        inner = inner.select_from(select_from)
    inner = inner.subquery()
    return (
        select(*(c for c in inner.c if c.name != "page_row"))
        .where(inner.c.page_row <= limit + 1)
        .order_by(inner.c[parent.name], inner.c.page_row)
    )


@lru_cache(maxsize=256)
def _with_kept_count(statement, kept_parent, events: EventFilter):
    """A single parent's page statement with the count of that parent's events its filter
    keeps, from the kept counts (a sum of a row a type), as the column `kept_count`: one
    round trip for the page and its `totalCount`."""
    kept = kept_parent.table.c
    total = select(func.coalesce(func.sum(kept.count), 0)).where(kept_parent == bindparam("parent"))
    if (condition := events.condition(kept.type)) is not None:
        total = total.where(condition)
    return statement.add_columns(total.scalar_subquery().label("kept_count"))


# -- chats: the turns of a (session, endpoint) pair ------------------------------------------

CHAT = (Turn.session_id, Turn.endpoint)


def chat_parameters(chats: list[tuple], dialect: str) -> dict:
    """The (session id, endpoint) pairs bound as one value, so the statement's text is the
    same whatever their number: two arrays on PostgreSQL (unnest() pairs them up again), a
    JSON array of pairs on SQLite (UUIDs as the 32 hex digits its Uuid columns hold)."""
    chats = list(dict.fromkeys(chats))  # joined to the turns: a pair given twice would count twice
    if len(chats) == 1:
        return {"session_id": chats[0][0], "endpoint": chats[0][1]}
    if dialect == "postgresql":
        return {"session_ids": [s for s, _ in chats], "endpoints": [e for _, e in chats]}
    if dialect == "sqlite":
        return {"chats": orjson.dumps([[s.hex, e] for s, e in chats]).decode()}
    return {"chats": [tuple(chat) for chat in chats]}


@lru_cache(maxsize=8)
def _chats(single: bool, dialect: str) -> tuple:
    """What to select turns of the bound chats from, and on what condition: for one chat,
    the turns with its session id and endpoint; for several, the pairs joined to the turns
    on both, so each pair is a range of the index turns_session_endpoint_position (SQLite
    chose turns_session_position for a row value IN the pairs, and filtered endpoints)."""
    if single:
        return Turn.__table__, (Turn.session_id == bindparam("session_id"), Turn.endpoint == bindparam("endpoint"))
    if dialect == "postgresql":
        pairs = func.unnest(
            bindparam("session_ids", type_=ARRAY(Turn.session_id.type)),
            bindparam("endpoints", type_=ARRAY(Turn.endpoint.type)),
        ).table_valued("session_id", "endpoint").render_derived()
        session_id, endpoint = pairs.c.session_id, pairs.c.endpoint
    elif dialect == "sqlite":
        pairs = func.json_each(bindparam("chats", type_=String)).table_valued("value")
        session_id, endpoint = func.json_extract(pairs.c.value, "$[0]"), func.json_extract(pairs.c.value, "$[1]")
    else:
        return Turn.__table__, (tuple_(*CHAT).in_(bindparam("chats", expanding=True)),)
    return pairs.join(Turn.__table__, and_(Turn.session_id == session_id, Turn.endpoint == endpoint)), ()


@lru_cache(maxsize=512)
def _chat_page_statement(columns, batch: tuple, single: bool, dialect: str):
    """The pages of chats sharing their arguments: as `_page_statement`, numbered per chat."""
    limit, forward, after, before, _events, _columns = batch
    key = Turn.position
    order = key.asc() if forward else key.desc()
    chats, conditions = _chats(single, dialect)
    conditions = list(conditions)
    if after is not None:
        conditions.append(key > after)
    if before is not None:
        conditions.append(key < before)
    if single:
        return select(*columns).where(*conditions).order_by(order).limit(limit + 1)
    number = func.row_number().over(partition_by=CHAT, order_by=order).label("page_row")
    inner = select(*columns, number).select_from(chats).where(*conditions).subquery()
    return (
        select(*(c for c in inner.c if c.name != "page_row"))
        .where(inner.c.page_row <= limit + 1)
        .order_by(inner.c.session_id, inner.c.endpoint, inner.c.page_row)
    )


@lru_cache(maxsize=8)
def _chat_count_statement(single: bool, dialect: str):
    chats, conditions = _chats(single, dialect)
    return select(*CHAT, func.count()).select_from(chats).where(*conditions).group_by(*CHAT)
