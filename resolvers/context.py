"""A request's context: who is calling, its database connection and its DataLoaders."""

import asyncio
import uuid
import weakref
from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: uuid.UUID
    org_id: uuid.UUID
    role: str  # USER | ADMIN
    identity_type: str  # USER | MACHINE
    key_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "ADMIN"


# Per engine, its reads without a transaction (see `reading`).
_readers: "weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine]" = weakref.WeakKeyDictionary()


def reading(engine: AsyncEngine) -> AsyncEngine:
    """The engine a request reads through. On PostgreSQL, its connections run each statement
    on its own (autocommit): under READ COMMITTED every statement takes its own snapshot
    anyway, so the BEGIN and ROLLBACK around a request's reads were two round trips that
    changed no answer. SQLite's driver starts no transaction for reads to begin with."""
    if engine.dialect.name != "postgresql":
        return engine
    found = _readers.get(engine)
    if found is None:
        found = _readers[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


@lru_cache(maxsize=256)
def _record_type(columns: tuple[str, ...]) -> type:
    """A named tuple of the columns of one shape of statement. Reading a column of
    SQLAlchemy's Row by name costs about 0.3 us, ten times a named tuple's; a page of 2,000
    events reads ten columns of each row. Names that are not identifiers (`count(*)`) are
    renamed: such columns are read by position."""
    return namedtuple("Record", columns, rename=True)


class RequestContext:
    """One per GraphQL operation. Reads share one connection, opened on first use; the
    DataLoaders of the operation may fire concurrently, so statements take turns on it."""

    def __init__(self, engine: AsyncEngine, viewer: Viewer) -> None:
        self.engine = engine
        self.viewer = viewer
        self._connection: AsyncConnection | None = None
        # Set when the planner handed this operation to normal execution (planner/extension.py).
        self.planner_declined = False
        # Made when first needed: most small operations read nothing (`{ viewer { userId } }`).
        self._lock_made: asyncio.Lock | None = None

    def __getattr__(self, name: str):
        # Only for attributes not set: `loaders` is made on first use (and anew after
        # `release`).
        if name != "loaders":
            raise AttributeError(name)
        from sessiongraph.loaders import Loaders

        self.loaders = Loaders(self)
        return self.loaders

    @property
    def _lock(self) -> asyncio.Lock:
        if self._lock_made is None:
            self._lock_made = asyncio.Lock()
        return self._lock_made

    async def rows(self, statement, parameters: dict | None = None) -> list:
        """The statement's rows as named tuples. SQLAlchemy compiles a statement once and
        caches it (the page statements are built once per shape, see loaders/)."""
        # Shielded: when a sibling field fails, graphql-core cancels the other fields'
        # tasks; a statement cancelled half-way would leave the connection unusable, so it
        # runs to its end instead, and `close` waits for it.
        return await asyncio.shield(self._rows(statement, parameters))

    async def _rows(self, statement, parameters: dict | None) -> list:
        async with self._lock:
            if self._connection is None:
                self._connection = await reading(self.engine).connect()
            result = await self._connection.execute(statement, parameters)
            return list(map(_record_type(tuple(result.keys()))._make, result.all()))

    async def release(self) -> None:
        """Gives the connection back to the pool and drops what the DataLoaders cached: a
        subscription calls it between items, so it holds no connection while it waits and
        each item is resolved from fresh rows."""
        async with self._lock:
            await self._drop()
            self.__dict__.pop("loaders", None)

    async def close(self) -> None:
        if self._connection is None and (self._lock_made is None or not self._lock_made.locked()):
            self._drop_loaders()  # it never read anything
            return
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        """Returns the connection to the pool, forgets the rows cached; under the lock."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._drop_loaders()

    def _drop_loaders(self) -> None:
        loaders = self.__dict__.get("loaders")
        if loaders is not None:
            loaders.drop()
