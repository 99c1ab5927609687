"""Keyset pagination of the three connections (sessions, a session's turns, a session's or a
turn's events): walking both ways, pageInfo, defaults, bounds and cursors not issued here."""

import base64
import json

import pytest
from sqlalchemy import update

from sessiongraph.models import Session
from tests.conftest import T0, error_codes, event_, ok, store, turn_

pytestmark = pytest.mark.usefixtures("both_executions")

PAGE_ARGS = "first: $first, after: $after, last: $last, before: $before"
VARS = "$first: Int, $after: String, $last: Int, $before: String"
CONNECTION = "totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"

QUERIES = {
    "sessions": f"query({VARS}, $order: SessionOrder) {{ sessions({PAGE_ARGS}, orderBy: $order) {{ {CONNECTION} }} }}",
    "turns": f"query($id: ID!, {VARS}) {{ session(id: $id) {{ turns({PAGE_ARGS}) {{ {CONNECTION} }} }} }}",
    "session events": f"query($id: ID!, {VARS}) {{ session(id: $id) {{ events({PAGE_ARGS}) {{ {CONNECTION} }} }} }}",
    "turn events": f"query($id: ID!, {VARS}) {{ node(id: $id) {{ ... on Turn {{ events({PAGE_ARGS}) {{ {CONNECTION} }} }} }} }}",
}
KINDS = list(QUERIES)
DEFAULT_PAGE = {"sessions": 20, "turns": 10, "session events": 20, "turn events": 20}


class Parent:
    """The data a connection kind pages through, and how to ask for a page of it."""

    def __init__(self, engine, viewer, kind: str, parent_id: str | None, variables: dict | None = None):
        self.engine, self.viewer, self.kind, self.parent_id = engine, viewer, kind, parent_id
        self.variables = variables or {}

    async def page(self, **args) -> dict:
        data = await ok(self.engine, self.viewer, QUERIES[self.kind], self.arguments(**args))
        return connection_of(data)

    def arguments(self, **args) -> dict:
        variables = {**self.variables, **args}
        if self.parent_id is not None:
            variables["id"] = self.parent_id
        return variables

    async def errors(self, **args) -> list[str]:
        return await error_codes(self.engine, self.viewer, QUERIES[self.kind], self.arguments(**args))


def connection_of(data: dict) -> dict:
    for key in ("sessions", "session", "node"):
        if key in data:
            value = data[key]
            return value if key == "sessions" else next(iter(value.values()))
    raise AssertionError(data)


def ids(connection: dict) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def make(engine, org, kind: str, count: int) -> Parent:
    """`count` items of `kind` for alice, among items that must not show up."""
    if kind == "sessions":
        for i in range(count):
            await store(engine, org.alice, i)
        await store(engine, org.bob, 0)
        return Parent(engine, org.alice, kind, None)
    if kind == "turns":
        session_id = await store(engine, org.alice, turns=[turn_(f"t{i}", i) for i in range(count)])
        await store(engine, org.alice, turns=[turn_("elsewhere", 0)])
        return Parent(engine, org.alice, kind, str(session_id))
    events = [event_("OUTPUT", i, str(i)) for i in range(count)]
    if kind == "session events":
        session_id = await store(engine, org.alice, events=events)
        return Parent(engine, org.alice, kind, str(session_id))
    session_id = await store(
        engine, org.alice, events=[event_("OUTPUT", 0, "session-level")],
        turns=[turn_("t0", 0, events=[event_("OUTPUT", 0, "other turn")]), turn_("t1", 1, events=events)],
    )
    data = await ok(engine, org.alice, "query($id: ID!) { session(id: $id) { turns { nodes { id } } } }",
                    {"id": str(session_id)})
    return Parent(engine, org.alice, kind, data["session"]["turns"]["nodes"][1]["id"])


def check_cursors(connection: dict) -> None:
    edges, info = connection["edges"], connection["pageInfo"]
    assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)


async def walk(parent: Parent, size: int, forward: bool, total: int) -> list[list[str]]:
    """The pages of `size` from one end to the other: `first`/`after` forward, else
    `last`/`before`; each page checked against its pageInfo."""
    ahead, behind, take, cursor_arg, cursor_field = (
        ("hasNextPage", "hasPreviousPage", "first", "after", "endCursor")
        if forward
        else ("hasPreviousPage", "hasNextPage", "last", "before", "startCursor")
    )
    pages, cursor = [], None
    for _ in range(50):
        connection = await parent.page(**{take: size, cursor_arg: cursor})
        check_cursors(connection)
        assert connection["totalCount"] == total  # all of them, whatever the page
        assert connection["pageInfo"][behind] == bool(pages)
        assert len(connection["edges"]) <= size
        pages.append(ids(connection))
        if not connection["pageInfo"][ahead]:
            return pages
        assert len(connection["edges"]) == size
        cursor = connection["pageInfo"][cursor_field]
    raise AssertionError("the walk did not end")


