"""Keyset pagination: cursors, page arguments and the pages they select.

A cursor is the base64url JSON of `[connection, scope, *key]`: the connection that issued
it (`sessions`, `turns`, `events`), what it was issued for (the session order, the parent's
id) and the sort key of its row. Nothing else is accepted, so a cursor another connection
issued is refused instead of silently paging something else. Pages are fetched with
`key > cursor ORDER BY key LIMIT n + 1` on an index, so page 10,000 costs what page 1 costs.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sessiongraph.resolvers.errors import BadUserInput

MAX_PAGE_SIZE = 100
MAX_INT_KEY = 2**31 - 1


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def encode_cursor(connection: str, scope: str, *key: Any) -> str:
    """`key`: JSON values, or datetimes (written as their isoformat())."""
    return binascii.b2a_base64(orjson.dumps([connection, scope, *key]), newline=False).translate(_URL_SAFE).decode()


def decode_cursor(cursor: str, connection: str, scope: str, key_types: Sequence[type]) -> tuple:
    """The key a cursor holds, or BAD_USER_INPUT when this connection did not issue it."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2 + len(key_types)
        or value[:2] != [connection, scope]
        or not all(type(v) is t for v, t in zip(value[2:], key_types, strict=True))
        # Integer keys (positions, seqs, token sums) are 32-bit columns: a larger one was
        # never issued, and PostgreSQL would refuse to compare with it.
        or any(type(v) is int and not 0 <= v <= MAX_INT_KEY for v in value[2:])
    ):
        raise BadUserInput(f"The cursor {cursor!r} was not issued by this connection.")
    return tuple(value[2:])


@dataclass(frozen=True, slots=True)
class PageArgs:
    """Validated `first`/`after`/`last`/`before`; cursors are still encoded."""

    limit: int
    forward: bool
    after: str | None
    before: str | None

    @classmethod
    def parse(
        cls,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
        default: int,
    ) -> "PageArgs":
        if first is not None and last is not None:
            raise BadUserInput("Pass `first` or `last`, not both.")
        for name, value in (("first", first), ("last", last)):
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise BadUserInput(f"`{name}` must be between 0 and {MAX_PAGE_SIZE}; got {value}.")
        if last is not None:
            return cls(last, False, after, before)
        return cls(default if first is None else first, True, after, before)


@dataclass(slots=True)
class Page:
    """One page of rows in the connection's order, with what the client needs to go on."""

    rows: list
    has_next: bool
    has_previous: bool
    cursor: Callable[[Any], str]
    count: Callable[[], Awaitable[int]]


def cut_page(rows: list, args: PageArgs, cursor, count) -> Page:
    """Rows fetched with one extra (in fetch order) become a page in connection order.

    Whether there is a page on the side the client came from is what its cursor says: it
    came from somewhere. Knowing more would cost a statement per connection.
    """
    more = len(rows) > args.limit
    rows = rows[: args.limit]
    if args.forward:
        return Page(rows, more, args.after is not None, cursor, count)
    rows.reverse()
    return Page(rows, args.before is not None, more, cursor, count)
