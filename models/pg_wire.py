"""PostgreSQL frontend wire-protocol bytes rendered as SQL: the QUERIES content encoding.

A TERMINAL session through a `postgres` resource records the bytes the client sent, one event
per chunk the gateway read. `queries_text(chunk)` renders a chunk as the SQL of its Query ('Q')
and Parse ('P') messages, one statement per line, or returns None: "not wire protocol, render
as UTF8" (the event's `message`). Knows nothing of GraphQL or SQLAlchemy; never raises.

Decisions (the contract leaves them open):
- Messages are read in order. The other frontend messages (StartupMessage, SSLRequest,
  GSSENCRequest, CancelRequest, Bind, Execute, Describe, Close, Sync, Flush, Terminate,
  FunctionCall, the password/SASL message, the COPY messages) parse but render nothing: a
  chunk of only those renders as "" (a password is never shown).
- The first message that does not parse (an unknown type byte, a length that does not fit,
  a Query without its final NUL, ...) and every byte after it are rendered as UTF8 would, on
  the line after the SQL of the messages before it. A chunk that ends mid-message (a large
  Query split across reads) thus shows its complete messages as SQL and its partial one as
  UTF8: nothing the client sent is hidden, and no partial SQL is passed off as a statement.
  A chunk whose very first message does not parse (the continuation of a split message, a
  shell session's `ls -la`) is None: the whole chunk renders as UTF8. There is no resync
  across chunks: each event renders on its own.
- One statement per line: a Query holding several statements (`psql -c "SELECT 1; SELECT
  2"`) is split where the server would split it, with psql's own rules (psqlscan.l): at a
  `;` outside quotes ('...', E'...', "..."), dollar quotes, comments (-- and nested /* */),
  parentheses and the `BEGIN ATOMIC ... END` body of a CREATE FUNCTION / PROCEDURE. The
  separating `;` is left out and empty statements are dropped. Within a statement, white
  space holding a line break outside those literals is folded to one space, and a
  `-- comment` becomes `/* comment */` (so folding cannot turn the next line into comment).
  A line break inside a quoted or dollar-quoted literal is data and is kept, so such a
  statement (a function body) spans lines. Strings are read as with
  standard_conforming_strings on (the default since PostgreSQL 9.1).
- Length fields are only compared with the bytes present: a huge length allocates nothing.
  Rendering is linear in the chunk: ~0.3-0.4 ms per KiB of a multi-row INSERT, ~4 ms per KiB at
  worst (a chunk of nothing but `e'';`).
- SQL is decoded as UTF-8 with invalid bytes replaced, as UTF8 rendering does.
"""

import re
import struct

__all__ = ["queries_text"]

_INT32 = struct.Struct("!I")
_INT16 = struct.Struct("!H")
_PROTOCOL_3 = 3  # StartupMessage: the major protocol version in the code's high 16 bits (3.0, 3.2)
_REQUEST_CODES = {80877102: 16, 80877103: 8, 80877104: 8}  # Cancel, SSL, GSSENC: their lengths
_BODYLESS = frozenset(b"HSXc")  # Flush, Sync, Terminate, CopyDone: length is exactly 4
# Bind, Close, CopyData, CopyFail, Describe, Execute, FunctionCall, password/SASL/GSS response
_SKIPPED = frozenset(b"BCdfDEFp")


class _NotWire(Exception):
    """The bytes at this offset are not a complete frontend message."""


def queries_text(content: bytes) -> str | None:
    """The SQL of the chunk's Query and Parse messages, one statement per line; None: render as UTF8."""
    lines: list[str] = []
    offset = 0
    while offset < len(content):
        try:
            offset, sql = _message(content, offset)
        except _NotWire:
            if offset == 0:
                return None
            lines.append(content[offset:].decode("utf-8", "replace"))
            break
        if sql is not None:
            lines.extend(_statements(sql.decode("utf-8", "replace")))
    return "\n".join(lines) if offset else None


def _message(content: bytes, offset: int) -> tuple[int, bytes | None]:
    """(the offset after the message at `offset`, its SQL or None); _NotWire if there is none."""
    kind = content[offset]
    if kind == 0:  # untyped: a length's first byte is 0 for anything under 16 MiB, no type byte is
        length = _int32(content, offset)
        body = _body(content, offset + 4, length - 4)
        code = _int32(body, 0)
        if code >> 16 == _PROTOCOL_3:
            if not body.endswith(b"\0\0") and body[4:] != b"\0":
                raise _NotWire
        elif _REQUEST_CODES.get(code) != length:
            raise _NotWire
        return offset + length, None
    length = _int32(content, offset + 1)
    body = _body(content, offset + 5, length - 4)
    end = offset + 1 + length
    if kind == ord("Q"):
        if body.find(b"\0") != len(body) - 1:
            raise _NotWire
        return end, body[:-1]
    if kind == ord("P"):
        return end, _parse_query(body)
    if kind in _BODYLESS:
        if length != 4:
            raise _NotWire
        return end, None
    if kind in _SKIPPED:
        return end, None
    raise _NotWire


def _parse_query(body: bytes) -> bytes:
    """A Parse body: statement name, query, int16 count, that many int32 type OIDs."""
    name_end = body.find(b"\0")
    query_end = body.find(b"\0", name_end + 1)
    if name_end < 0 or query_end < 0:
        raise _NotWire
    count = _int16(body, query_end + 1)
    if len(body) != query_end + 3 + 4 * count:
        raise _NotWire
    return body[name_end + 1 : query_end]


