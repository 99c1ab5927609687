"""Full-text search in SQL: the index over events' folded text (models/search_text.py folds),
and the conditions that find folded terms in the folded columns, on each database.

The index: on PostgreSQL a pg_trgm GIN index on the folded column (events.search_text). On
SQLite an FTS5 table with the trigram tokenizer that holds only the index (contentless,
detail=none: no positions), fed by the writer with the events' folded text (`index_new_events`,
folding in SQL, `sg_search_text`) and kept in step on delete and update by triggers
(migration 0007); its rows are candidates, each checked against the folded content
(`sg_holds_terms`), so answers are exact substrings as on PostgreSQL. Titles and turns'
texts are scanned (their folded columns, no index).
"""

from sqlalchemy import String, bindparam, column, func, insert, or_, select, table
from sqlalchemy.sql.visitors import replacement_traverse
from sqlalchemy.types import NullType
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sessiongraph.models.tables import Event, Session, Turn


# -- the index on SQLite: an FTS5 table of the events' folded text, built with its triggers
# by migration 0007

FTS_TABLE = "events_search"
_FTS = table(FTS_TABLE, column("rowid"), column("search_text"))


async def index_new_events(connection, *conditions) -> None:
    """Adds the events `conditions` select (all of them new) to SQLite's FTS5 table, in one
    statement: the one writer (models/recording.py) calls it after inserting events. One
    INSERT ... SELECT for a batch costs a quarter of what a trigger row by row does (measured
    in bench/search.py); the triggers keep the index in step on delete and update. On
    PostgreSQL the GIN index is the column's own: nothing to do."""
    if connection.dialect.name != "sqlite":
        return
    rows = select(Event.id, func.sg_search_text(Event.content)).where(*conditions, Event.content.is_not(None))
    await connection.execute(insert(_FTS).from_select(["rowid", "search_text"], rows))


def is_index_table(name: str) -> bool:
    """Whether a SQLite table is the FTS5 index or one of its shadow tables (not declared as
    tables: the models' comparison with a migrated database leaves them out)."""
    return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")


# -- conditions: every term a substring of a folded column


class terms_found(FunctionElement):
    """Every one of the folded terms bound as `<prefix>_0` .. `<prefix>_<count-1>` is a
    substring of the folded `column`: LIKE on PostgreSQL (for events.search_text through its
    trigram index), GLOB on SQLite; for events.search_text (`indexed`), which SQLite does not
    store, the events its FTS5 table finds holding every trigram of the terms, each checked
    against its folded content. The patterns and the index's query are made from the bound
    terms in SQL (wildcards escaped), so the values bound are the same on both databases."""

    # No Boolean type: SQLite's compiler would compare a Boolean expression with 1, which
    # stops its planner from driving the statement from the index's rows.
    type = NullType()
    name = "terms_found"
    inherit_cache = True

    def __init__(self, column, prefix: str, count: int, indexed: bool = False) -> None:
        self.indexed = indexed
        super().__init__(column, *(bindparam(f"{prefix}_{i}", type_=String()) for i in range(count)))


def _glob(compiler, term, **kw) -> str:
    bound = compiler.process(term, **kw)
    return f"'*' || replace(replace(replace({bound}, '[', '[[]'), '*', '[*]'), '?', '[?]') || '*'"


@compiles(terms_found)
def _terms_found_sqlite(element, compiler, **kw):
    column, *terms = element.clauses
    if not element.indexed:
        name = compiler.process(column, **kw)
        return "(" + " AND ".join(f"{name} GLOB {_glob(compiler, t, **kw)}" for t in terms) + ")"
    bound = ", ".join(compiler.process(t, **kw) for t in terms)
    events = column.table.c
    return (
        f"{compiler.process(events.id, **kw)} IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH sg_trigram_query({bound}))"
        f" AND sg_holds_terms({compiler.process(events.content, **kw)}, {bound})"
    )


@compiles(terms_found, "postgresql")
def _terms_found_postgresql(element, compiler, **kw):
    column, *terms = element.clauses
    name = compiler.process(column, **kw)
    return "(" + " AND ".join(
        f"{name} LIKE '%' || replace(replace(replace({compiler.process(t, **kw)}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"
        " || '%'"
        for t in terms
    ) + ")"


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
        Session.id.in_(select(Event.session_id).where(terms_found(Event.search_text, prefix, count, indexed=True))),
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
