"""The texts full-text search compares: what the writers store beside each searchable text
(`fold`), and where a search's terms occur in a text (`snippet`). No SQL here (the importer
loads it before it opens a database); models/search.py matches in SQL.

Every searchable text (an event's content as `Event.message` shows it, a session's title, a
turn's user query and result) is stored a second time, folded, by the writer that stores the
text itself; a search term is folded the same way, and a text matches a term when the term
is a substring of it. Both databases compare the same Python-folded strings, so they give
the same answers; the databases' own case rules are never used.

SQLite keeps no folded copy of the events' texts: its FTS5 index is fed what `fold_content`
makes of the content, and a search checks the index's candidates against it. The functions
named `sql_*` are SQLite's for that (models/database.py registers them on every connection).
"""

import unicodedata
from functools import lru_cache

# The folded copies (columns of models/fields.py), which only the search's conditions read:
# the pages and lookups of turns and events leave them out (they double a row's text).
FOLDED_COLUMNS = frozenset({"search_text", "search_title", "search_query", "search_result"})

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
    # Folding never reaches across a space (no canonical decomposition or composition holds
    # one, nor does a case folding), so a text is folded a space-separated piece at a time,
    # and a short piece seen lately is not folded again: recomposing a text (NFC) costs
    # ~10-30 us for 200 characters of Greek or CJK, most of the writers' folding. Only short
    # pieces are kept: words recur, while a long one (a CJK sentence, which has no spaces, or
    # a blob of up to a MiB) seldom does, and 65,536 of those would hold gigabytes.
    return " ".join(_fold_word(p) if len(p) <= CACHED_PIECE else _fold_piece(p) for p in text.split(" "))


CACHED_PIECE = 64  # code points


@lru_cache(maxsize=65536)
def _fold_word(piece: str) -> str:
    return _fold_piece(piece)


def _fold_piece(piece: str) -> str:
    decomposed = unicodedata.normalize("NFD", piece).casefold().replace("i\u0307", "i")
    return unicodedata.normalize("NFC", decomposed).replace("\x00", "\ufffd")


def fold_content(content: bytes | None) -> str | None:
    """An event's content folded: its UTF-8 text, invalid bytes replaced (as Event.message)."""
    return None if content is None else fold(content.decode("utf-8", "replace"))


def sql_search_text(content: bytes | str | None) -> str | None:
    """SQLite's `sg_search_text(content)`: an event's content folded."""
    return fold(content) if isinstance(content, str) else fold_content(content)


def sql_trigram_query(*terms: str) -> str:
    """SQLite's `sg_trigram_query(term, ...)`: the FTS5 query of the events holding every
    three code points of every (folded) term, each quoted. The index's rows keep no
    positions (detail=none): what it finds are candidates, which `sql_holds_terms` checks."""
    trigrams = dict.fromkeys(term[i:i + 3] for term in terms for i in range(len(term) - 2))
    return " AND ".join('"' + trigram.replace('"', '""') + '"' for trigram in trigrams)


def sql_holds_terms(content: bytes | str | None, *terms: str) -> int:
    """SQLite's `sg_holds_terms(content, term, ...)`: whether every (folded) term is a
    substring of the content folded."""
    folded = sql_search_text(content)
    return folded is not None and all(term in folded for term in terms)


def title_columns(title: str | None) -> dict:
    """The columns a change of a session's title sets: the title and its folded copy."""
    return {"title": title, "search_title": fold(title)}


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