def _int32(data: bytes, offset: int) -> int:
    if offset + 4 > len(data):
        raise _NotWire
    return _INT32.unpack_from(data, offset)[0]


def _int16(data: bytes, offset: int) -> int:
    if offset + 2 > len(data):
        raise _NotWire
    return _INT16.unpack_from(data, offset)[0]


def _body(content: bytes, start: int, size: int) -> bytes:
    if size < 0 or start + size > len(content):
        raise _NotWire
    return content[start : start + size]


# One token of PostgreSQL's lexer, as far as splitting and folding need, tried in order at each
# position. A `run` is everything that cannot start another token, so a long VALUES list costs
# few tokens; `other` is a lone - / or $. An E'...' string is recognised at its quote.
_TOKEN = re.compile(
    r"""
    (?P<line_comment>--[^\r\n]*)
  | (?P<block_comment>/\*)
  | (?P<string>'(?:[^']+|'')*'? | "(?:[^"]+|"")*"?)
  | (?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)
  | (?P<run>[^-/'"$;]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE_STRING = re.compile(r"'(?:[^'\\]+|\\.|'')*'?", re.DOTALL)
_WORD_CHARACTER = re.compile(r"[\w$]")
_WORD_OR_PAREN = re.compile(r"[^\W\d][\w$]*|[()]")
_PAREN = re.compile(r"[()]")
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_LINE_BREAKS = re.compile(r"\s*[\r\n]\s*")


def _statements(sql: str) -> list[str]:
    """`sql` split where psql would end a statement, each folded onto one line."""
    statements: list[str] = []
    parts: list[str] = []
    parens = begins = 0
    head: list[str] = []  # the statement's first words, lowercased, while a routine is possible
    position = 0
    while position < len(sql):
        token = _TOKEN.match(sql, position)
        kind, text = token.lastgroup, token.group()
        position = token.end()
        if kind == "run":
            if not head or (head[0] == "create" and (len(head) < 4 or _is_routine(head))):
                parens, begins = _follow_words(text, head, parens, begins)
            else:  # only the depth matters, and it cannot reach 0 early when closes <= parens
                opens, closes = text.count("("), text.count(")")
                parens = parens + opens - closes if closes <= parens else _follow_parens(text, parens)
            if "\n" in text or "\r" in text:
                text = _LINE_BREAKS.sub(" ", text)
        elif kind == "string" and text[0] == "'" and _escape_prefixed(sql, token.start()):
            token = _ESCAPE_STRING.match(sql, token.start())
            text, position = token.group(), token.end()
        elif kind == "line_comment":
            body = text[2:].strip().replace("*/", "* /").replace("/*", "/ *")
            text = f"/* {body} */" if body else ""
        elif kind == "block_comment":
            position = _block_comment_end(sql, position)
            text = _LINE_BREAKS.sub(" ", sql[token.start() : position])
        elif kind == "dollar":
            close = sql.find(text, position)
            position = len(sql) if close < 0 else close + len(text)
            text = sql[token.start() : position]
        elif text == ";" and not parens and not begins:
            statements.append("".join(parts))
            parts, head = [], []
            continue
        parts.append(text)
    statements.append("".join(parts))
    return [statement.strip() for statement in statements if statement.strip()]


def _escape_prefixed(sql: str, quote: int) -> bool:
    """Whether the quote at `quote` opens an E'...' string: a lone E (not ending a word) before it."""
    before = sql[max(quote - 2, 0) : quote]
    return before[-1:] in ("e", "E") and not _WORD_CHARACTER.match(before[:-1])


def _follow_parens(text: str, parens: int) -> int:
    for paren in _PAREN.findall(text):
        parens = parens + 1 if paren == "(" else max(parens - 1, 0)
    return parens


def _follow_words(text: str, head: list[str], parens: int, begins: int) -> tuple[int, int]:
    """Parentheses and words of a run, in order, for the BEGIN ... END rule below."""
    for item in _WORD_OR_PAREN.finditer(text):
        found = item.group()
        if found == "(":
            parens += 1
        elif found == ")":
            parens = max(parens - 1, 0)
        else:
            head.append(found.lower())
            if not parens and _is_routine(head):
                begins = _begin_depth(head[-1], begins)
    return parens, begins


# psqlscan.l's rule for semicolons inside a SQL-standard routine body: in a statement that
# begins CREATE [OR REPLACE] FUNCTION|PROCEDURE, outside parentheses, BEGIN opens a block,
# CASE inside a block opens one, END closes one.
def _is_routine(head: list[str]) -> bool:
    head = head[:4]
    return head[:1] == ["create"] and (
        head[1:2] in (["function"], ["procedure"])
        or (head[1:3] == ["or", "replace"] and head[3:4] in (["function"], ["procedure"]))
    )


def _begin_depth(word: str, depth: int) -> int:
    if word == "begin" or (word == "case" and depth):
        return depth + 1
    if word == "end" and depth:
        return depth - 1
    return depth


def _block_comment_end(sql: str, position: int) -> int:
    """The offset after the (nested) block comment whose `/*` ends at `position`."""
    depth = 1
    for edge in _COMMENT_EDGE.finditer(sql, position):
        depth += 1 if edge.group() == "/*" else -1
        if not depth:
            return edge.end()
    return len(sql)
