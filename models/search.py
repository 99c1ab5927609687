"""Full-text search in SQL: the index over events' folded text (models/search_text.py folds),
and the conditions that find folded terms in the folded columns, on each database.

The index is brought up to date after the writes, not in them (migration 0008): the one
writer queues every new event that has a content in `search_pending` (`queue_new_events`,
one statement a batch), and an indexer (`index_pending`, run by models/indexer.py: the
server's background task and `sessiongraph index`) moves queued events into the index a
batch at a time, in one transaction each. A search reads the index and the queue (a plain scan of the
queued events), so it finds an event from the moment its write commits, indexed or not; an
event is in exactly one of the two in any snapshot.

On PostgreSQL the index is a table of the events' folded text (`events_search`) with a
pg_trgm GIN index; the queue holds the folded text the writer made (Python folds: no folded
copy is kept in events). On SQLite the index is an FTS5 table with the trigram tokenizer that
holds only the index (contentless, detail=none: no positions), fed the folded content by the
indexer (folding in SQL, `sg_search_text`) and kept in step on delete and update by triggers;
its rows and the queued events are candidates, each checked against the folded content
(`sg_holds_terms`), so answers are exact substrings as on PostgreSQL. Titles and turns' texts
are scanned (their folded columns, no index).
"""

from sqlalchemy import ARRAY, String, Text, bindparam, column, func, insert, or_, select, table, text
from sqlalchemy.sql.visitors import replacement_traverse
from sqlalchemy.types import NullType
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sessiongraph.models.tables import Event, Session, Turn


# -- the index and its queue (migrations 0007 and 0008)

INDEX_TABLE = "events_search"  # SQLite: the FTS5 table (rowid: the event's id); PostgreSQL: (event_id, search_text)
QUEUE_TABLE = "search_pending"  # (event_id, and on PostgreSQL the folded text)
_QUEUE = table(QUEUE_TABLE, column("event_id"), column("search_text"))

# Events moved into the index a transaction. Fewer, larger transactions index faster (200,000
# events, SQLite: 4.6 s 2,000 at a time, 2.3 s 10,000, 1.9 s 20,000, 1.5 s 50,000; PostgreSQL:
# 15.0 s, 11.7 s 10,000, 11.4 s 50,000); on SQLite the write lock is held a batch long (about
# 0.15 s for 20,000 there), which other writers wait for.
INDEX_BATCH = {"sqlite": 20_000, "postgresql": 10_000}


# The queue's rows: each new event's id (by its session and seq) and folded text, in one
# statement whatever their number. COPY (asyncpg's, on the transaction's own connection) was a
# tenth faster; a database restarting mid-COPY left that connection in a state SQLAlchemy did
# not know of (the fault suite's one INTERNAL_SERVER_ERROR, bench/RESULTS.md round ten).
_QUEUE_POSTGRESQL = text(
    "INSERT INTO search_pending (event_id, search_text)"
    " SELECT e.id, t.search_text FROM unnest(:session_ids, :seqs, :texts) AS t(session_id, seq, search_text)"
    " JOIN events e ON e.session_id = t.session_id AND e.seq = t.seq"
).bindparams(
    bindparam("session_ids", type_=ARRAY(Event.session_id.type)), bindparam("seqs", type_=ARRAY(Event.seq.type)),
    bindparam("texts", type_=ARRAY(Text())),
)


async def queue_new_events(connection, session_ids, seqs, events) -> None:
    """Queues the new events for the index (those with a content): the one writer
    (models/recording.py) calls it after inserting them, in its transaction. `session_ids`,
    `seqs` and `events` (NewEvent) are the new events' sessions, seqs and contents, in one
    order; every event of those sessions within the seqs' range is new (new sessions whole,
    or one session's appended run). On PostgreSQL the queue holds their folded text."""
    if connection.dialect.name == "sqlite":
        rows = select(Event.id).where(
            Event.session_id.in_(set(session_ids)), Event.seq.between(min(seqs), max(seqs)), Event.content.is_not(None)
        )
        await connection.execute(insert(_QUEUE).from_select(["event_id"], rows))
        return
    texts = [e.search_text for e in events]
    kept = [i for i, t in enumerate(texts) if t is not None]
    if kept:
        await connection.execute(_QUEUE_POSTGRESQL, {
            "session_ids": [session_ids[i] for i in kept], "seqs": [seqs[i] for i in kept], "texts": [texts[i] for i in kept],
        })


