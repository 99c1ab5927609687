"""The engine: one per process, for SQLite (embedded default) or PostgreSQL."""

import json
import os
from typing import TYPE_CHECKING

import orjson

from sessiongraph.models.containment import sql_json_contains

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./sessiongraph.db"
# How long a SQLite writer waits for a write lock another process holds; past it the write
# is answered SERVICE_UNAVAILABLE (models/availability.py). Below the request timeout's default.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("SESSIONGRAPH_DATABASE_URL") or DEFAULT_DATABASE_URL


def _json_loads(text: str | bytes):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # integers beyond 64 bits, which orjson refuses
        return json.loads(text)


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


def _lower(value):
    return value.lower() if isinstance(value, str) else value
