"""Full-text search over what sessions said: the folded text the writers store beside each
searchable text, and the SQL that finds folded terms in it on each database.

Every searchable text (an event's content as `Event.message` shows it, a session's title, a
turn's user query and result) is stored a second time, folded (`fold`), by the writer that
stores the text itself; a search term is folded the same way, and a text matches a term when
the term is a substring of it. Both databases compare the same Python-folded strings, so
they give the same answers; the databases' own case rules are never used.

The index over events' folded text: on SQLite an FTS5 table with the trigram tokenizer
(external content: the events table itself, kept in step by triggers on it, so whatever
writes events keeps it), on PostgreSQL a pg_trgm GIN index on the column. Titles and turns'
texts are scanned (their folded columns, no index).
"""

import unicodedata

from sqlalchemy import Boolean, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


# The shortest term, in code points of its folded form: the trigram indexes of both
# databases cannot serve a shorter one.
MIN_TERM = 3


def fold(text: str | None) -> str | None:
    """`text` folded for search: Unicode full case folding (str.casefold: "ß" is "ss", final
    sigma "ς" is "σ") of its canonical decomposition, recomposed (NFC: a precomposed "é" and
    "e" + U+0301 fold alike; accents are kept, "cafe" does not find "café"), with "i" + U+0307
    (what the Turkish capital "İ" folds to) made a plain "i". U+0000, which PostgreSQL cannot
    store, becomes U+FFFD."""
    if text is None:
        return None
    if text.isascii():
        return text.lower().replace("\x00", "\ufffd")
    decomposed = unicodedata.normalize("NFD", text).casefold().replace("i\u0307", "i")
    return unicodedata.normalize("NFC", decomposed).replace("\x00", "\ufffd")


def fold_content(content: bytes | None) -> str | None:
    """An event's content folded: its UTF-8 text, invalid bytes replaced (as Event.message)."""
    return None if content is None else fold(content.decode("utf-8", "replace"))


def title_columns(title: str | None) -> dict:
    """The columns a change of a session's title sets: the title and its folded copy."""
    return {"title": title, "search_title": fold(title)}


# -- the index on SQLite: an FTS5 table over events.search_text, built with its triggers by
# migration 0006

FTS_TABLE = "events_search"


def is_index_table(name: str) -> bool:
    """Whether a SQLite table is the FTS5 index or one of its shadow tables (not declared as
    tables: the models' comparison with a migrated database leaves them out)."""
    return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")


# -- conditions: every term a substring of a folded column


class terms_found(FunctionElement):
    """Every one of the bound terms `<prefix>_0` .. `<prefix>_<count-1>` is a substring of
    the folded `column`: LIKE on PostgreSQL (events.search_text: through its trigram index),
    GLOB on SQLite, through the FTS5 table for events.search_text (`indexed`), whose
    trigram index serves GLOB. Bind the values of `term_parameters`."""

    type = Boolean()
    name = "terms_found"
    inherit_cache = True

    def __init__(self, column, prefix: str, count: int, indexed: bool = False) -> None:
        self.indexed = indexed
        super().__init__(column, *(bindparam(f"{prefix}_{i}", type_=String()) for i in range(count)))


@compiles(terms_found)
def _terms_found_sqlite(element, compiler, **kw):
    column, *terms = element.clauses
    if not element.indexed:
        return "(" + " AND ".join(f"{compiler.process(column, **kw)} GLOB {compiler.process(t, **kw)}" for t in terms) + ")"
    found = " AND ".join(f"search_text GLOB {compiler.process(t, **kw)}" for t in terms)
    return f"{compiler.process(column.table.c.id, **kw)} IN (SELECT rowid FROM {FTS_TABLE} WHERE {found})"


@compiles(terms_found, "postgresql")
def _terms_found_postgresql(element, compiler, **kw):
    column, *terms = element.clauses
    name = compiler.process(column, **kw)
    return "(" + " AND ".join(f"{name} LIKE {compiler.process(t, **kw)} ESCAPE '\\'" for t in terms) + ")"


def term_parameters(prefix: str, terms: tuple[str, ...], dialect: str) -> dict:
    """The values `terms_found(..., prefix, len(terms))` binds on `dialect`: each folded
    term as a LIKE pattern (PostgreSQL) or a GLOB pattern (SQLite), substring anywhere."""
    if dialect == "postgresql":
        return {f"{prefix}_{i}": "%" + _like_escaped(t) + "%" for i, t in enumerate(terms)}
    return {f"{prefix}_{i}": "*" + _glob_escaped(t) + "*" for i, t in enumerate(terms)}


def _like_escaped(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_GLOB_SPECIAL = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]"})


def _glob_escaped(term: str) -> str:
    return term.translate(_GLOB_SPECIAL)
