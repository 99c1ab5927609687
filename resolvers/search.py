"""searchEvents: the events whose text content holds every term of a search query, across
the sessions the caller can see, newest first (timestamp, then seq, then id, descending),
keyset paged. The terms are read by the one rule (resolvers/rules.search_terms) and matched
by models/search.py, as `SessionFilter.text` does."""

import hashlib
from datetime import datetime
from functools import lru_cache

import orjson
from sqlalchemy import bindparam, func, select, tuple_

from sessiongraph.loaders import EVENT_COLUMNS, EVENTS_WITH_SESSION
from sessiongraph.models import Event
from sessiongraph.models.search import event_terms_found, scope_unindexed, term_parameters
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.errors import BadUserInput
from sessiongraph.resolvers.pagination import Page, PageArgs, cut_page, decode_cursor, encode_cursor
from sessiongraph.resolvers.queries import SessionListFilter, filter_conditions
from sessiongraph.resolvers.rules import search_terms
from sessiongraph.resolvers.visibility import visible_sessions

SEARCH_PAGE = 20
ORDER = (Event.timestamp, Event.seq, Event.id)


@lru_cache(maxsize=256)
def _statements(admin: bool, terms: int, shape: tuple, typed: bool, after: bool):
    """The page and count statements of one shape of search, built once; values are bound
    at execution (`search_<i>`: the folded terms; `types`; `after_*`: the cursor's key).
    `typed`: only the event types bound; else every type but LLM_PARTIAL (as Session.events
    has it: streamed fragments of an output found whole in its LLM_OUTPUT)."""
    conditions = [
        *map(scope_unindexed, [visible_sessions(admin), *filter_conditions(shape)]),
        event_terms_found(Event.id, Event.content, "search", terms),
        Event.type.in_(bindparam("types", expanding=True)) if typed else Event.type != "LLM_PARTIAL",
    ]
    count = select(func.count()).select_from(EVENTS_WITH_SESSION).where(*conditions)
    if after:
        bound = tuple_(*(bindparam(f"after_{c.name}", type_=c.type) for c in ORDER))
        conditions.append(tuple_(*ORDER) < bound)
    page = (
        select(*EVENT_COLUMNS)
        .select_from(EVENTS_WITH_SESSION)
        .where(*conditions)
        .order_by(*(c.desc() for c in ORDER))
        .limit(bindparam("limit"))
    )
    return page, count


async def search_events(
    ctx: RequestContext,
    query: str,
    first: int | None,
    after: str | None,
    filters: dict,
    types: list[str] | None,
) -> tuple[Page, tuple[str, ...]]:
    """One page of matching events, and the folded terms (for the snippets)."""
    terms = search_terms(query)
    args = PageArgs.parse(first, after, None, None, SEARCH_PAGE)
    where = SessionListFilter.of(filters)
    # No stored type holds U+0000 (PostgreSQL would refuse to compare with one).
    kept = None if types is None else sorted({t for t in types if "\x00" not in t})
    # A cursor is scoped to what it was issued for: the terms, the filter and the types.
    scope = hashlib.sha256(orjson.dumps([terms, repr(where.values), kept])).hexdigest()[:16]
    viewer = ctx.viewer
    parameters = {"org_id": viewer.org_id, **where.parameters(), **term_parameters("search", terms)}
    if not viewer.is_admin:
        parameters["user_id"] = viewer.user_id
    if kept is not None:
        parameters["types"] = kept
    count_parameters = dict(parameters)
    if args.after is not None:
        timestamp, seq, id_ = decode_cursor(args.after, "searchEvents", scope, (str, int, str))
        try:
            parameters["after_timestamp"], parameters["after_id"] = datetime.fromisoformat(timestamp), int(id_)
        except ValueError:
            raise BadUserInput(f"The cursor {args.after!r} was not issued by this connection.") from None
        parameters["after_seq"] = seq
    page_statement, count_statement = _statements(
        viewer.is_admin, len(terms), where.shape(), kept is not None, args.after is not None
    )
    rows = await ctx.rows(page_statement, {**parameters, "limit": args.limit + 1})

    def cursor(row) -> str:
        return encode_cursor("searchEvents", scope, row.timestamp, row.seq, str(row.id))

    async def count() -> int:
        return (await ctx.rows(count_statement, count_parameters))[0][0]

    return cut_page(rows, args, cursor, count), terms