# (A queued event deleted meanwhile leaves the queue without entering the index.)
_INDEX_POSTGRESQL = text(
    "WITH moved AS (DELETE FROM search_pending WHERE event_id IN ("
    "SELECT event_id FROM search_pending ORDER BY event_id LIMIT :limit FOR UPDATE SKIP LOCKED"
    ") RETURNING event_id, search_text), indexed AS (INSERT INTO events_search (event_id, search_text)"
    " SELECT m.event_id, m.search_text FROM moved m JOIN events e ON e.id = m.event_id)"
    " SELECT count(*) FROM moved"
)
# The batch's first and last ids bound both tables' ranges: with the last alone SQLite's
# planner walked the events from the first ever (every batch: quadratic).
_BATCH_SQLITE = text("SELECT min(event_id), max(event_id) FROM (SELECT event_id FROM search_pending ORDER BY event_id LIMIT :limit)")
_INDEX_SQLITE = (
    text(
        "INSERT INTO events_search (rowid, search_text) SELECT e.id, sg_search_text(e.content)"
        " FROM search_pending p JOIN events e ON e.id = p.event_id"
        " WHERE p.event_id BETWEEN :first AND :last AND e.content IS NOT NULL"
    ),
    text("DELETE FROM search_pending WHERE event_id BETWEEN :first AND :last"),
)


async def index_pending(connection, limit: int) -> int:
    """Moves up to `limit` queued events (the oldest) into the index, in the caller's
    transaction; how many it moved. Indexers of several processes share the queue on
    PostgreSQL (each takes rows the others have not locked); SQLite has one writer at a time."""
    if connection.dialect.name == "postgresql":
        return await connection.scalar(_INDEX_POSTGRESQL, {"limit": limit})
    first, last = (await connection.execute(_BATCH_SQLITE, {"limit": limit})).one()
    if first is None:
        return 0
    insert_rows, delete_rows = _INDEX_SQLITE
    await connection.execute(insert_rows, {"first": first, "last": last})
    return (await connection.execute(delete_rows, {"first": first, "last": last})).rowcount


async def queued(connection) -> int:
    """How many events wait for the index."""
    return await connection.scalar(select(func.count()).select_from(_QUEUE))


def is_index_table(name: str) -> bool:
    """Whether a table is the index, one of SQLite's FTS5 shadow tables, or the queue (made
    by migrations, not declared as tables: the models' comparison with a migrated database
    leaves them out)."""
    return name in (INDEX_TABLE, QUEUE_TABLE) or name.startswith(INDEX_TABLE + "_")


# -- conditions: every term a substring of a folded column


class terms_found(FunctionElement):
    """Every one of the folded terms bound as `<prefix>_0` .. `<prefix>_<count-1>` is a
    substring of the folded `column` (a scan: titles' and turns' folded columns): LIKE on
    PostgreSQL, GLOB on SQLite. The patterns are made from the bound terms in SQL (wildcards
    escaped), so the values bound are the same on both databases."""

    # No Boolean type: SQLite's compiler would compare a Boolean expression with 1, which
    # stops its planner from driving the statement from the index's rows.
    type = NullType()
    name = "terms_found"
    inherit_cache = True

    def __init__(self, column, prefix: str, count: int) -> None:
        super().__init__(column, *_terms(prefix, count))


class event_terms_found(FunctionElement):
    """The event (its `id` and `content` columns, of events or an alias of it) holds every
    one of the folded terms `terms_found` binds: it is in the index or the queue with a
    folded text holding them. On PostgreSQL the index table's trigram GIN index and LIKE
    over the queued folded texts; on SQLite the events the FTS5 table finds holding every
    trigram of the terms and the queued events, each checked against its folded content."""

    type = NullType()
    name = "event_terms_found"
    inherit_cache = True

    def __init__(self, id_column, content_column, prefix: str, count: int) -> None:
        super().__init__(id_column, content_column, *_terms(prefix, count))


def _terms(prefix: str, count: int):
    return (bindparam(f"{prefix}_{i}", type_=String()) for i in range(count))


def _glob(compiler, term, **kw) -> str:
    bound = compiler.process(term, **kw)
    return f"'*' || replace(replace(replace({bound}, '[', '[[]'), '*', '[*]'), '?', '[?]') || '*'"