def forward_pages(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def backward_pages(items: list[str], size: int) -> list[list[str]]:
    """The pages `last`/`before` give, from the end: each in the connection's order."""
    ends = range(len(items), 0, -size)
    return [items[max(0, end - size) : end] for end in ends]


@pytest.mark.parametrize("size", [1, 3, 7, 100])
@pytest.mark.parametrize("kind", KINDS)
async def test_walking_forward_and_backward_visits_every_item_once(engine, org, kind, size):
    parent = await make(engine, org, kind, 7)
    everything = await parent.page(first=100)
    items = ids(everything)
    assert len(set(items)) == everything["totalCount"] == 7
    assert await walk(parent, size, forward=True, total=7) == forward_pages(items, size)
    assert await walk(parent, size, forward=False, total=7) == backward_pages(items, size)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_page_past_either_end_is_empty_and_still_counts_them_all(engine, org, kind):
    parent = await make(engine, org, kind, 4)
    end = (await parent.page(first=100))["pageInfo"]
    for args in ({"first": 2, "after": end["endCursor"]}, {"last": 2, "before": end["startCursor"]}):
        connection = await parent.page(**args)
        assert (connection["edges"], connection["totalCount"]) == ([], 4)


async def test_turns_and_events_are_oldest_first(engine, org):
    session_id = await store(engine, org.alice, turns=[turn_(f"t{i}", 10 - i, events=[event_("OUTPUT", 20 - i)])
                                                       for i in range(3)])
    query = """query($id: ID!) { session(id: $id) { turns { nodes { taskId turn } } events { nodes { seq } } } }"""
    data = (await ok(engine, org.alice, query, {"id": str(session_id)}))["session"]
    assert data["turns"]["nodes"] == [{"taskId": f"t{i}", "turn": i + 1} for i in range(3)]
    assert data["events"]["nodes"] == [{"seq": i + 1} for i in range(3)]


async def test_turn_numbers_are_global_whatever_the_page(engine, org):
    session_id = await store(engine, org.alice, turns=[turn_(f"t{i}", i) for i in range(12)])
    query = """query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) { session(id: $id) {
      turns(first: $first, after: $after, last: $last, before: $before) {
        nodes { turn taskId } pageInfo { endCursor startCursor } } } }"""

    async def turns(**args):
        return (await ok(engine, org.alice, query, {"id": str(session_id), **args}))["session"]["turns"]

    first_page = await turns(first=5)
    second_page = await turns(first=5, after=first_page["pageInfo"]["endCursor"])
    assert second_page["nodes"] == [{"turn": n, "taskId": f"t{n - 1}"} for n in range(6, 11)]
    last_page = await turns(last=3)
    assert last_page["nodes"] == [{"turn": n, "taskId": f"t{n - 1}"} for n in (10, 11, 12)]
    before_that = await turns(last=2, before=last_page["pageInfo"]["startCursor"])
    assert [n["turn"] for n in before_that["nodes"]] == [8, 9]


ORDERS = [
    {"field": field, "direction": direction}
    for field in ("CREATED_AT", "UPDATED_AT", "LAST_ACTIVITY_AT", "TOKENS_USED")
    for direction in ("ASC", "DESC")
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o['field']} {o['direction']}")
async def test_session_pages_never_overlap_or_skip_across_ties_in_every_order(engine, org, order):
    # Three values per key, each shared by several sessions: pages of 2 cut through ties.
    for i in range(9):
        await store(engine, org.alice, i % 3, turns=[turn_("t", 5 + i % 3, tokens_used=i % 3)],
                    events=[event_("OUTPUT", 10 + i % 3)])
    parent = Parent(engine, org.alice, "sessions", None, {"order": order})
    items = ids(await parent.page(first=100))
    assert len(set(items)) == 9
    assert sum(await walk(parent, 2, forward=True, total=9), []) == items
    assert sum(reversed(await walk(parent, 2, forward=False, total=9)), []) == items


async def test_session_cursor_survives_the_deletion_of_its_session(engine, org):
    sessions = [await store(engine, org.alice, i) for i in range(5)]
    parent = Parent(engine, org.alice, "sessions", None)
    items = ids(await parent.page(first=100))
    page = await parent.page(first=2)
    async with engine.begin() as connection:
        await connection.execute(update(Session).where(Session.id == sessions[3]).values(deleted_at=T0))
    rest = await parent.page(first=10, after=page["pageInfo"]["endCursor"])
    assert ids(rest) == items[2:]


@pytest.mark.parametrize("kind", KINDS)
async def test_default_page_sizes(engine, org, kind):
    default = DEFAULT_PAGE[kind]
    parent = await make(engine, org, kind, default + 3)
    connection = await parent.page()
    assert len(connection["edges"]) == default
    assert connection["pageInfo"]["hasNextPage"] is True
    assert connection["totalCount"] == default + 3
    assert ids(connection) == ids(await parent.page(first=100))[:default]


@pytest.mark.parametrize("kind", KINDS)
async def test_last_alone_gives_the_end_of_the_list(engine, org, kind):
    parent = await make(engine, org, kind, 5)
    items = ids(await parent.page(first=100))
    connection = await parent.page(last=2)
    assert ids(connection) == items[-2:]
    assert (connection["pageInfo"]["hasPreviousPage"], connection["pageInfo"]["hasNextPage"]) == (True, False)


@pytest.mark.parametrize("kind", KINDS)
async def test_first_and_last_of_zero_give_an_empty_page(engine, org, kind):
    parent = await make(engine, org, kind, 3)
    for args, more in (({"first": 0}, "hasNextPage"), ({"last": 0}, "hasPreviousPage")):
        connection = await parent.page(**args)
        assert connection["edges"] == []
        assert connection["pageInfo"]["startCursor"] is connection["pageInfo"]["endCursor"] is None
        assert connection["pageInfo"][more] is True
        assert connection["totalCount"] == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_empty_connection(engine, org, kind):
    parent = await make(engine, org, kind, 0)
    connection = await parent.page()
    assert connection == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


@pytest.mark.parametrize(
    "args",
    [{"first": -1}, {"first": 101}, {"last": -1}, {"last": 101}, {"first": 1, "last": 1}, {"first": 0, "last": 0}],
    ids=["first -1", "first 101", "last -1", "last 101", "first and last", "first and last 0"],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_page_size_out_of_range_or_both_is_bad_user_input(engine, org, kind, args):
    parent = await make(engine, org, kind, 2)
    assert await parent.errors(**args) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("kind", KINDS)
async def test_page_size_that_is_no_integer_is_bad_user_input(engine, org, kind):
    parent = await make(engine, org, kind, 2)
    assert await parent.errors(first="ten") == ["BAD_USER_INPUT"]
    assert await parent.errors(last=2.5) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("kind", KINDS)
async def test_page_sizes_of_100_are_accepted(engine, org, kind):
    parent = await make(engine, org, kind, 2)
    assert len((await parent.page(first=100))["edges"]) == len((await parent.page(last=100))["edges"]) == 2


async def cursor_of(parent: Parent) -> str:
    return (await parent.page(first=1))["pageInfo"]["endCursor"]


async def foreign_cursors(engine, org, kind: str) -> dict[str, str]:
    """Cursors that `kind`'s connection did not issue, by where they come from."""
    found = {"garbage": "not-a-cursor", "empty": "", "base64 of nonsense": "bm9uc2Vuc2U="}
    for other in KINDS:
        if other != kind:
            found[other] = await cursor_of(await make(engine, org, other, 2))
    if kind == "sessions":
        found["another order"] = await cursor_of(
            Parent(engine, org.alice, kind, None, {"order": {"field": "UPDATED_AT", "direction": "DESC"}}))
        found["another direction"] = await cursor_of(
            Parent(engine, org.alice, kind, None, {"order": {"field": "CREATED_AT", "direction": "ASC"}}))
    else:
        found["another parent"] = await cursor_of(await make(engine, org, kind, 2))
    return found


@pytest.mark.parametrize("side", ["after", "before"])
@pytest.mark.parametrize("kind", KINDS)
async def test_cursor_this_connection_did_not_issue_is_bad_user_input(engine, org, kind, side):
    parent = await make(engine, org, kind, 3)
    own = await cursor_of(parent)
    assert (await parent.page(**{side: own}))["edges"] is not None
    for origin, cursor in (await foreign_cursors(engine, org, kind)).items():
        assert await parent.errors(**{side: cursor}) == ["BAD_USER_INPUT"], origin


def tampered(cursor: str, key: int) -> str:
    """The cursor with its sort key replaced (cursors are base64url JSON, see pagination.py)."""
    value = json.loads(base64.urlsafe_b64decode(cursor))
    value[2] = key
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize("key", [2**31, 2**63, 10**30])
@pytest.mark.parametrize("kind", KINDS)
async def test_cursor_with_a_key_no_row_can_have_is_bad_user_input(engine, org, kind, key):
    parent = await make(engine, org, kind, 2)
    if kind == "sessions":
        parent.variables = {"order": {"field": "TOKENS_USED", "direction": "DESC"}}
    cursor = await cursor_of(parent)
    assert (await parent.page(after=tampered(cursor, 1)))["edges"] is not None
    assert await parent.errors(after=tampered(cursor, key)) == ["BAD_USER_INPUT"]


async def test_sessions_cursor_fed_to_the_sessions_list_ordered_by_tokens(engine, org):
    # A time cursor and an integer cursor differ in type: neither may be read as the other.
    await store(engine, org.alice, 1)
    created = Parent(engine, org.alice, "sessions", None)
    tokens = Parent(engine, org.alice, "sessions", None, {"order": {"field": "TOKENS_USED", "direction": "DESC"}})
    assert await tokens.errors(after=await cursor_of(created)) == ["BAD_USER_INPUT"]
    assert await created.errors(after=await cursor_of(tokens)) == ["BAD_USER_INPUT"]


async def test_between_two_cursors(engine, org):
    parent = await make(engine, org, "sessions", 6)
    connection = await parent.page(first=100)
    items, cursors = ids(connection), [edge["cursor"] for edge in connection["edges"]]
    assert ids(await parent.page(after=cursors[0], before=cursors[4])) == items[1:4]
    assert ids(await parent.page(last=2, after=cursors[0], before=cursors[4])) == items[2:4]
