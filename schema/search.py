"""The types of `Query.searchEvents` (the contract's search.graphql): a connection of
events, each edge with the snippet of the event's text where the terms occur."""

import strawberry

from sessiongraph.models.search_text import snippet
from sessiongraph.resolvers import search
from sessiongraph.resolvers.pagination import Page
from sessiongraph.schema.connections import PageInfo
from sessiongraph.schema.inputs import SessionFilter
from sessiongraph.schema.types import Event


@strawberry.type(description="A span of a string, in characters (Unicode code points).")
class TextRange:
    start: int
    length: int


@strawberry.type
class EventSearchEdge:
    cursor: str
    node: Event
    snippet: str = strawberry.field(description="Up to 200 characters of the content around the first match.")
    matches: list[TextRange] = strawberry.field(description="Where the terms occur in `snippet`, in order.")


@strawberry.type
class EventSearchConnection:
    page: strawberry.Private[Page]
    terms: strawberry.Private[tuple[str, ...]]

    @strawberry.field
    def edges(self) -> list[EventSearchEdge]:
        edges = []
        for row in self.page.rows:
            node = Event.from_row(row)
            text, found = snippet(node.message, self.terms)
            edges.append(EventSearchEdge(
                cursor=self.page.cursor(row),
                node=node,
                snippet=text,
                matches=[TextRange(start=start, length=length) for start, length in found],
            ))
        return edges

    @strawberry.field
    def nodes(self) -> list[Event]:
        return list(map(Event.from_row, self.page.rows))

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo.of(self.page)

    @strawberry.field(description="All matching events, across pages.")
    async def total_count(self) -> int:
        return await self.page.count()


async def search_events(
    self,
    info: strawberry.Info,
    query: str,
    first: int | None = None,
    after: str | None = None,
    filter: SessionFilter | None = None,
    types: list[str] | None = None,
) -> EventSearchConnection:
    page, terms = await search.search_events(
        info.context, query, first, after, {} if filter is None else vars(filter), types
    )
    return EventSearchConnection(page=page, terms=terms)


SEARCH_EVENTS_DESCRIPTION = (
    "Events whose text content matches `query`, across the sessions the caller can see that "
    "match `filter`, newest first (timestamp, then seq, descending). `first` takes 0..100, "
    "default 20; cursors are keyset cursors. Deleted sessions' events are never found. A query "
    "is one or more terms separated by white space (a term in double quotes may hold spaces); "
    "an event matches when every term occurs in its text as a substring, case-insensitively by "
    "Unicode case folding, in any script. A term shorter than 3 characters, more than 16 terms "
    "or 256 characters, unbalanced quotes: BAD_USER_INPUT. `types`: only events of these types "
    "(by default every type but LLM_PARTIAL)."
)
