"""What reads cost in SQL statements: a nested page costs the same whatever its size, because
every nested connection is one statement for all its parents; `totalCount` costs a fixed
number of statements more, and only when selected; node/nodes batch their lookups."""

import pytest

from tests.conftest import count_statements, event_, ok, store, store_red_team, turn_

pytestmark = pytest.mark.usefixtures("both_executions")

SESSIONS, TURNS, EVENTS = 4, 3, 5

NESTED = """{ sessions(first: %(sessions_first)d) { %(sessions)s edges { cursor node { id title
  turns(first: %(turns_first)d) { %(turns)s edges { cursor node { id turn finalOutput
    events(first: %(events_first)d) { %(events)s edges { cursor node { id seq message } } } } } } } } } }"""
LEVELS = ("sessions", "turns", "events")
# Page sizes per level: all 1, then each level at 100 in turn (100 everywhere at once is over
# the contract's 50,000 estimated nodes); each of the larger ones loads all the data.
SIZES = [(1, 1, 1), (100, 20, 20), (20, 100, 20), (20, 20, 100)]


def nested(sizes: tuple[int, int, int], count_at: tuple[str, ...] = ()) -> str:
    return NESTED % {
        **{f"{level}_first": size for level, size in zip(LEVELS, sizes, strict=True)},
        **{level: "totalCount pageInfo { hasNextPage }" if level in count_at else "" for level in LEVELS},
    }


@pytest.fixture
async def sessions(engine, org):
    """SESSIONS sessions of alice, each of TURNS turns of EVENTS events, and a session of bob."""
    for s in range(SESSIONS):
        await store(
            engine, org.alice, s, title=f"session {s}",
            turns=[turn_(f"t{t}", s + t / 10, result=f"r{t}",
                         events=[event_("LLM_OUTPUT", s + t / 10 + e / 100, f"{s}.{t}.{e}") for e in range(EVENTS)])
                   for t in range(TURNS)],
        )
    await store(engine, org.bob, 0, turns=[turn_("t", 0, events=[event_("X", 0)])])


async def cost(engine, viewer, query: str, variables: dict) -> tuple[int, dict]:
    with count_statements(engine) as counter:
        data = await ok(engine, viewer, query, variables)
    return counter.count, data


def events_in(data: dict) -> list[str]:
    return [
        event["node"]["message"]
        for session in data["sessions"]["edges"]
        for turn in session["node"]["turns"]["edges"]
        for event in turn["node"]["events"]["edges"]
    ]


@pytest.mark.parametrize("sizes", SIZES, ids=str)
async def test_nested_page_costs_three_statements_whatever_its_size(engine, org, sessions, sizes):
    statements, data = await cost(engine, org.alice, nested(sizes), {})
    loaded = events_in(data)
    assert len(loaded) == (1 if sizes == (1, 1, 1) else SESSIONS * TURNS * EVENTS)
    assert statements == 3


@pytest.mark.parametrize(
    ("count_at", "extra"),
    [
        (("sessions",), 0),  # fetched with the page, in its statement
        (("turns",), 0),  # a session's turn count is kept on its row
        (("events",), 1),
        (("sessions", "turns", "events"), 1),
    ],
)
@pytest.mark.parametrize("sizes", [SIZES[0], SIZES[-1]], ids=str)
async def test_total_count_adds_a_fixed_number_of_statements(engine, org, sessions, sizes, count_at, extra):
    statements, data = await cost(engine, org.alice, nested(sizes, count_at), {})
    # A single parent's events page brings its kept count along (loaders._with_kept_count).
    assert statements == 3 + (0 if sizes == (1, 1, 1) else extra)
    if "sessions" in count_at:
        assert data["sessions"]["totalCount"] == SESSIONS
    if "events" in count_at:
        counts = {t["node"]["events"]["totalCount"] for s in data["sessions"]["edges"] for t in s["node"]["turns"]["edges"]}
        assert counts == {EVENTS}


async def test_relations_back_to_parents_are_batched(engine, org, sessions):
    query = """{ sessions { nodes { events(first: 100) { nodes { turn { session { id } } session { id } } } } } }"""
    statements, data = await cost(engine, org.alice, query, {})
    assert sum(len(s["events"]["nodes"]) for s in data["sessions"]["nodes"]) == SESSIONS * TURNS * EVENTS
    # The list, the events of all sessions, the events' turns, the turns' sessions by id
    # (one statement each, whatever the number of events).
    assert statements == 4


IDS = """{ sessions { nodes { id turns { nodes { id events { nodes { id } } } } } } }"""
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


async def all_ids(engine, viewer) -> list[str]:
    data = await ok(engine, viewer, IDS)
    found = []
    for session in data["sessions"]["nodes"]:
        found.append(session["id"])
        for turn in session["turns"]["nodes"]:
            found.append(turn["id"])
            found.extend(event["id"] for event in turn["events"]["nodes"])
    return found


