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

from sqlalchemy import Boolean, String, bindparam, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sessiongraph.models.tables import Event, Session, Turn


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
    """Every one of the folded terms bound as `<prefix>_0` .. `<prefix>_<count-1>` is a
    substring of the folded `column`: LIKE on PostgreSQL (for events.search_text through its
    trigram index), GLOB on SQLite, through the FTS5 table for events.search_text
    (`indexed`), whose trigram index serves GLOB. The patterns are made from the bound terms
    in SQL (their wildcards escaped), so the values bound are the same on both databases."""

    type = Boolean()
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
    found = " AND ".join(f"search_text GLOB {_glob(compiler, t, **kw)}" for t in terms)
    return f"{compiler.process(column.table.c.id, **kw)} IN (SELECT rowid FROM {FTS_TABLE} WHERE {found})"


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


# -- snippets: where the terms occur in an event's text, in its own code points

SNIPPET_LENGTH = 200


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run of a character and the combining marks after it: what is
    folded as one (a fold recomposes within such a run, never across)."""
    spans, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or not unicodedata.combining(text[i]):
            spans.append((start, i))
            start = i
    return spans


def _folded_offsets(text: str) -> tuple[str, list[int], list[int]]:
    """`text` folded run by run, and for each folded character the start and end, in
    `text`, of the run it came from."""
    if text.isascii():  # folding keeps every character in its place
        offsets = list(range(len(text)))
        return fold(text), offsets, [i + 1 for i in offsets]
    folded, starts, ends = [], [], []
    for start, end in _clusters(text):
        piece = fold(text[start:end])
        folded.append(piece)
        starts += [start] * len(piece)
        ends += [end] * len(piece)
    return "".join(folded), starts, ends


def snippet(text: str | None, terms: tuple[str, ...]) -> tuple[str, list[tuple[int, int]]]:
    """Up to SNIPPET_LENGTH characters of `text` around the first place a term occurs, and
    where the terms occur in it, (start, length) in code points, in order of start."""
    if not text:
        return "", []
    folded, starts, ends = _folded_offsets(text)
    found = [(at, len(term)) for term in terms if (at := folded.find(term)) >= 0]
    first_start = first_end = 0
    if found:
        at, length = min(found)
        first_start, first_end = starts[at], ends[at + length - 1]
    begin = max(0, min(first_start - (SNIPPET_LENGTH - (first_end - first_start)) // 2, len(text) - SNIPPET_LENGTH))
    cut = text[begin:begin + SNIPPET_LENGTH]
    folded, starts, ends = _folded_offsets(cut)
    matches = set()
    for term in terms:
        at = folded.find(term)
        while at >= 0:
            matches.add((starts[at], ends[at + len(term) - 1] - starts[at]))
            at = folded.find(term, at + len(term))
    return cut, sorted(matches)
