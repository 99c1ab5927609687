"""Whether a database error means "the database cannot answer now" (unreachable, restarting,
shutting down, its connection lost, its write lock held past the busy timeout) rather than a
fault of the statement or of the server. The one place such errors are recognised: the gate
(gate/operation.py) and the error codes (schema/errors.py) answer them SERVICE_UNAVAILABLE,
retryable, instead of INTERNAL_SERVER_ERROR. Knows nothing of GraphQL."""

import sqlite3

from sqlalchemy.exc import DBAPIError

# PostgreSQL SQLSTATEs of an unavailable server: class 08 (connection exception), 53300
# (too many connections), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now:
# the server is starting or stopping).
UNAVAILABLE_SQLSTATE_CLASSES = ("08",)
UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})
# sqlite3.OperationalError messages of a database that cannot be used now. "locked": another
# process held the write lock for longer than the busy timeout (models/database.py).
SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open database file", "disk i/o error")


def _chain(error: BaseException):
    """`error`, what SQLAlchemy wrapped (`orig`) and the causes, each once."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend((getattr(current, "orig", None), current.__cause__, current.__context__))


def _asyncpg_unavailable(error: BaseException) -> bool:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - a SQLite-only install
        return False
    if isinstance(error, (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.PostgresConnectionError)):
        return True
    # `InterfaceError: connection is closed`: a statement on a connection already lost.
    return isinstance(error, asyncpg.exceptions.InterfaceError) and "closed" in str(error)


def is_unavailable(error: BaseException | None) -> bool:
    """Whether `error` (or what it wraps) says the database cannot answer now."""
    if error is None:
        return False
    for current in _chain(error):
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (ConnectionError, TimeoutError)) or (isinstance(current, OSError) and current.errno is not None):
            return True  # refused, reset, unreachable, a connect that timed out
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES)):
            return True
        if isinstance(current, sqlite3.OperationalError) and str(current).lower().startswith(SQLITE_UNAVAILABLE):
            return True
        if _asyncpg_unavailable(current):
            return True
    return False


def is_busy(error: BaseException | None) -> bool:
    """Whether `error` is SQLite's write lock held elsewhere past the busy timeout (the
    database answers, but not this writer, yet)."""
    return error is not None and any(
        isinstance(current, sqlite3.OperationalError) and "locked" in str(current).lower() for current in _chain(error)
    )