async def test_nodes_of_many_ids_cost_what_one_of_each_type_costs(engine, org, sessions):
    ids = await all_ids(engine, org.alice)
    assert len(ids) == SESSIONS * (1 + TURNS * (1 + EVENTS))
    few = [ids[0], ids[1], ids[2]]  # a session, a turn, an event
    few_statements, few_data = await cost(engine, org.alice, NODES, {"ids": few})
    many_statements, many_data = await cost(engine, org.alice, NODES, {"ids": ids})
    assert [n["__typename"] for n in few_data["nodes"]] == ["Session", "Turn", "Event"]
    assert [n["id"] for n in many_data["nodes"]] == ids
    assert many_statements == few_statements == 3


async def test_node_fields_of_many_nodes_are_batched(engine, org, sessions):
    ids = await all_ids(engine, org.alice)
    query = """query($ids: [ID!]!) { nodes(ids: $ids) { id
      ... on Turn { session { id } events(first: 2) { nodes { id } } }
      ... on Event { turn { id } session { id } } } }"""
    statements, data = await cost(engine, org.alice, query, {"ids": ids})
    assert len(data["nodes"]) == len(ids)
    assert statements == 4


async def test_a_page_deep_in_the_list_costs_what_the_first_page_costs(engine, org):
    for minutes in range(30):
        await store(engine, org.alice, minutes)
    query = "query($after: String) { sessions(first: 2, after: $after) { nodes { id } pageInfo { endCursor } } }"
    first_statements, data = await cost(engine, org.alice, query, {})
    after = data["sessions"]["pageInfo"]["endCursor"]
    for _ in range(10):
        statements, data = await cost(engine, org.alice, query, {"after": after})
        assert statements == first_statements == 1
        after = data["sessions"]["pageInfo"]["endCursor"]


RED_TEAM = """query($sessions: Int, $turns: Int) { sessions(first: $sessions) { nodes { id kind
  redTeam { runnerId settings { metric } chats { endpoint turns(first: $turns) { %s pageInfo { hasNextPage endCursor }
    nodes { turn finalOutput costUsd redTeamSettings { metric } } } } } } } }"""


@pytest.mark.parametrize(("sessions", "endpoints", "rounds"), [(1, 1, 1), (20, 3, 10)], ids=str)
@pytest.mark.parametrize(("count", "statements"), [("", 2), ("totalCount", 3)], ids=["", "totalCount"])
async def test_a_page_of_red_teaming_chats_costs_the_same_whatever_its_size(engine, org, sessions, endpoints, rounds, count, statements):
    """The session list, the turns of every chat of every session (one statement for all
    chats), and with totalCount one grouped count for all chats."""
    names = ("gpt", "claude", "llama")[:endpoints]
    for s in range(sessions):
        await store_red_team(engine, org.alice, s, endpoints=names, rounds=rounds, settings={"metric": f"m{s}"})
    spent, data = await cost(engine, org.alice, RED_TEAM % count, {"sessions": sessions, "turns": rounds})
    chats = [chat for session in data["sessions"]["nodes"] for chat in session["redTeam"]["chats"]]
    assert len(chats) == sessions * endpoints
    assert all(len(chat["turns"]["nodes"]) == rounds and chat["turns"]["pageInfo"]["hasNextPage"] is False for chat in chats)
    assert all(t["redTeamSettings"] is not None for chat in chats for t in chat["turns"]["nodes"])
    if count:
        assert {chat["turns"]["totalCount"] for chat in chats} == {rounds}
    assert spent == statements


LIST_COLUMNS = [
    # (document, what the page's statement must read, what it need not)
    ("{ sessions(first: 5) { nodes { title } } }", {"title"}, {"metadata", "terminal_input", "verb"}),
    ("{ sessions(first: 5) { nodes { title terminal { verb resource { name } } } } }",
     {"title", "kind", "verb", "resource_name"}, {"metadata", "red_team_settings"}),
    ("{ sessions(first: 5, orderBy: {field: TOKENS_USED}) { edges { cursor node { id } } } }",
     {"tokens_used"}, {"title", "metadata"}),
]


@pytest.mark.parametrize(("document", "read", "unread"), LIST_COLUMNS)
async def test_a_session_list_fetches_only_the_columns_its_document_reads(
    request, engine, org, sessions, document, read, unread
):
    """Under the planner the list's statement selects what the document's fields read (a page
    of 100 sessions reading their titles fetched all 48 columns); without it, all of them."""
    with count_statements(engine) as counter:
        data = await ok(engine, org.alice, document, {})
    assert len((data["sessions"].get("nodes") or data["sessions"]["edges"])) == SESSIONS
    page = next(s for s in counter.statements if "FROM sessions" in s and "ORDER BY" in s)
    selected = page.split(" FROM ")[0]
    assert all(f".{column}" in selected or f" {column}" in selected for column in read), selected
    planned = "resolvers" not in request.node.callspec.id
    assert planned == (not any(f".{column}" in selected for column in unread)), selected
