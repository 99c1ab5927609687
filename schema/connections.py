"""Relay connections over a page of rows; edges and their cursors are built only when
selected, `totalCount` is counted only when selected."""

from typing import Any, Generic, TypeVar

import strawberry
from strawberry.types.nodes import SelectedField

from sessiongraph.resolvers.pagination import Page

NodeType = TypeVar("NodeType")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page) -> "PageInfo":
        rows, cursor = page.rows, page.cursor
        return cls(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=cursor(rows[0]) if rows else None,
            end_cursor=cursor(rows[-1]) if rows else None,
        )


@strawberry.type
class Edge(Generic[NodeType]):
    cursor: str
    node: NodeType


@strawberry.type
class Connection(Generic[NodeType]):
    page: strawberry.Private[Page]
    build: strawberry.Private[Any]  # a row -> its node

    @classmethod
    def of(cls, page: Page, build: Any) -> "Connection":
        # Nodes are made only when selected: the planner reads a connection's rows itself.
        return cls(page=page, build=build)

    @strawberry.field
    def nodes(self) -> list[NodeType]:
        return list(map(self.build, self.page.rows))

    @strawberry.field
    def edges(self) -> list[Edge[NodeType]]:
        cursor, build = self.page.cursor, self.build
        return [Edge(cursor=cursor(row), node=build(row)) for row in self.page.rows]

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo.of(self.page)

    @strawberry.field(description="All that match, across pages.")
    async def total_count(self) -> int:
        return await self.page.count()


def selects(info, name: str) -> bool:
    """Whether the field being resolved selects `name` on its result, in fragments too and
    as @skip/@include decide (from `info.selected_fields`)."""
    return any(_selects(field.selections, name) for field in info.selected_fields)


def _selects(selections, name: str) -> bool:
    for selection in selections:
        directives = selection.directives
        if directives.get("skip", {}).get("if") is True or directives.get("include", {}).get("if") is False:
            continue
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif _selects(selection.selections, name):
            return True
    return False
