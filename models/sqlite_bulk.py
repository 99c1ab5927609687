"""New sessions into SQLite through the sqlite3 module itself: the importer's bulk path on
SQLite, without SQLAlchemy (importing it is a sixth of a large import's time) nor aiosqlite's
thread. The values are those SQLAlchemy's column types bind on SQLite (a UUID's hex, a UTC
datetime's text, JSON's text); what is not the simple case is left to `recording`."""

import re
import sqlite3
import uuid
from itertools import chain
from operator import attrgetter

from sessiongraph.models.database import configure_sqlite, json_dumps, sqlite_time_text
from sessiongraph.models.new_sessions import NewSession, Stored, batch_keys, new_session_rows, new_users

_FILE_URL = re.compile(r"sqlite(?:\+aiosqlite)?:///([^?]+)")


def sqlite_path(url: str) -> str | None:
    """The file of a plain SQLite URL (no query, not in memory); else None."""
    match = _FILE_URL.fullmatch(url)
    return match[1] if match and match[1] != ":memory:" else None


def connect(path: str) -> sqlite3.Connection:
    """A connection with the engine's settings that leaves transactions to the caller."""
    connection = sqlite3.connect(path, isolation_level=None)
    configure_sqlite(connection)
    return connection


def schema_version(connection: sqlite3.Connection) -> list[str] | None:
    """The database's recorded migration versions; None when it has no such table yet."""
    try:
        return [version for (version,) in connection.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.OperationalError:
        return None


def store_new_sessions(connection: sqlite3.Connection, news: list[NewSession]) -> list[Stored] | None:
    """`recording.store_new_sessions` on a sqlite3 connection: the sessions, all new, with
    their users when never seen, in one transaction; None, having written nothing, when any
    of them is not that simple case or the database refuses the batch."""
    keys = batch_keys(news)
    if keys is None:
        return None
    try:
        # The write lock up front: nobody writes between the checks and the inserts.
        connection.execute("BEGIN IMMEDIATE")
        stored = _store(connection, news, *keys)
        if stored is not None:
            connection.execute("COMMIT")
    except sqlite3.DatabaseError:
        stored = None
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    return stored


def _store(connection: sqlite3.Connection, news: list[NewSession], ids: list, owned: list) -> list[Stored] | None:
    user_ids = list({n.user_id.hex: n.user_id for n in news}.items())
    known = dict(_select(connection, "SELECT id, org_id FROM users WHERE id IN ({})", [hex for hex, _ in user_ids]))
    users = new_users(news, {user_id: uuid.UUID(known[hex]) for hex, user_id in user_ids if hex in known})
    if users is None:
        return None
    if ids and _select(connection, "SELECT 1 FROM sessions WHERE id IN ({})", [i.hex for i in ids]):
        return None
    if owned:
        taken = _select(
            connection,
            "SELECT user_id, external_id FROM sessions WHERE deleted_at IS NULL"
            " AND external_id IN ({}) AND user_id IN ({})",
            list({external_id for _, external_id in owned}),
            list({user_id.hex for user_id, _ in owned}),
        )
        if not {(user_id.hex, external_id) for user_id, external_id in owned}.isdisjoint(taken):
            return None
    _insert(connection, "users", [
        {"id": u["id"].hex, "org_id": u["org_id"].hex, "created_at": sqlite_time_text(u["created_at"])} for u in users
    ])
    rows = new_session_rows(news)
    _insert(connection, "sessions", [{
        **s,
        "id": s["id"].hex,
        "org_id": s["org_id"].hex,
        "user_id": s["user_id"].hex,
        "metadata": json_dumps(s["metadata"]),
        "created_at": sqlite_time_text(s["created_at"]),
        "updated_at": sqlite_time_text(s["updated_at"]),
        "last_activity_at": sqlite_time_text(s["last_activity_at"]),
    } for s in rows.sessions])
    turn_ids: dict = {}
    if rows.turns:
        _insert(connection, "turns", [{
            **t,
            "session_id": t["session_id"].hex,
            "created_at": sqlite_time_text(t["created_at"]),
            "completed_at": sqlite_time_text(t["completed_at"]),
            "agents": json_dumps(t["agents"]),
        } for t in rows.turns])
        by_hex = {s["id"].hex: s["id"] for s in rows.sessions}
        turn_ids = {
            (by_hex[session_id], position): turn_id
            for session_id, position, turn_id in _select(
                connection, "SELECT session_id, position, id FROM turns WHERE session_id IN ({})", list(by_hex)
            )
        }
    if events := rows.events:
        _insert_columns(connection, "events", {
            "session_id": list(chain.from_iterable([s["id"].hex] * s["event_count"] for s in rows.sessions)),
            "turn_id": rows.event_turn_ids(turn_ids),
            "seq": rows.seqs,
            "workflow_id": rows.workflow_ids,
            "type": list(map(_type, events)),
            "agent_id": list(map(_agent_id, events)),
            # A bytearray is bound as the same BLOB as bytes, without sqlite3's adaptation
            # lookup, which costs bytes half a microsecond a value.
            "content": [content if content is None else bytearray(content) for content in map(_content, events)],
            "timestamp": [e.sqlite_timestamp or sqlite_time_text(e.timestamp) for e in events],
            "payload": list(map(json_dumps, map(_payload, events))),
            "dedup_key": list(map(_dedup_key, events)),
        })
    return rows.stored


_type, _agent_id, _content, _payload, _dedup_key = map(attrgetter, ("type", "agent_id", "content", "payload", "dedup_key"))


def _select(connection: sqlite3.Connection, sql: str, *lists: list) -> list[tuple]:
    """`sql` with each {} a list of values, bound one parameter a value."""
    return connection.execute(sql.format(*(", ".join("?" * len(values)) for values in lists)), sum(lists, [])).fetchall()


def _insert(connection: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    if rows:
        _insert_columns(connection, table, {name: [row[name] for row in rows] for name in rows[0]})


def _insert_columns(connection: sqlite3.Connection, table: str, columns: dict[str, list]) -> None:
    """Inserts the rows whose values `columns` gives column by column. A column that is NULL
    in every row is left to its default, NULL: sqlite3 binds None through its adaptation
    lookup, a quarter of a microsecond a value."""
    columns = {name: values for name, values in columns.items() if values.count(None) != len(values)}
    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", zip(*columns.values())
    )