def _literal(terms):
    """The terms written into PostgreSQL's statement (see `_event_terms_found_postgresql`): all
    of them, wherever they are used, as a statement may not bind one both ways."""
    return [bindparam(t.key, type_=t.type, literal_execute=True) for t in terms]


def _likes(compiler, name: str, terms, **kw) -> str:
    return "(" + " AND ".join(
        f"{name} LIKE '%' || replace(replace(replace({compiler.process(t, **kw)}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"
        " || '%'"
        for t in terms
    ) + ")"


@compiles(terms_found)
def _terms_found_sqlite(element, compiler, **kw):
    column, *terms = element.clauses
    name = compiler.process(column, **kw)
    return "(" + " AND ".join(f"{name} GLOB {_glob(compiler, t, **kw)}" for t in terms) + ")"


@compiles(terms_found, "postgresql")
def _terms_found_postgresql(element, compiler, **kw):
    column, *terms = element.clauses
    return _likes(compiler, compiler.process(column, **kw), _literal(terms), **kw)


@compiles(event_terms_found)
def _event_terms_found_sqlite(element, compiler, **kw):
    id_column, content, *terms = element.clauses
    bound = ", ".join(compiler.process(t, **kw) for t in terms)
    return (
        f"{compiler.process(id_column, **kw)} IN (SELECT rowid FROM {INDEX_TABLE} WHERE {INDEX_TABLE} MATCH sg_trigram_query({bound})"
        f" UNION ALL SELECT event_id FROM {QUEUE_TABLE})"
        f" AND sg_holds_terms({compiler.process(content, **kw)}, {bound})"
    )


@compiles(event_terms_found, "postgresql")
def _event_terms_found_postgresql(element, compiler, **kw):
    # The terms written into the statement (`literal_execute`, quoted by SQLAlchemy) so the
    # planner knows how many rows each matches: once a prepared statement's plan was the
    # generic one, a common term's matches were fetched one by one through the events' primary
    # key (its first page of a million events: 0.8 s, then 3.0 s from the sixth request).
    # UNION, though no event is in both: the planner counts a UNION's rows, where it guessed
    # 200 distinct ids of a UNION ALL, with the same plan.
    id_column, _content, *terms = element.clauses
    likes = _likes(compiler, "search_text", _literal(terms), **kw)
    return (
        f"{compiler.process(id_column, **kw)} IN (SELECT event_id FROM {INDEX_TABLE} WHERE {likes}"
        f" UNION SELECT event_id FROM {QUEUE_TABLE} WHERE {likes})"
    )


def term_parameters(prefix: str, terms: tuple[str, ...]) -> dict:
    """The values `terms_found(..., prefix, len(terms))` binds."""
    return {f"{prefix}_{i}": term for i, term in enumerate(terms)}


def session_text_matches(prefix: str, count: int):
    """The sessions whose title, a turn's user query or result, or an event's content holds
    every one of the terms `terms_found` binds (all of them in one of those texts)."""
    return or_(
        terms_found(Session.search_title, prefix, count),
        Session.id.in_(select(Turn.session_id).where(or_(
            terms_found(Turn.search_query, prefix, count), terms_found(Turn.search_result, prefix, count)
        ))),
        Session.id.in_(select(Event.session_id).where(event_terms_found(Event.id, Event.content, prefix, count))),
    )


class unindexed(FunctionElement):
    """A column whose indexes SQLite's planner must not use (`+column`, SQLite's own idiom);
    the column as it is elsewhere. The search page wraps the sessions' scope columns in it:
    without statistics SQLite would walk every visible session's events and test each
    against the index's rows, instead of reading the index's few rows first."""

    name = "unindexed"
    inherit_cache = True

    def __init__(self, column) -> None:
        self.type = column.type
        super().__init__(column)


@compiles(unindexed)
def _unindexed_sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.clauses, **kw)


@compiles(unindexed, "postgresql")
def _unindexed_postgresql(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


def scope_unindexed(condition):
    """`condition` with the sessions' scope columns (organisation, owner) `unindexed`."""
    scope = {Session.__table__.c.org_id.name, Session.__table__.c.user_id.name}

    def replace(element):
        if getattr(element, "table", None) is Session.__table__ and getattr(element, "name", None) in scope:
            return unindexed(element)
        return None

    return replacement_traverse(condition, {}, replace)
