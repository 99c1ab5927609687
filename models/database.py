"""The engine: one per process, for SQLite (embedded default) or PostgreSQL."""

import contextlib
import json
import os
import re
import uuid
from typing import TYPE_CHECKING

import orjson

from sessiongraph.models.containment import sql_json_contains
from sessiongraph.models.search_text import sql_holds_terms, sql_search_text, sql_trigram_query

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./sessiongraph.db"
# How long a SQLite writer waits for a write lock another process holds; past it the write
# is answered SERVICE_UNAVAILABLE (models/availability.py). Below the request timeout's default.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("SESSIONGRAPH_DATABASE_URL") or DEFAULT_DATABASE_URL


# A stored JSON value nested deeper than this is read as its text (orjson.Fragment), which a
# response embeds as it is: orjson writes at most 254 levels (the response's own included)
# and Python's json about 1,000, so a value stored before the depth rule (resolvers/rules.py,
# 64 levels) must never make a read fail, however deep it is.
READ_AS_TEXT_DEPTH = 128
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _json_loads(text: str | bytes):
    if isinstance(text, bytes):
        text = text.decode()
    # A value has no more levels than opening brackets, each level two characters at least:
    # only a long one with many brackets is measured.
    if (
        len(text) > 2 * READ_AS_TEXT_DEPTH
        and text.count("[") + text.count("{") > READ_AS_TEXT_DEPTH
        and json_text_depth(text) > READ_AS_TEXT_DEPTH
    ):
        return orjson.Fragment(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # integers beyond 64 bits, which orjson refuses
        return json.loads(text)


def json_text_depth(text: str) -> int:
    """How deep the JSON text nests objects and arrays, read without parsing it (brackets
    inside strings do not count)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_dumps(value) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson will not write (integers beyond 64 bits): the json module
        return json.dumps(value)


def busy_timeout_within(request_timeout: float) -> int:
    """The SQLite busy timeout (ms) for a server whose requests may run `request_timeout`
    seconds: at most half of it, so that a writer waiting for another process's lock gives
    up (SERVICE_UNAVAILABLE) before its request is stopped. A statement waiting in SQLite's
    thread cannot be cut short as a PostgreSQL connection is (gate/deadlines.py)."""
    return max(1, min(SQLITE_BUSY_TIMEOUT_MS, int(request_timeout * 500)))


def create_engine(url: str, busy_timeout_ms: int | None = None, **kwargs) -> "AsyncEngine":
    # Imported when used: the console script's other commands start without SQLAlchemy.
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    # JSON columns (metadata, payloads, agents) are encoded on every row written and decoded
    # on every row read: orjson does both several times faster than the json module.
    # The writer (recording._insert_many) serializes with `json_dumps` itself: the engine's
    # is always that one.
    kwargs.setdefault("json_deserializer", _json_loads)
    kwargs["json_serializer"] = json_dumps
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", lambda connection, record: _configure_sqlite(connection, record, busy_timeout_ms))
    return engine


@contextlib.asynccontextmanager
async def scratch_postgres_database(admin_url: str, prefix: str):
    """A new, empty database named `<prefix>_<random>` on the PostgreSQL server `admin_url`
    names, as a URL; dropped afterwards (the tests', the fault suite's)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def _configure_sqlite(dbapi_connection, _record, busy_timeout_ms: int | None = None) -> None:
    """Every SQLite connection's settings."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms or SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # SQLite's own lower() folds ASCII only; the session search must ignore case in any
    # script, as PostgreSQL's does.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    # The session list's `metadata` and `endpoint` filters: PostgreSQL's jsonb containment.
    dbapi_connection.create_function("sg_json_contains", 2, sql_json_contains, deterministic=True)
    # Full-text search: the events' folded text, which SQLite does not store, and the index's
    # query and its check (models/search.py).
    dbapi_connection.create_function("sg_search_text", 1, sql_search_text, deterministic=True)
    dbapi_connection.create_function("sg_trigram_query", -1, sql_trigram_query, deterministic=True)
    dbapi_connection.create_function("sg_holds_terms", -1, sql_holds_terms, deterministic=True)


def _lower(value):
    return value.lower() if isinstance(value, str) else value
